//! The invariants one turn's stream must keep, as a pure function over the
//! items it yielded (so the rules are unit-tested apart from any server).
//!
//! The soak asks for `[tokens=N]` answers: the server sends `w1 `, `w2 `, …
//! `wN ` in order. While connected every one must arrive once and in order;
//! a token may be skipped only after the stream said events may have been
//! missed (`stream_gap`). The stream ends once: after `done`, after a
//! `recovered_message`, or with an error that is its last item.

use platos_client::Error;
use platos_events::Event;

/// How a turn that kept every invariant ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `done` with every token.
    Complete,
    /// `done` after a gap: some tokens were missed, and the stream said so.
    DoneAfterGap,
    /// Answer read from the thread's messages after a silent reconnect.
    Recovered,
    /// A typed error, last: its code (or class).
    Error(String),
}

/// What one turn showed, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub end: End,
    pub tokens: usize,
    pub gaps: usize,
    pub reconnects: usize,
    /// Non-terminal decode errors (a known event with a malformed body).
    pub decode_errors: usize,
}

/// Checks the items of the turn on `thread_id` that asked for `expected` tokens.
pub fn turn(
    items: &[Result<Event, Error>],
    thread_id: &str,
    expected: usize,
) -> Result<Turn, String> {
    let mut last_token = 0usize;
    let mut tokens = 0usize;
    let mut gaps = 0usize;
    let mut reconnects = 0usize;
    let mut decode_errors = 0usize;
    // Whether a gap was announced since the last token.
    let mut may_skip = false;
    let mut end = None;
    for (i, item) in items.iter().enumerate() {
        if let Some(end) = &end {
            return Err(format!(
                "item {i} ({}) after the end ({end:?})",
                describe(item)
            ));
        }
        match item {
            Ok(event) => {
                if let Some(t) = event.thread_id()
                    && t != thread_id
                {
                    return Err(format!("item {i}: a `{}` of thread {t}", event.kind()));
                }
                match event {
                    Event::Token(tok) => {
                        let n = token_number(&tok.text)
                            .ok_or_else(|| format!("item {i}: unexpected token {:?}", tok.text))?;
                        if n <= last_token {
                            return Err(format!("item {i}: token w{n} after w{last_token}"));
                        }
                        if n != last_token + 1 && !may_skip {
                            return Err(format!(
                                "item {i}: token w{n} after w{last_token} with no stream_gap"
                            ));
                        }
                        if n > expected {
                            return Err(format!("item {i}: token w{n} of {expected}"));
                        }
                        last_token = n;
                        tokens += 1;
                        may_skip = false;
                    }
                    Event::StreamGap(_) => {
                        gaps += 1;
                        may_skip = true;
                    }
                    Event::Reconnecting(_) => reconnects += 1,
                    Event::Done(_) => {
                        end = Some(if gaps == 0 {
                            if last_token != expected {
                                return Err(format!(
                                    "done after w{last_token} of {expected} with no stream_gap"
                                ));
                            }
                            End::Complete
                        } else {
                            End::DoneAfterGap
                        });
                    }
                    Event::RecoveredMessage(_) => {
                        if gaps == 0 {
                            return Err(format!("item {i}: recovered_message with no stream_gap"));
                        }
                        end = Some(End::Recovered);
                    }
                    _ => {}
                }
            }
            Err(Error::Decode(_)) => decode_errors += 1,
            Err(e) => end = Some(End::Error(error_code(e))),
        }
    }
    let end = end.ok_or_else(|| {
        format!(
            "the stream ended after {} item(s) with neither done nor an error (last: {})",
            items.len(),
            items.last().map_or_else(|| "none".into(), describe)
        )
    })?;
    Ok(Turn {
        end,
        tokens,
        gaps,
        reconnects,
        decode_errors,
    })
}

/// `w12 ` → 12.
fn token_number(text: &str) -> Option<usize> {
    text.strip_prefix('w')?.strip_suffix(' ')?.parse().ok()
}

/// An item in a message: its event type, or `error <code>`.
pub fn describe(item: &Result<Event, Error>) -> String {
    match item {
        Ok(Event::Disconnected(d)) => {
            format!("disconnected ({})", d.reason.as_deref().unwrap_or(""))
        }
        Ok(e) => e.kind().to_owned(),
        Err(e) => format!("error {}", error_code(e)),
    }
}

/// An error's code, else its class: what the report counts endings by.
pub fn error_code(e: &Error) -> String {
    e.code().unwrap_or(e.kind()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: serde_json::Value) -> Result<Event, Error> {
        Ok(Event::from_json(&v.to_string()).expect("event"))
    }
    fn tok(n: usize) -> Result<Event, Error> {
        ev(json!({"type": "token", "text": format!("w{n} "), "threadId": "t"}))
    }
    fn done() -> Result<Event, Error> {
        ev(json!({"type": "done", "threadId": "t"}))
    }
    fn gap() -> Result<Event, Error> {
        Ok(Event::stream_gap(None, Some(1)))
    }

    #[test]
    fn every_token_then_done_is_complete() {
        let t = turn(&[tok(1), tok(2), tok(3), done()], "t", 3).expect("ok");
        assert_eq!(t.end, End::Complete);
        assert_eq!(t.tokens, 3);
    }

    #[test]
    fn a_skip_needs_a_gap_before_it() {
        let e = turn(&[tok(1), tok(3), done()], "t", 3).expect_err("skip");
        assert!(e.contains("no stream_gap"), "{e}");
        let t = turn(&[tok(1), gap(), tok(3), done()], "t", 3).expect("gap");
        assert_eq!(t.end, End::DoneAfterGap);
        // The gap covers one skip, not every later one.
        let e = turn(&[tok(1), gap(), tok(3), tok(5), done()], "t", 5).expect_err("second");
        assert!(e.contains("w5 after w3"), "{e}");
    }

    #[test]
    fn duplicates_and_reordering_are_violations() {
        assert!(turn(&[tok(1), tok(1), done()], "t", 1).is_err());
        assert!(turn(&[tok(2), gap(), tok(1), done()], "t", 2).is_err());
    }

    #[test]
    fn done_without_every_token_and_no_gap_is_a_loss() {
        let e = turn(&[tok(1), done()], "t", 2).expect_err("lost");
        assert!(e.contains("done after w1 of 2"), "{e}");
    }

    #[test]
    fn nothing_may_follow_the_end() {
        assert!(turn(&[tok(1), done(), tok(2)], "t", 2).is_err());
        let err = || -> Result<Event, Error> { Err(Error::Config("x".into())) };
        assert!(turn(&[tok(1), err(), done()], "t", 1).is_err());
        let t = turn(&[tok(1), err()], "t", 2).expect("typed end");
        assert_eq!(t.end, End::Error("config".into()));
    }

    #[test]
    fn a_stream_must_end_and_stay_on_its_thread() {
        assert!(
            turn(&[tok(1)], "t", 1)
                .expect_err("open")
                .contains("neither")
        );
        assert!(turn(&[], "t", 1).is_err());
        let other = ev(json!({"type": "token", "text": "w1 ", "threadId": "u"}));
        assert!(turn(&[other, done()], "t", 1).is_err());
    }
}
