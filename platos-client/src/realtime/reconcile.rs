//! What became of a turn whose events stopped after a reconnect
//! (docs/realtime.md §6), read from the thread's messages over REST.
//!
//! The gateway keeps no per-thread buffer and a direct-mode turn dies with
//! its process, so after a reconnect a turn may never send another event.
//! Its connection then hands the stream a check instead of waiting forever;
//! the stream reads the thread's messages and yields only what they prove:
//! the answer persisted after the turn's user message, a failure recorded
//! there, or nothing, which ends the stream with `turn_lost`.

use std::time::{Duration, SystemTime};

use platos_events::{Event, RecoveredMessageEvent};
use serde_json::{Map, Value};

use super::Context;
use crate::error::Error;
use crate::types::Message;

/// Messages read per page while looking for the turn's user message.
const PAGE: u64 = 100;
/// How much earlier than the client's clock at `send` the server may stamp
/// the turn's user message (clock skew). An identical message older than
/// that belongs to an earlier turn, so its answer is never taken for this
/// one's.
const SKEW: Duration = Duration::from_secs(30);

/// Pages read at most: a thread longer than this is not searched further
/// and the turn counts as unknown (never as recovered by guess).
const MAX_PAGES: u64 = 50;

/// What the thread says about the turn.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// The assistant's answer after the turn's user message.
    Answered(Box<Message>),
    /// An assistant message after it that records an error.
    Failed {
        code: Option<String>,
        message: String,
    },
    /// No answer (yet), or the user message is not there.
    Unknown,
}

/// Reads the thread's messages and says what became of the turn whose
/// user message was `sent`: the items the stream yields, last.
pub(crate) async fn check(
    client: &Context,
    thread_id: &str,
    sent: &str,
    sent_at: SystemTime,
    silent_for: Duration,
) -> Vec<Result<Event, Error>> {
    let lost = |why: &str| {
        Error::stream_of(
            crate::error::StreamCode::TurnLost,
            format!(
                "no event for {} s after a reconnect, and {why}; the turn may still complete \
                 server-side: look at `threads().messages(\"{thread_id}\")` later",
                silent_for.as_secs_f64()
            ),
        )
    };
    let mut messages = Vec::new();
    for page in 1..=MAX_PAGES {
        match client
            .rest
            .thread_messages(thread_id.to_owned(), page, PAGE)
            .await
        {
            Ok(items) => {
                let last = (items.len() as u64) < PAGE;
                messages.extend(items);
                if last {
                    break;
                }
            }
            Err(e) => {
                return vec![Err(lost(&format!(
                    "reading the thread's messages failed ({e})"
                )))];
            }
        }
    }
    let not_before = sent_at.checked_sub(SKEW).unwrap_or(SystemTime::UNIX_EPOCH);
    match verdict(&messages, sent, not_before) {
        Verdict::Answered(message) => {
            let gap = Event::stream_gap(
                Some(format!(
                    "no event for {} s after a reconnect; the answer was read from the \
                     thread's messages (events in between are not replayed)",
                    silent_for.as_secs_f64()
                )),
                None,
            );
            vec![Ok(gap), Ok(recovered(thread_id, *message))]
        }
        Verdict::Failed { code, message } => vec![Err(Error::stream_of(
            crate::error::StreamCode::TurnFailed,
            format!(
                "the turn failed server-side while the stream was reconnecting: {message}{}",
                code.map(|c| format!(" (code {c})")).unwrap_or_default()
            ),
        ))],
        Verdict::Unknown => vec![Err(lost("the thread holds no answer to its message yet"))],
    }
}

/// The turn's fate from the thread's messages (oldest first): the last
/// user message with the text sent, stamped no earlier than `not_before`
/// (messages carry no idempotency key, so an older identical message is an
/// earlier turn's), then the first assistant message after it. A failure is
/// an assistant message whose `responseJson.error` is set (a string or
/// `{message, code}`).
pub(crate) fn verdict(messages: &[Message], sent: &str, not_before: SystemTime) -> Verdict {
    let recent = |m: &Message| match m.created_at.as_deref().map(super::rfc3339::parse) {
        Some(Some(at)) => at >= not_before,
        // Unstamped: the text is all there is to go by.
        _ => true,
    };
    let Some(asked) = messages.iter().rposition(|m| {
        m.role.as_deref() == Some("user") && m.content.as_deref() == Some(sent) && recent(m)
    }) else {
        return Verdict::Unknown;
    };
    let Some(answer) = messages[asked + 1..]
        .iter()
        .find(|m| m.role.as_deref() == Some("assistant"))
    else {
        return Verdict::Unknown;
    };
    match answer.response_json.as_ref().and_then(|r| r.get("error")) {
        Some(Value::Null) | None => Verdict::Answered(Box::new(answer.clone())),
        Some(Value::String(message)) => Verdict::Failed {
            code: None,
            message: message.clone(),
        },
        Some(error) => Verdict::Failed {
            code: error.get("code").and_then(Value::as_str).map(Into::into),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message recorded")
                .into(),
        },
    }
}

/// The `recovered_message` event for a persisted assistant message.
fn recovered(thread_id: &str, message: Message) -> Event {
    let response = message.response_json.as_ref();
    let usage = |key: &str| {
        response
            .and_then(|r| r.get("usage"))
            .and_then(|u| u.get(key))
            .and_then(Value::as_u64)
    };
    Event::RecoveredMessage(RecoveredMessageEvent {
        cost_cents: response
            .and_then(|r| r.get("cost_cents"))
            .and_then(Value::as_f64),
        input_tokens: usage("inputTokens"),
        output_tokens: usage("outputTokens"),
        created_at: message.created_at,
        text: message.content.unwrap_or_default(),
        message_id: message.id,
        thread_id: Some(thread_id.to_owned()),
        reply_to_message_id: None,
        extra: Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(role: &str, content: &str, response: Value) -> Message {
        serde_json::from_value(json!({
            "id": format!("m-{content}"), "role": role, "content": content,
            "responseJson": response,
        }))
        .unwrap()
    }

    #[test]
    fn the_answer_after_the_last_matching_user_message_is_recovered() {
        let thread = [
            message("user", "hi", Value::Null),
            message("assistant", "old answer", Value::Null),
            message("user", "hi", Value::Null),
            message("tool", "lookup", Value::Null),
            message(
                "assistant",
                "new answer",
                json!({"cost_cents": 0.5, "usage": {"inputTokens": 3, "outputTokens": 4}}),
            ),
        ];
        let Verdict::Answered(answer) = verdict(&thread, "hi", long_ago()) else {
            panic!("not answered");
        };
        assert_eq!(answer.content.as_deref(), Some("new answer"));
        let Event::RecoveredMessage(event) = recovered("t1", *answer) else {
            panic!("wrong event");
        };
        assert_eq!(
            (event.text.as_str(), event.message_id.as_str()),
            ("new answer", "m-new answer")
        );
        assert_eq!(
            (event.cost_cents, event.input_tokens, event.output_tokens),
            (Some(0.5), Some(3), Some(4))
        );
        assert_eq!(event.thread_id.as_deref(), Some("t1"));
    }

    #[test]
    fn no_user_message_or_no_answer_yet_is_unknown() {
        let asked = [message("user", "hi", Value::Null)];
        assert_eq!(verdict(&asked, "hi", long_ago()), Verdict::Unknown);
        assert_eq!(verdict(&asked, "other", long_ago()), Verdict::Unknown);
        assert_eq!(verdict(&[], "hi", long_ago()), Verdict::Unknown);
    }

    fn long_ago() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    #[test]
    fn an_identical_message_older_than_the_send_is_an_earlier_turns() {
        let stamped = |mut m: Message, at: &str| {
            m.created_at = Some(at.into());
            m
        };
        let thread = [
            stamped(message("user", "yes", Value::Null), "2026-12-02T15:00:00Z"),
            stamped(
                message("assistant", "earlier answer", Value::Null),
                "2026-12-02T15:00:05Z",
            ),
        ];
        let sent_at = crate::realtime::rfc3339::parse("2026-12-02T15:10:00Z").unwrap();
        assert_eq!(verdict(&thread, "yes", sent_at - SKEW), Verdict::Unknown);
        // Within the skew it may be this turn's message.
        let sent_at = crate::realtime::rfc3339::parse("2026-12-02T15:00:20Z").unwrap();
        assert!(matches!(
            verdict(&thread, "yes", sent_at - SKEW),
            Verdict::Answered(_)
        ));
    }

    #[test]
    fn a_recorded_error_is_a_failure() {
        let thread = [
            message("user", "hi", Value::Null),
            message(
                "assistant",
                "",
                json!({"error": {"message": "provider down", "code": "provider_unavailable"}}),
            ),
        ];
        assert_eq!(
            verdict(&thread, "hi", long_ago()),
            Verdict::Failed {
                code: Some("provider_unavailable".into()),
                message: "provider down".into()
            }
        );
        let thread = [
            message("user", "hi", Value::Null),
            message("assistant", "", json!({"error": "boom"})),
        ];
        assert_eq!(
            verdict(&thread, "hi", long_ago()),
            Verdict::Failed {
                code: None,
                message: "boom".into()
            }
        );
    }
}
