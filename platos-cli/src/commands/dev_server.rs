//! `platos dev-server [--port N]`: the embedded Platos-compatible server
//! (`platos_test_server`, in memory, seeded), with the settings to use it
//! printed as `export NAME='value'` lines a shell can `eval` or source.
//! Its credentials are throwaway (signed with the dev server's own secret,
//! valid one hour): printing them is the point.

use std::io::Write;
use std::process::ExitCode;

use clap::{Arg, ArgMatches, Command, value_parser};
use platos_test_server::{SEED_AGENT_SUPPORT, TestServer};

use crate::commands::interrupt::Interrupts;
use crate::fail::{Failure, Result};

pub fn command() -> Command {
    Command::new("dev-server")
        .about("Run a local Platos-compatible server and print the PLATOS_* settings to use it")
        .long_about(
            "Run the embedded Platos-compatible server (in memory, seeded with agents, a thread \
             and approvals) on 127.0.0.1 until Ctrl-C, and print eval-able lines: \
             PLATOS_BASE_URL, PLATOS_SESSION_TOKEN (an end user's), PLATOS_AGENT_ID, \
             PLATOS_OPERATOR_TOKEN, the scope ids and the entity secret for `platos token mint`.\n\n\
             platos dev-server > platos.env &\n\
             until [ -s platos.env ]; do sleep 0.1; done; . ./platos.env",
        )
        .arg(
            Arg::new("port")
                .long("port")
                .value_name("N")
                .default_value("3100")
                .value_parser(value_parser!(u16))
                .help("Port on 127.0.0.1 (0 picks a free one)"),
        )
}

pub async fn run(m: &ArgMatches) -> Result<ExitCode> {
    let port = m.get_one::<u16>("port").copied().unwrap_or(3100);
    let mut interrupts = Interrupts::install()?;
    let server = TestServer::builder()
        .port(port)
        .start()
        .await
        .map_err(|e| Failure {
            exit: crate::fail::Exit::Network,
            message: format!("starting the dev server on port {port}: {e:#}"),
        })?;
    let scope = server.scope().clone();
    let lines = [
        ("PLATOS_BASE_URL", server.base_url()),
        ("PLATOS_SESSION_TOKEN", server.session_token()),
        ("PLATOS_AGENT_ID", SEED_AGENT_SUPPORT.to_owned()),
        ("PLATOS_OPERATOR_TOKEN", server.operator_token()),
        ("PLATOS_ORGANIZATION_ID", scope.organization_id.clone()),
        ("PLATOS_PROJECT_ID", scope.project_id.clone()),
        ("PLATOS_ENVIRONMENT_ID", scope.environment_id.clone()),
        ("PLATOS_USER_ID", server.user_id().to_owned()),
        ("PLATOS_ENTITY_ID", server.entity_id().to_owned()),
        ("PLATOS_ENTITY_SECRET", server.secret().to_owned()),
    ];
    let mut text = String::new();
    for (name, value) in lines {
        text.push_str(&format!("export {name}={}\n", shell_quote(&value)));
    }
    // One write, so a reader polling the file sees all lines or none.
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::io("stdout", e))?;
    drop(out);
    eprintln!(
        "platos dev server on {} (Ctrl-C stops it)",
        server.base_url()
    );
    interrupts.next().await;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// `value` in single quotes, safe for any POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_quote_survives_quotes() {
        assert_eq!(super::shell_quote("a'b"), r"'a'\''b'");
    }
}
