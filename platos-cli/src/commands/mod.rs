//! The hand-made commands, one file each, and where they hang in the tree.

mod approvals;
mod auth;
mod chat;
mod completions;
mod dev_server;
mod events;
mod interrupt;
mod token;

use std::process::ExitCode;

use clap::{ArgMatches, Command};

use crate::config::Settings;
use crate::fail::Result;
use crate::ops;

/// `root` with every hand-made command added.
pub fn add(root: Command) -> Command {
    let root = root
        .subcommand(chat::command())
        .subcommand(dev_server::command())
        .subcommand(completions::command())
        .subcommand(
            Command::new("events")
                .about("The V1 resumable event streams")
                .subcommand_required(true)
                .arg_required_else_help(true)
                .subcommand(events::command("tail")),
        )
        .subcommand(
            Command::new("token")
                .about("Session tokens")
                .subcommand_required(true)
                .arg_required_else_help(true)
                .subcommand(token::command()),
        )
        .subcommand(
            Command::new("auth")
                .about("The profile file")
                .subcommand_required(true)
                .arg_required_else_help(true)
                .subcommand(auth::command()),
        );
    // Beside the generated commands of their namespace.
    let root = ops::upsert(root, &["approvals"], &|c| {
        c.subcommand(approvals::command())
    });
    ops::upsert(root, &["v1", "environment-streams"], &|c| {
        c.subcommand(events::command("read"))
    })
}

/// The commands that need no settings: `Some(code)` when one ran.
pub async fn run_local(matches: &ArgMatches, profile: Option<&str>) -> Result<Option<ExitCode>> {
    Ok(match matches.subcommand() {
        Some(("dev-server", m)) => Some(dev_server::run(m).await?),
        Some(("completions", m)) => Some(completions::run(m)?),
        Some(("auth", m)) => match m.subcommand() {
            Some(("login", m)) => Some(auth::run(m, profile, matches)?),
            _ => None,
        },
        _ => None,
    })
}

/// The commands that talk to a server: `Some(code)` when one ran.
pub async fn run(
    matches: &ArgMatches,
    settings: &Settings,
    json: bool,
) -> Result<Option<ExitCode>> {
    Ok(match matches.subcommand() {
        Some(("chat", m)) => Some(chat::run(m, settings).await?),
        Some(("events", m)) => match m.subcommand() {
            Some(("tail", m)) => Some(events::run(m, settings, json).await?),
            _ => None,
        },
        Some(("token", m)) => match m.subcommand() {
            Some(("mint", m)) => Some(token::run(m, settings)?),
            _ => None,
        },
        Some(("approvals", m)) => match m.subcommand() {
            Some(("watch", m)) => Some(approvals::run(m, settings).await?),
            _ => None,
        },
        Some(("v1", m)) => match m.subcommand() {
            Some(("environment-streams", m)) => match m.subcommand() {
                Some(("read", m)) => Some(events::run(m, settings, json).await?),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    })
}
