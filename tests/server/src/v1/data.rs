//! The V1 operator API's rows, kept as the JSON the routes answer, each with the
//! owner it is scoped by (organization or environment) beside it.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Stored, email_of, now, short_id};
use crate::Scope;
use crate::auth::Caller;

/// A row and the id of what it belongs to (an organization or an environment).
#[derive(Debug, Clone)]
pub(crate) struct Owned {
    pub owner: String,
    pub v: Value,
}

/// An MCP token with what a listing never shows. No `Debug`: rows hold secrets.
#[derive(Clone)]
pub(crate) struct TokenRow {
    pub environment_id: String,
    /// `None` for a platform token.
    pub entity_id: Option<String>,
    /// The public `BearerCredential` projection.
    pub v: Value,
}

/// A mailed sign-in link.
#[derive(Clone)]
pub(crate) struct MagicLink {
    pub email: String,
    pub token: String,
    pub spent: bool,
}

/// An issued invitation.
#[derive(Clone)]
pub(crate) struct Invitation {
    pub id: String,
    pub organization_id: String,
    pub email: String,
    pub role: String,
    pub token: String,
    pub expires_at: String,
    /// Outstanding until accepted or superseded.
    pub outstanding: bool,
}

/// A membership of a user in an organization.
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub role: String,
    pub created_at: String,
    pub display_name: Option<String>,
}

/// Everything the V1 routes keep. No `Debug`: it holds link, invitation and token
/// secrets and stored answers carrying them.
#[derive(Default)]
pub(crate) struct V1Data {
    /// The organization a caller with no membership becomes OWNER of (the seeded one).
    pub home_organization: Option<String>,
    pub organizations: Vec<Value>,
    pub memberships: Vec<Membership>,
    pub invitations: Vec<Invitation>,
    /// Projects, owned by their organization.
    pub projects: Vec<Owned>,
    /// Environments, owned by their project.
    pub environments: Vec<Owned>,
    /// Variables, owned by their environment; `value` holds the plain text even for a
    /// secret one (the projection hides it).
    pub variables: Vec<Owned>,
    pub end_users: Vec<Owned>,
    pub tokens: Vec<TokenRow>,
    /// Policies, owned by their organization.
    pub policies: Vec<Owned>,
    /// Provider keys, owned by their environment.
    pub provider_keys: Vec<Owned>,
    pub magic_links: Vec<MagicLink>,
    /// Stored first answers by `caller|operation|key`.
    pub idempotency: HashMap<String, Stored>,
}

/// The seeded provider key (in the seeded environment).
pub const SEED_PROVIDER_KEY: &str = "pk_openai_default";
/// The seeded MCP policy.
pub const SEED_POLICY: &str = "pol_block_shell";

impl V1Data {
    pub(crate) fn new(seed: bool, scope: &Scope) -> Self {
        let mut d = V1Data::default();
        if !seed {
            return d;
        }
        let t = "2026-01-01T00:00:00.000Z";
        let org = &scope.organization_id;
        let env = &scope.environment_id;
        d.home_organization = Some(org.clone());
        d.organizations.push(json!({
            "id": org, "slug": "test-org", "name": "Test Organization",
            "archivedAt": null, "createdAt": t
        }));
        for (user, role, name) in [
            ("user_admin", "ADMIN", "Ada Admin"),
            ("user_member", "MEMBER", "Max Member"),
        ] {
            d.memberships.push(Membership {
                id: format!("mem_{user}"),
                organization_id: org.clone(),
                user_id: user.into(),
                role: role.into(),
                created_at: t.into(),
                display_name: Some(name.into()),
            });
        }
        d.projects.push(Owned {
            owner: org.clone(),
            v: json!({"id": scope.project_id, "organizationId": org, "slug": "test-project",
                      "name": "Test Project", "archivedAt": null, "createdAt": t}),
        });
        d.environments.push(Owned {
            owner: scope.project_id.clone(),
            v: json!({"id": env, "slug": "production", "name": "Production", "createdAt": t}),
        });
        for (i, (key, kind, value)) in [
            ("LOG_LEVEL", "PLAIN", "info"),
            ("REGION", "PLAIN", "eu-west-1"),
            ("OPENAI_API_KEY", "SECRET", "sk-seeded-secret"),
        ]
        .into_iter()
        .enumerate()
        {
            d.variables.push(Owned {
                owner: env.clone(),
                v: json!({"id": format!("var_{}", i + 1), "key": key, "kind": kind,
                          "value": value, "hasSecret": kind == "SECRET", "version": 1,
                          "lastUpdatedBy": null, "createdAt": t, "updatedAt": t}),
            });
        }
        for (i, (name, disabled)) in [
            ("Alice", false),
            ("Bob", false),
            ("Carol", true),
            ("Dave", false),
            ("Erin", false),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("eu_{}", i + 1);
            d.end_users.push(Owned {
                owner: env.clone(),
                v: json!({"endUserId": id, "displayName": name,
                          "disabledAt": if disabled { json!(t) } else { Value::Null },
                          "createdAt": t,
                          "identities": [{"issuer": "platos", "channel": "email",
                                          "subject": format!("{}@users.example.test", name.to_lowercase()),
                                          "verifiedAt": t, "disabledAt": null}]}),
            });
        }
        d.policies.push(Owned {
            owner: org.clone(),
            v: json!({"policyId": SEED_POLICY, "pattern": "shell.*", "state": "block",
                      "createdAt": t, "updatedAt": t}),
        });
        d.provider_keys.push(Owned {
            owner: env.clone(),
            v: json!({"providerKeyId": SEED_PROVIDER_KEY, "environmentId": env,
                      "provider": "openai", "label": "Default OpenAI key",
                      "credentialName": "OPENAI_DEFAULT", "isDefault": true,
                      "createdBy": "user_admin", "lastUsedAt": null,
                      "createdAt": t, "updatedAt": t}),
        });
        d
    }

    /// A caller with no membership anywhere becomes OWNER of the seeded organization,
    /// so any operator token works against the seeded data.
    pub(crate) fn provision(&mut self, caller: &Caller) {
        let (Some(user), Some(org)) = (&caller.user_id, &self.home_organization) else {
            return;
        };
        if self.memberships.iter().any(|m| &m.user_id == user) {
            return;
        }
        self.memberships.push(Membership {
            id: format!("mem_{user}"),
            organization_id: org.clone(),
            user_id: user.clone(),
            role: "OWNER".into(),
            created_at: now(),
            display_name: None,
        });
    }

    pub(crate) fn membership(&self, organization_id: &str, user: &str) -> Option<&Membership> {
        self.memberships
            .iter()
            .find(|m| m.organization_id == organization_id && m.user_id == user)
    }

    pub(crate) fn organization(&self, id: &str) -> Option<&Value> {
        self.organizations.iter().find(|o| o["id"] == id)
    }

    /// The organization an environment belongs to (through its project).
    pub(crate) fn organization_of_environment(&self, environment_id: &str) -> Option<String> {
        let env = self
            .environments
            .iter()
            .find(|e| e.v["id"] == environment_id)?;
        let project = self.projects.iter().find(|p| p.v["id"] == env.owner)?;
        Some(project.owner.clone())
    }

    /// The environment's organization when `user` is a member of it.
    pub(crate) fn visible_environment(&self, environment_id: &str, user: &str) -> Option<String> {
        let org = self.organization_of_environment(environment_id)?;
        self.membership(&org, user).map(|_| org)
    }

    pub(crate) fn magic_link_token(&self, email: &str) -> Option<String> {
        self.magic_links
            .iter()
            .rev()
            .find(|l| l.email == email && !l.spent)
            .map(|l| l.token.clone())
    }

    pub(crate) fn mailed_links(&self, email: &str) -> usize {
        self.magic_links.iter().filter(|l| l.email == email).count()
    }

    pub(crate) fn invitation_token(&self, email: &str) -> Option<String> {
        self.invitations
            .iter()
            .rev()
            .find(|i| i.email == email && i.outstanding)
            .map(|i| i.token.clone())
    }

    /// A member row as `organization_members_list` answers it.
    pub(crate) fn member_json(m: &Membership) -> Value {
        json!({
            "membershipId": m.id, "userId": m.user_id, "role": m.role,
            "createdAt": m.created_at, "email": email_of(&m.user_id),
            "displayName": m.display_name, "accountDisabledAt": null
        })
    }

    /// A fresh id with `prefix`.
    pub(crate) fn id(prefix: &str) -> String {
        short_id(prefix)
    }
}
