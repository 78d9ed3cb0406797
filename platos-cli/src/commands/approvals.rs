//! `platos approvals watch`: pending approvals as they appear, each asked
//! y/n on the terminal (or approved with `--yes`). Polls the operator list
//! (`GET /monitoring/approvals?status=pending`) every `--every` seconds, so
//! it needs an operator credential (`--operator` or an api key); Ctrl-C ends it.

use std::collections::HashSet;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use platos_client::Decision;
use serde_json::json;

use crate::commands::interrupt::{INTERRUPTED, Interrupts};
use crate::config::Settings;
use crate::fail::Result;

pub fn command() -> Command {
    Command::new("watch")
        .about("Answer pending approvals as they appear (operator credential)")
        .arg(
            Arg::new("yes")
                .long("yes")
                .short('y')
                .action(ArgAction::SetTrue)
                .help("Approve each one without asking"),
        )
        .arg(
            Arg::new("every")
                .long("every")
                .value_name("SECONDS")
                .default_value("2")
                .value_parser(value_parser!(u64).range(1..))
                .help("How often to look"),
        )
}

pub async fn run(m: &ArgMatches, settings: &Settings) -> Result<ExitCode> {
    let client = settings.client()?;
    let yes = m.get_flag("yes");
    let every = Duration::from_secs(m.get_one::<u64>("every").copied().unwrap_or(2));
    let mut interrupts = Interrupts::install()?;
    let mut seen = HashSet::new();
    loop {
        let page = client
            .raw("GET", "/api/v1/agent/monitoring/approvals")
            .operation("approvals_list")
            .query("status", "pending")
            .send()
            .await?;
        let rows = crate::output::items(&page, &["rows", "items", "approvals"])
            .cloned()
            .unwrap_or_default();
        for row in rows {
            // A server that ignores the filter still lists only what is pending here.
            if row["status"].as_str().is_some_and(|s| s != "pending") {
                continue;
            }
            let Some(id) = row["id"].as_str().map(str::to_owned) else {
                continue;
            };
            if !seen.insert(id.clone()) {
                continue;
            }
            let action = row["action"].as_str().unwrap_or("?");
            let approve = if yes {
                true
            } else {
                eprint!("[approval {id}: {action}] approve? [y/N] ");
                let answer = tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).map(|_| line)
                });
                let answer = tokio::select! {
                    biased;
                    () = interrupts.next() => return Ok(ExitCode::from(INTERRUPTED)),
                    a = answer => a.ok().and_then(|r| r.ok()).unwrap_or_default(),
                };
                matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
            };
            let decision = if approve {
                Decision::approve()
            } else {
                Decision::reject()
            };
            client
                .raw("POST", "/api/v1/agent/approvals/{approvalId}/resolve")
                .operation("approvals_resolve")
                .param("approvalId", id.clone())
                .body(json!({ "approved": decision.is_approved() }))
                .send()
                .await?;
            crate::output::emit(&format!(
                "{id} {action} {}\n",
                if approve { "approved" } else { "rejected" }
            ));
        }
        tokio::select! {
            biased;
            () = interrupts.next() => return Ok(ExitCode::from(INTERRUPTED)),
            () = tokio::time::sleep(every) => {}
        }
    }
}
