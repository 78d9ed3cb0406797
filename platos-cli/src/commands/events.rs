//! `platos events tail ENV STREAM [--from CURSOR:SEQ]` (also `platos v1
//! environment-streams read`): the V1 resumable reader. One frame per line
//! on stdout (`--json` prints each whole); on exit, however it ends (the
//! stream's end, an error or Ctrl-C), the position to resume from on
//! stderr as `resume: --from CURSOR:SEQ`.

use std::process::ExitCode;

use clap::{Arg, ArgMatches, Command};
use futures::StreamExt;
use platos_client::v1::{Frame, StreamPosition};
use serde_json::{Value, json};

use crate::commands::interrupt::{INTERRUPTED, Interrupts};
use crate::config::Settings;
use crate::fail::{Failure, Result};

pub fn command(name: &'static str) -> Command {
    Command::new(name)
        .about("Follow an environment's event stream, resumably (operator credential)")
        .arg(Arg::new("environment").value_name("ENV").required(true))
        .arg(Arg::new("stream").value_name("STREAM").required(true))
        .arg(
            Arg::new("from")
                .long("from")
                .value_name("CURSOR:SEQ")
                .help("Resume after this position (printed by an earlier tail on exit)"),
        )
}

/// `CURSOR:SEQ`, split at the last `:` (a cursor may hold colons).
fn position(text: &str) -> Result<StreamPosition> {
    let bad = || Failure::usage(format!("--from `{text}` is not CURSOR:SEQ"));
    let (cursor, seq) = text.rsplit_once(':').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    StreamPosition::new(cursor, seq).map_err(|e| Failure::usage(format!("--from: {}", e.message())))
}

pub async fn run(m: &ArgMatches, settings: &Settings, json: bool) -> Result<ExitCode> {
    let env = m
        .get_one::<String>("environment")
        .cloned()
        .unwrap_or_default();
    let stream_id = m.get_one::<String>("stream").cloned().unwrap_or_default();
    let from = m
        .get_one::<String>("from")
        .map(|t| position(t))
        .transpose()?;
    let client = settings.v1_client()?;
    let mut interrupts = Interrupts::install()?;
    let mut reader = client.environment_streams().read(env, stream_id);
    if let Some(from) = from.clone() {
        reader = reader.resume_from(from);
    }
    let mut stream = reader.open()?;
    let mut code = ExitCode::SUCCESS;
    let mut failure = None;
    loop {
        let frame = tokio::select! {
            biased;
            () = interrupts.next() => {
                code = ExitCode::from(INTERRUPTED);
                break;
            }
            frame = stream.next() => frame,
        };
        match frame {
            None => break,
            Some(Ok(frame)) => crate::output::emit(&format!("{}\n", show(&frame, json))),
            Some(Err(e)) => {
                failure = Some(Failure::from(e));
                break;
            }
        }
    }
    // Where a later tail picks up: the last applied frame, else where this one started.
    match stream.position().or(from) {
        Some(p) => eprintln!("resume: --from {}:{}", p.last_event_id(), p.last_seq()),
        None => eprintln!("resume: from the start (no frame read)"),
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(code),
    }
}

fn show(frame: &Frame, json: bool) -> String {
    let mut value = json!({"seq": frame.seq, "t": frame.t.as_str(), "ts": frame.ts});
    if let Some(id) = &frame.id {
        value["id"] = Value::String(id.clone());
    }
    if json {
        value["fields"] = Value::Object(frame.fields.clone());
        return value.to_string();
    }
    let fields = Value::Object(frame.fields.clone());
    format!("{} {} {}", frame.seq, frame.t.as_str(), fields)
}

#[cfg(test)]
mod tests {
    use super::position;

    #[test]
    fn positions_split_at_the_last_colon() {
        let p = position("a:b:7").expect("valid");
        assert_eq!((p.last_event_id(), p.last_seq()), ("a:b", 7));
        assert!(position("nocolon").is_err());
        assert!(position("x:0").is_err());
        assert!(position(":3").is_err());
    }
}
