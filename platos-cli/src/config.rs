//! Where settings come from: a flag, else the `PLATOS_*` environment
//! variable (the names the SDK's quick start reads), else the profile file
//! `$XDG_CONFIG_HOME/platos/config.toml` (`~/.config/platos/config.toml`),
//! table `[profiles.NAME]` (`--profile NAME`, `PLATOS_PROFILE`, default
//! `default`), written by `platos auth login`.
//!
//! Secrets are read from the environment or the profile, never from flags
//! (a flag is visible to every user of the machine in `ps`), and are never
//! printed.

use std::path::PathBuf;

use platos_client::v1::V1Client;
use platos_client::{PlatosClient, Scope};

use crate::fail::{Failure, Result};

/// Every setting, by its profile key; the variable is `PLATOS_` + upper case.
pub const KEYS: &[&str] = &[
    "base_url",
    "session_token",
    "operator_token",
    "api_key",
    "organization_id",
    "project_id",
    "environment_id",
    "user_id",
    "agent_id",
    "entity_id",
    "entity_secret",
];

/// Keys whose values are secrets.
pub const SECRET_KEYS: &[&str] = &[
    "session_token",
    "operator_token",
    "api_key",
    "entity_secret",
];

/// The resolved settings of one run.
#[derive(Clone)]
pub struct Settings {
    values: Vec<(&'static str, String)>,
    /// Use the operator token for agent-API calls (`--operator`).
    pub operator: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.values {
            if SECRET_KEYS.contains(key) {
                map.entry(key, &"***");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// The profile file's path.
pub fn profile_path() -> Option<PathBuf> {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = nonempty("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(dir).join("platos/config.toml"));
    }
    nonempty("HOME").map(|home| PathBuf::from(home).join(".config/platos/config.toml"))
}

/// The profile name: the flag, else `PLATOS_PROFILE`, else `default`;
/// whether it was asked for (an asked-for profile must exist).
pub fn profile_name(flag: Option<&str>) -> (String, bool) {
    if let Some(name) = flag {
        return (name.to_owned(), true);
    }
    match env("PLATOS_PROFILE") {
        Some(name) => (name, true),
        None => ("default".to_owned(), false),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads the profile file (an absent file is an empty one).
pub fn read_profiles() -> Result<toml::Table> {
    let Some(path) = profile_path() else {
        return Ok(toml::Table::new());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(e) => Err(Failure::io(&path.display().to_string(), e)),
    }
}

impl Settings {
    /// Resolves every key: `flags` (key, value), then the environment, then the profile.
    pub fn load(flags: &[(&'static str, Option<String>)], profile: Option<&str>) -> Result<Self> {
        let (name, asked) = profile_name(profile);
        let profiles = read_profiles()?;
        let table = profiles
            .get("profiles")
            .and_then(|p| p.get(&name))
            .and_then(toml::Value::as_table);
        if asked && table.is_none() {
            return Err(Failure::usage(format!(
                "no profile `{name}` (create it with `platos auth login --profile {name}`)"
            )));
        }
        let mut values = Vec::new();
        for key in KEYS {
            let from_flag = flags
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.clone());
            let from_env = || env(&format!("PLATOS_{}", key.to_ascii_uppercase()));
            let from_profile = || {
                table
                    .and_then(|t| t.get(*key))
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned)
            };
            if let Some(value) = from_flag.or_else(from_env).or_else(from_profile) {
                values.push((*key, value));
            }
        }
        Ok(Settings {
            values,
            operator: false,
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| {
            Failure::usage(format!(
                "{key} is not set: set PLATOS_{} or run `platos auth login`",
                key.to_ascii_uppercase()
            ))
        })
    }

    pub fn base_url(&self) -> Result<&str> {
        self.get("base_url").ok_or_else(|| {
            Failure::usage(
                "no server: pass --base-url, set PLATOS_BASE_URL, or run `platos dev-server`",
            )
        })
    }

    /// The agent-API client: `--operator` uses the operator token; else the
    /// session token; else the api key with the scope variables.
    pub fn client(&self) -> Result<PlatosClient> {
        let builder = PlatosClient::builder()
            .base_url(self.base_url()?)
            .user_agent(user_agent());
        let builder = if self.operator {
            builder.session_token(self.require("operator_token")?)
        } else if let Some(token) = self.get("session_token") {
            builder.session_token(token)
        } else if let Some(key) = self.get("api_key") {
            let mut scope = Scope::new(
                self.require("organization_id")?,
                self.require("project_id")?,
                self.require("environment_id")?,
            );
            if let Some(user) = self.get("user_id") {
                scope = scope.with_user_id(user);
            }
            builder.api_key(key).scope(scope)
        } else {
            return Err(Failure::usage(
                "no credential: set PLATOS_SESSION_TOKEN (an end user's), PLATOS_API_KEY with \
                 the PLATOS_*_ID scope, or pass --operator with PLATOS_OPERATOR_TOKEN",
            ));
        };
        Ok(builder.build()?)
    }

    /// The V1 operator client (`PLATOS_OPERATOR_TOKEN`).
    pub fn v1_client(&self) -> Result<V1Client> {
        Ok(V1Client::builder()
            .base_url(self.base_url()?)
            .operator_token(self.require("operator_token")?)
            .user_agent(user_agent())
            .build()?)
    }
}

fn user_agent() -> String {
    format!("platos-cli/{}", env!("CARGO_PKG_VERSION"))
}
