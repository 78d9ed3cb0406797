//! `platos`: the Platos command line. Every operation of the specs as a
//! generated command (`ops.rs`, `generated.rs`), plus hand-made commands
//! where a terminal helps (`commands/`).

mod commands;
mod config;
mod fail;
#[rustfmt::skip]
mod generated;
mod ops;
mod output;
mod spec;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::Settings;
use crate::fail::{EXIT_CODES, Exit, Failure, Result};
use crate::spec::Api;

const AFTER_HELP: &str = "Settings come from flags, then PLATOS_* environment variables \
(PLATOS_BASE_URL, PLATOS_SESSION_TOKEN, PLATOS_OPERATOR_TOKEN, PLATOS_API_KEY with \
PLATOS_ORGANIZATION_ID/PROJECT_ID/ENVIRONMENT_ID, PLATOS_AGENT_ID), then the profile \
file written by `platos auth login`.";

/// The whole command tree.
pub fn cli() -> Command {
    let root = Command::new("platos")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The Platos command line: every API operation, chat, approvals, event tails, a dev server")
        .after_help(format!("{AFTER_HELP}\n\n{EXIT_CODES}"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new("base-url")
                .long("base-url")
                .global(true)
                .value_name("URL")
                .help("The server (else PLATOS_BASE_URL, else the profile)"),
        )
        .arg(
            Arg::new("profile")
                .long("profile")
                .global(true)
                .value_name("NAME")
                .help("The profile of the config file (else PLATOS_PROFILE, else `default`)"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print answers as pretty JSON"),
        )
        .arg(
            Arg::new("operator")
                .long("operator")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Make agent-API calls with the operator credential (PLATOS_OPERATOR_TOKEN)"),
        );
    let root = ops::add(root, Api::Agent);
    let v1 = ops::add(
        Command::new("v1")
            .about("The V1 operator API (credential: PLATOS_OPERATOR_TOKEN)")
            .subcommand_required(true)
            .arg_required_else_help(true),
        Api::V1,
    );
    commands::add(root.subcommand(v1))
}

fn main() -> ExitCode {
    let matches = match cli().try_get_matches() {
        Ok(m) => m,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(&Failure::usage(format!("starting the runtime: {e}"))),
    };
    match runtime.block_on(run(&matches)) {
        Ok(code) => code,
        Err(failure) => report(&failure),
    }
}

/// Help and version as clap prints them; any other clap error as one line.
fn usage_error(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(Exit::Usage as u8)
        }
        _ => {
            // clap's message up to its usage block, on one line.
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .filter(|l| !l.starts_with("tip:"))
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            report(&Failure::usage(format!("{message} (see --help)")))
        }
    }
}

fn report(failure: &Failure) -> ExitCode {
    let colour = output::decorate_stderr();
    eprintln!("{} {failure}", output::red("error:", colour));
    ExitCode::from(failure.exit as u8)
}

async fn run(matches: &ArgMatches) -> Result<ExitCode> {
    let base_url = matches.get_one::<String>("base-url").cloned();
    let profile = matches.get_one::<String>("profile").map(String::as_str);
    let json = matches.get_flag("json");
    // Commands that need no server or settings.
    if let Some(code) = commands::run_local(matches, profile).await? {
        return Ok(code);
    }
    let mut settings = Settings::load(&[("base_url", base_url)], profile)?;
    settings.operator = matches.get_flag("operator");
    if let Some(code) = commands::run(matches, &settings, json).await? {
        return Ok(code);
    }
    let found = match matches.subcommand() {
        Some(("v1", sub)) => ops::find(Api::V1, sub),
        _ => ops::find(Api::Agent, matches),
    };
    let (op, m) = found.ok_or_else(|| Failure::usage("unknown command (see --help)"))?;
    ops::run(op, m, &settings, json).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    /// clap checks a command tree only when it is built: build all of it,
    /// so a spec change that makes a bad tree fails here, not for a user.
    #[test]
    fn the_whole_command_tree_is_valid() {
        super::cli().debug_assert();
    }
}
