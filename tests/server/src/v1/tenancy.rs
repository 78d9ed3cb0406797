//! Tenancy: organizations, members, invitations, projects and the environment scope.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::data::{Invitation, Membership, Owned, V1Data};
use super::{
    Check, Class, Op, Q, S, all, in_secs, invalid, item, not_found, now, ok, query_param, refuse,
    run,
};

const ROLES: [&str; 3] = ["OWNER", "ADMIN", "MEMBER"];

const ORGANIZATIONS_LIST: Op = Op::new("organizations_list", Class::NotApplicable);
const ORGANIZATIONS_CREATE: Op = Op::new("organizations_create", Class::Accepted);
const MEMBERS_LIST: Op = Op::new("organization_members_list", Class::NotApplicable);
const MEMBERS_CHANGE_ROLE: Op = Op::new("organization_members_change_role", Class::Accepted);
const INVITATIONS_ISSUE: Op = Op::new("invitations_issue", Class::Accepted);
const INVITATIONS_ACCEPT: Op = Op::new("invitations_accept", Class::Accepted);
const PROJECTS_LIST: Op = Op::new("projects_list", Class::NotApplicable);
const PROJECTS_CREATE: Op = Op::new("projects_create", Class::Accepted);
const SCOPE_RESOLVE: Op = Op::new("environment_scope_resolve", Class::NotApplicable);

fn organization_json(org: &Value, m: &Membership) -> Value {
    let mut o = org.clone();
    o["membership"] = json!({"id": m.id, "role": m.role, "deactivatedAt": null});
    o
}

/// The caller's membership in `organization_id`, 404 `TENANCY_NOT_FOUND` when there
/// is none (an organization one is not in is not revealed).
fn member_of<'a>(
    d: &'a V1Data,
    organization_id: &str,
    user: &str,
) -> Result<&'a Membership, super::Answer> {
    d.membership(organization_id, user)
        .filter(|_| d.organization(organization_id).is_some())
        .ok_or_else(|| not_found("TENANCY_NOT_FOUND", "The organization"))
}

/// The caller's membership, which must be OWNER or ADMIN (else 403 `TENANCY_FORBIDDEN`).
fn manager_of<'a>(
    d: &'a V1Data,
    organization_id: &str,
    user: &str,
) -> Result<&'a Membership, super::Answer> {
    let m = member_of(d, organization_id, user)?;
    if m.role == "OWNER" || m.role == "ADMIN" {
        Ok(m)
    } else {
        Err(refuse(
            403,
            "TENANCY_FORBIDDEN",
            "Only an OWNER or ADMIN of the organization may do this.",
        ))
    }
}

fn role_field(c: &mut Check<'_>, name: &str, default: Option<&str>) -> String {
    let role = match default {
        Some(d) => c.opt_string(name).unwrap_or_else(|| d.to_owned()),
        None => c.string(name),
    };
    if !role.is_empty() && !ROLES.contains(&role.as_str()) {
        c.problem(name, "invalid_enum", "role must be OWNER, ADMIN or MEMBER");
    }
    role
}

fn slug_field(c: &mut Check<'_>, name: &str) -> String {
    let slug = c.string(name);
    if !slug.is_empty()
        && !slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        c.problem(
            name,
            "invalid",
            format!("{name} must be lowercase letters, digits and hyphens"),
        );
    }
    slug
}

pub(crate) async fn organizations_list(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    run(&s, &ORGANIZATIONS_LIST, &h, uri.path(), &b, |cx, d| {
        let user = cx.user();
        let rows = d
            .organizations
            .iter()
            .filter_map(|o| {
                let id = o["id"].as_str()?;
                d.membership(id, &user).map(|m| organization_json(o, m))
            })
            .collect();
        all(rows)
    })
}

pub(crate) async fn organizations_create(
    State(s): S,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &ORGANIZATIONS_CREATE, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let name = c.string("name");
        let slug = slug_field(&mut c, "slug");
        c.done()?;
        if d.organizations.iter().any(|o| o["slug"] == slug.as_str()) {
            return Err(refuse(409, "TENANCY_SLUG_TAKEN", "This slug is taken."));
        }
        let id = V1Data::id("org");
        let org =
            json!({"id": id, "slug": slug, "name": name, "archivedAt": null, "createdAt": now()});
        let m = Membership {
            id: V1Data::id("mem"),
            organization_id: id,
            user_id: cx.user(),
            role: "OWNER".into(),
            created_at: now(),
            display_name: None,
        };
        let answer = organization_json(&org, &m);
        d.organizations.push(org);
        d.memberships.push(m);
        item(StatusCode::CREATED, answer)
    })
}

pub(crate) async fn members_list(
    State(s): S,
    Path(org): Path<String>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &MEMBERS_LIST, &h, uri.path(), &b, |cx, d| {
        manager_of(d, &org, &cx.user())?;
        all(d
            .memberships
            .iter()
            .filter(|m| m.organization_id == org)
            .map(V1Data::member_json)
            .collect())
    })
}

pub(crate) async fn members_change_role(
    State(s): S,
    Path((org, membership_id)): Path<(String, String)>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &MEMBERS_CHANGE_ROLE, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let role = role_field(&mut c, "role", None);
        c.done()?;
        manager_of(d, &org, &cx.user())?;
        let owners = d
            .memberships
            .iter()
            .filter(|m| m.organization_id == org && m.role == "OWNER")
            .count();
        let m = d
            .memberships
            .iter_mut()
            .find(|m| m.organization_id == org && m.id == membership_id)
            .ok_or_else(|| not_found("TENANCY_NOT_FOUND", "The membership"))?;
        if m.role == "OWNER" && role != "OWNER" && owners == 1 {
            return Err(refuse(
                409,
                "TENANCY_LAST_OWNER",
                "The organization's last owner cannot be demoted.",
            ));
        }
        let changed = m.role != role;
        m.role = role;
        ok(json!({ "changed": changed }))
    })
}

pub(crate) async fn invitations_issue(
    State(s): S,
    Path(org): Path<String>,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &INVITATIONS_ISSUE, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let email = c.string("email");
        if !email.is_empty() && !email.contains('@') {
            c.problem("email", "invalid_email", "email must be an address");
        }
        let role = role_field(&mut c, "role", Some("MEMBER"));
        c.done()?;
        manager_of(d, &org, &cx.user())?;
        let mut superseded = 0;
        for i in d
            .invitations
            .iter_mut()
            .filter(|i| i.organization_id == org && i.email == email && i.outstanding)
        {
            i.outstanding = false;
            superseded += 1;
        }
        let inv = Invitation {
            id: V1Data::id("inv"),
            organization_id: org.clone(),
            email,
            role,
            token: V1Data::id("invtok"),
            expires_at: in_secs(7 * 24 * 3600),
            outstanding: true,
        };
        let answer = json!({"invitationId": inv.id, "expiresAt": inv.expires_at, "supersededCount": superseded});
        d.invitations.push(inv);
        item(StatusCode::CREATED, answer)
    })
}

pub(crate) async fn invitations_accept(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    run(&s, &INVITATIONS_ACCEPT, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let token = c.string("token");
        c.done()?;
        let user = cx.user();
        let inv = d
            .invitations
            .iter_mut()
            .find(|i| i.token == token && i.outstanding)
            .ok_or_else(|| not_found("TENANCY_INVITATION_NOT_FOUND", "The invitation"))?;
        if inv.email != super::email_of(&user) {
            return Err(refuse(
                403,
                "TENANCY_INVITATION_EMAIL_MISMATCH",
                "The invitation was sent to another address.",
            ));
        }
        inv.outstanding = false;
        let (org, role) = (inv.organization_id.clone(), inv.role.clone());
        let membership_id = match d
            .memberships
            .iter_mut()
            .find(|m| m.organization_id == org && m.user_id == user)
        {
            Some(m) => {
                m.role = role.clone();
                m.id.clone()
            }
            None => {
                let id = V1Data::id("mem");
                d.memberships.push(Membership {
                    id: id.clone(),
                    organization_id: org.clone(),
                    user_id: user,
                    role: role.clone(),
                    created_at: now(),
                    display_name: None,
                });
                id
            }
        };
        ok(json!({"organizationId": org, "role": role, "membershipId": membership_id}))
    })
}

fn project_json(p: &Value) -> Value {
    let mut p = p.clone();
    p["through"] = json!("organization");
    p
}

pub(crate) async fn projects_list(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    run(&s, &PROJECTS_LIST, &h, uri.path(), &b, |cx, d| {
        let user = cx.user();
        all(d
            .projects
            .iter()
            .filter(|p| d.membership(&p.owner, &user).is_some())
            .map(|p| project_json(&p.v))
            .collect())
    })
}

pub(crate) async fn projects_create(State(s): S, uri: Uri, h: HeaderMap, b: Bytes) -> Response {
    run(&s, &PROJECTS_CREATE, &h, uri.path(), &b, |cx, d| {
        let mut c = Check::new(&cx.body);
        let org = c.string("organizationId");
        let name = c.string("name");
        let slug = slug_field(&mut c, "slug");
        let env_name = c.string("environmentName");
        let env_slug = slug_field(&mut c, "environmentSlug");
        c.done()?;
        manager_of(d, &org, &cx.user())?;
        if d.projects
            .iter()
            .any(|p| p.owner == org && p.v["slug"] == slug.as_str())
        {
            return Err(refuse(409, "TENANCY_SLUG_TAKEN", "This slug is taken."));
        }
        let t = now();
        let project = json!({"id": V1Data::id("proj"), "organizationId": org, "slug": slug,
                             "name": name, "archivedAt": null, "createdAt": t});
        let env =
            json!({"id": V1Data::id("env"), "slug": env_slug, "name": env_name, "createdAt": t});
        let membership = json!({"id": V1Data::id("pmem"), "role": "ADMIN"});
        let answer = json!({"project": project_json(&project), "environment": env, "membership": membership});
        d.environments.push(Owned {
            owner: project["id"].as_str().unwrap_or_default().to_owned(),
            v: env,
        });
        d.projects.push(Owned {
            owner: org,
            v: project,
        });
        item(StatusCode::CREATED, answer)
    })
}

fn node(v: &Value) -> Value {
    super::pick(v, &["id", "slug", "name"])
}

pub(crate) async fn environment_scope_resolve(
    State(s): S,
    axum::extract::Query(q): Q,
    uri: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    run(&s, &SCOPE_RESOLVE, &h, uri.path(), &b, |cx, d| {
        let mut problems = Vec::new();
        let org_slug = query_param(&q, "organizationSlug", &mut problems);
        let project_slug = query_param(&q, "projectSlug", &mut problems);
        let env_slug = query_param(&q, "environmentSlug", &mut problems);
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let access = q.get("access").map_or("metadata", String::as_str);
        if access != "metadata" && access != "secret:mutate" {
            return Err(refuse(
                400,
                "TRANSPORT_REQUEST_INVALID",
                "access must be metadata or secret:mutate",
            ));
        }
        let missing = || not_found("TENANCY_NOT_FOUND", "No live environment with these slugs");
        let org = d
            .organizations
            .iter()
            .find(|o| o["slug"] == org_slug.as_str())
            .ok_or_else(missing)?;
        let org_id = org["id"].as_str().unwrap_or_default();
        let project = d
            .projects
            .iter()
            .find(|p| p.owner == org_id && p.v["slug"] == project_slug.as_str())
            .ok_or_else(missing)?;
        let project_id = project.v["id"].as_str().unwrap_or_default();
        let environments: Vec<&Value> = d
            .environments
            .iter()
            .filter(|e| e.owner == project_id)
            .map(|e| &e.v)
            .collect();
        let env = environments
            .iter()
            .find(|e| e["slug"] == env_slug.as_str())
            .ok_or_else(missing)?;
        let m = d.membership(org_id, &cx.user()).ok_or_else(|| {
            refuse(
                403,
                "TENANCY_ENVIRONMENT_FORBIDDEN",
                "You may not act on this environment.",
            )
        })?;
        if access == "secret:mutate" && m.role == "MEMBER" {
            return Err(refuse(
                403,
                "TENANCY_ENVIRONMENT_FORBIDDEN",
                "secret:mutate needs an OWNER or ADMIN role.",
            ));
        }
        ok(json!({
            "organization": node(org), "project": node(&project.v), "environment": node(env),
            "environments": environments.iter().map(|e| node(e)).collect::<Vec<_>>(),
            "access": access, "organizationRole": m.role, "projectRole": null
        }))
    })
}
