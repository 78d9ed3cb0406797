//! `platos token mint`: an end user's session token, signed with the
//! entity secret (`PLATOS_ENTITY_SECRET`, `PLATOS_ENTITY_ID`) for a scope,
//! the way an app's backend mints one (the SDK's `mint` feature). The
//! token is the one thing printed, so `$(platos token mint …)` captures it.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgMatches, Command, value_parser};
use platos_client::mint::MintOptions;

use crate::config::Settings;
use crate::fail::{Failure, Result};

pub fn command() -> Command {
    Command::new("mint")
        .about("Mint an end user's session token (needs PLATOS_ENTITY_SECRET and PLATOS_ENTITY_ID)")
        .arg(
            Arg::new("user")
                .long("user")
                .value_name("ID")
                .help("The end user (else PLATOS_USER_ID)"),
        )
        .arg(
            Arg::new("organization")
                .long("organization")
                .value_name("ID")
                .help("Else PLATOS_ORGANIZATION_ID"),
        )
        .arg(
            Arg::new("project")
                .long("project")
                .value_name("ID")
                .help("Else PLATOS_PROJECT_ID"),
        )
        .arg(
            Arg::new("environment")
                .long("environment")
                .value_name("ID")
                .help("Else PLATOS_ENVIRONMENT_ID"),
        )
        .arg(
            Arg::new("ttl")
                .long("ttl")
                .value_name("SECONDS")
                .default_value("3600")
                .value_parser(value_parser!(u64).range(1..=86_400 * 30))
                .help("How long the token is valid"),
        )
}

pub fn run(m: &ArgMatches, settings: &Settings) -> Result<ExitCode> {
    let pick = |flag: &str, key: &str| -> Result<String> {
        match m.get_one::<String>(flag) {
            Some(v) => Ok(v.clone()),
            None => settings.require(key).map(str::to_owned),
        }
    };
    let ttl = m.get_one::<u64>("ttl").copied().unwrap_or(3600);
    let options = MintOptions::new(
        settings.require("entity_secret")?,
        settings.require("entity_id")?,
    )
    .scope(
        pick("organization", "organization_id")?,
        pick("project", "project_id")?,
        pick("environment", "environment_id")?,
    )
    .user_id(pick("user", "user_id")?)
    .ttl(Duration::from_secs(ttl));
    let token = options
        .mint()
        .map_err(|e| Failure::usage(format!("minting: {e}")))?;
    crate::output::emit(&format!("{token}\n"));
    Ok(ExitCode::SUCCESS)
}
