//! `platos chat [--agent ID | --thread ID]`: a REPL over streamed turns.
//!
//! Each line read is one turn: tokens are printed as they arrive (stdout),
//! tool calls, approvals, errors and the turn's cost on stderr. An approval
//! is answered by `--yes`, else by the next line read (`y` or `yes`
//! approves; anything else rejects), so a script can pipe its answers in
//! after its messages. Ctrl-C stops the current turn (the server is sent
//! `stop`); a second Ctrl-C, or one while no turn runs, quits (exit 130).
//! End of input quits after the current turn.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use futures::StreamExt;
use platos_client::realtime::{SendOptions, Transport};
use platos_client::{Decision, Event, PlatosClient};
use tokio::sync::mpsc;

use crate::commands::interrupt::{INTERRUPTED, Interrupts};
use crate::config::Settings;
use crate::fail::{Failure, Result};
use crate::output;

pub fn command() -> Command {
    Command::new("chat")
        .about("Talk to an agent: each line is a turn, streamed as it comes")
        .arg(
            Arg::new("agent")
                .long("agent")
                .value_name("ID")
                .conflicts_with("thread")
                .help("Open a new thread with this agent (else PLATOS_AGENT_ID)"),
        )
        .arg(
            Arg::new("thread")
                .long("thread")
                .value_name("ID")
                .help("Continue this thread"),
        )
        .arg(
            Arg::new("yes")
                .long("yes")
                .short('y')
                .action(ArgAction::SetTrue)
                .help("Approve every approval the agent asks for"),
        )
        .arg(
            Arg::new("transport")
                .long("transport")
                .value_name("LANE")
                .value_parser(["auto", "websocket", "http"])
                .default_value("auto")
                .help("How turns stream: the socket, server-sent events over HTTP, or the socket falling back to HTTP"),
        )
}

enum Next {
    Continue,
    Quit,
}

pub async fn run(m: &ArgMatches, settings: &Settings) -> Result<ExitCode> {
    let client = settings.client()?;
    let transport = match m.get_one::<String>("transport").map(String::as_str) {
        Some("websocket") => Transport::WebSocket,
        Some("http") => Transport::Http,
        _ => Transport::Auto,
    };
    let yes = m.get_flag("yes");
    let mut interrupts = Interrupts::install()?;
    let thread = match m.get_one::<String>("thread") {
        Some(thread) => {
            // Refused here, as one line and exit 1, rather than as a turn's error event.
            client
                .raw("GET", "/api/v1/agent/threads/{threadId}")
                .operation("threads_get")
                .param("threadId", thread.clone())
                .send()
                .await?;
            thread.clone()
        }
        None => {
            let agent = match m.get_one::<String>("agent") {
                Some(agent) => agent.clone(),
                None => settings.get("agent_id").map(str::to_owned).ok_or_else(|| {
                    Failure::usage(
                        "no agent: pass --agent ID or --thread ID, or set PLATOS_AGENT_ID",
                    )
                })?,
            };
            let created = client
                .raw("POST", "/api/v1/agent/threads")
                .operation("threads_create")
                .body(serde_json::json!({ "agentId": agent }))
                .send()
                .await?;
            let id = created["id"]
                .as_str()
                .ok_or_else(|| Failure::usage("the server answered a thread without an id"))?
                .to_owned();
            eprintln!("[thread: {id}]");
            id
        }
    };
    let tty = std::io::stdin().is_terminal();
    let mut lines = read_lines();
    loop {
        if tty {
            eprint!("> ");
        }
        // Ctrl-C first: it wins over a line (or the end of input) ready at the same time.
        let line = tokio::select! {
            biased;
            () = interrupts.next() => return Ok(ExitCode::from(INTERRUPTED)),
            line = lines.recv() => line,
        };
        let Some(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match turn(
            &client,
            &thread,
            line,
            transport,
            yes,
            &mut lines,
            &mut interrupts,
        )
        .await?
        {
            Next::Continue => {}
            Next::Quit => return Ok(ExitCode::from(INTERRUPTED)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines of stdin, read on a thread of their own (stdin blocks).
fn read_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn turn(
    client: &PlatosClient,
    thread: &str,
    message: &str,
    transport: Transport,
    yes: bool,
    lines: &mut mpsc::UnboundedReceiver<String>,
    interrupts: &mut Interrupts,
) -> Result<Next> {
    let colour = output::decorate_stderr();
    let mut stream =
        client
            .threads()
            .send_with(thread, message, SendOptions::new().transport(transport));
    let handle = stream.handle();
    let mut stopping = false;
    // Until the first event: connecting, or the model thinking.
    let mut spinner = output::Spinner::start(colour);
    let mut cost = None;
    let mut failed = false;
    let mut out = std::io::stdout();
    // Whether tokens left the terminal's cursor mid-line: a note then starts a new one.
    let mut mid_line = false;
    let note = |mid_line: &mut bool, text: &str| {
        if std::mem::take(mid_line) {
            eprintln!();
        }
        eprintln!("{text}");
    };
    loop {
        let event = tokio::select! {
            biased;
            () = interrupts.next() => {
                if stopping {
                    return Ok(Next::Quit);
                }
                stopping = true;
                handle.stop();
                note(&mut mid_line, "[stopping the turn; Ctrl-C again quits]");
                continue;
            }
            event = stream.next() => event,
            () = spinner.tick(), if spinner.spinning() => continue,
        };
        spinner.stop();
        let Some(event) = event else { break };
        match event? {
            Event::Token(token) => {
                let _ = out.write_all(token.text.as_bytes());
                let _ = out.flush();
                mid_line = !token.text.ends_with('\n');
            }
            Event::ToolCall(call) => note(&mut mid_line, &format!("[tool call: {}]", call.name)),
            Event::ApprovalNeeded(approval) => {
                let approve = if yes {
                    true
                } else {
                    if std::mem::take(&mut mid_line) {
                        eprintln!();
                    }
                    eprint!("[approval needed: {}] approve? [y/N] ", approval.action);
                    // A piped answer is not echoed: the prompt's line is still open.
                    mid_line = !std::io::stdin().is_terminal();
                    let answer = tokio::select! {
                        biased;
                        () = interrupts.next() => {
                            stopping = true;
                            handle.stop();
                            eprintln!();
                            eprintln!("[stopping the turn; Ctrl-C again quits]");
                            continue;
                        }
                        answer = lines.recv() => answer,
                    };
                    matches!(
                        answer
                            .as_deref()
                            .map(str::trim)
                            .map(str::to_ascii_lowercase)
                            .as_deref(),
                        Some("y" | "yes")
                    )
                };
                let decision = if approve {
                    Decision::approve()
                } else {
                    Decision::reject()
                };
                handle
                    .approval_response(approval.approval_id.clone(), decision)
                    .await?;
                let verdict = if approve { "approved" } else { "rejected" };
                note(
                    &mut mid_line,
                    &format!("[approval {}: {verdict}]", approval.action),
                );
            }
            Event::Error(error) => {
                failed = true;
                let code = error.code.map(|c| format!(" ({c})")).unwrap_or_default();
                note(&mut mid_line, &format!("[error: {}{code}]", error.message));
            }
            Event::MessagePersisted(persisted) => cost = Some(persisted),
            Event::Done(done) => {
                if done.stopped == Some(true) {
                    note(&mut mid_line, "[stopped]");
                }
                break;
            }
            _ => {}
        }
    }
    if mid_line {
        let _ = writeln!(out);
    }
    match cost {
        Some(m) => eprintln!(
            "[cost: {:.4} cents, {} input + {} output tokens]",
            m.cost_cents.unwrap_or(0.0),
            m.input_tokens.unwrap_or(0),
            m.output_tokens.unwrap_or(0)
        ),
        None if !stopping && !failed => eprintln!("[cost: not reported by the server]"),
        None => {}
    }
    Ok(Next::Continue)
}
