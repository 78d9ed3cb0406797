//! The quick start, as an end user's app would run it: open a thread with an
//! agent, stream a turn token by token, approve what the agent asks for, rate
//! the answer, and print what the turn cost.
//!
//! End users cannot list agents (that route is operators'): the agent id is
//! configuration, `PLATOS_AGENT_ID` here.
//!
//! ```sh
//! cargo run -p platos-client --example quickstart
//! ```
//!
//! With `PLATOS_BASE_URL`, `PLATOS_AGENT_ID` and `PLATOS_SESSION_TOKEN` set it talks to that
//! server; with `PLATOS_BASE_URL`, `PLATOS_API_KEY` and `PLATOS_ORGANIZATION_ID`,
//! `PLATOS_PROJECT_ID`, `PLATOS_ENVIRONMENT_ID` (optionally `PLATOS_USER_ID`)
//! it uses direct mode. With no `PLATOS_BASE_URL` it starts the embedded
//! Platos-compatible server in-process and mints a session token for it, the
//! way your backend would.

use std::io::Write;
use std::process::ExitCode;

use futures::StreamExt;
use platos_client::mint::{MintOptions, mint_session_token};
use platos_client::{Decision, Event, PlatosClient, Rating, Scope};
use platos_test_server::{SEED_AGENT_SUPPORT, TestServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MESSAGE: &str = "Summarise today's inbox, and ask for my approval before sending anything.";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line a user can act on; no backtrace.
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let (client, agent_id, _server) = connect().await?;

    let thread = client
        .threads()
        .create(&agent_id)
        .title("Quick start")
        .await?;
    println!("thread: {}", thread.id);
    println!("> {MESSAGE}");

    let mut turn = client.threads().send(&thread.id, MESSAGE);
    let mut cost = None;
    while let Some(event) = turn.next().await {
        match event? {
            Event::Token(token) => {
                print!("{}", token.text);
                std::io::stdout().flush()?;
            }
            Event::ToolCall(call) => println!("[tool call: {}]", call.name),
            Event::ApprovalNeeded(approval) => {
                println!("\n[approval needed: {}] approving", approval.action);
                client
                    .approvals()
                    .resolve(
                        &approval.approval_id,
                        Decision::approve().with_comment("approved by the quick start"),
                    )
                    .await?;
            }
            Event::MessagePersisted(persisted) => {
                // The end user who asked can rate the persisted answer; an
                // operator credential (direct mode) is refused, with a code.
                let rated = client
                    .messages()
                    .rate(&persisted.message_id, Rating::Up)
                    .comment("helpful")
                    .await;
                match rated {
                    Ok(_) => println!("\n[answer rated: up]"),
                    Err(e) if e.code() == Some("RATING_ACTOR_FORBIDDEN") => {
                        println!("\n[not rated: ratings are for end users]");
                    }
                    Err(e) => return Err(e.into()),
                }
                cost = Some(persisted);
            }
            Event::Done(_) => break,
            _ => {}
        }
    }
    println!();
    match cost {
        Some(m) => println!(
            "turn cost: {:.4} cents ({} input + {} output tokens)",
            m.cost_cents.unwrap_or(0.0),
            m.input_tokens.unwrap_or(0),
            m.output_tokens.unwrap_or(0),
        ),
        None => println!("turn cost: not reported by the server"),
    }
    Ok(())
}

/// A client and agent id for the configured server, or for an embedded one
/// (kept alive by the returned handle).
async fn connect() -> Result<(PlatosClient, String, Option<TestServer>), BoxError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(base_url) = env("PLATOS_BASE_URL") {
        let builder = PlatosClient::builder().base_url(base_url);
        let builder = match (env("PLATOS_SESSION_TOKEN"), env("PLATOS_API_KEY")) {
            (Some(token), _) => builder.session_token(token),
            (None, Some(key)) => {
                let required = |name: &str| {
                    env(name).ok_or_else(|| format!("direct mode needs {name} to be set"))
                };
                let mut scope = Scope::new(
                    required("PLATOS_ORGANIZATION_ID")?,
                    required("PLATOS_PROJECT_ID")?,
                    required("PLATOS_ENVIRONMENT_ID")?,
                );
                if let Some(user) = env("PLATOS_USER_ID") {
                    scope = scope.with_user_id(user);
                }
                builder.api_key(key).scope(scope)
            }
            (None, None) => {
                return Err("PLATOS_BASE_URL is set: also set PLATOS_SESSION_TOKEN, \
                            or PLATOS_API_KEY with the PLATOS_*_ID scope variables"
                    .into());
            }
        };
        let client = builder.build()?;
        let agent_id = env("PLATOS_AGENT_ID")
            .ok_or("PLATOS_BASE_URL is set: also set PLATOS_AGENT_ID (the agent to talk to)")?;
        return Ok((client, agent_id, None));
    }

    let server = TestServer::start().await?;
    println!(
        "no PLATOS_BASE_URL: using the embedded server at {}",
        server.base_url()
    );
    let scope = server.scope();
    let token = mint_session_token(
        &MintOptions::new(server.secret(), server.entity_id())
            .scope(
                &scope.organization_id,
                &scope.project_id,
                &scope.environment_id,
            )
            .user_id(server.user_id()),
    )?;
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(token)
        .build()?;
    Ok((client, SEED_AGENT_SUPPORT.to_owned(), Some(server)))
}
