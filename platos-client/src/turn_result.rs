//! [`TurnResult`]: a whole turn as one value, as the one-shot calls
//! (`threads().ask`, `agents().ask`) answer it.

use platos_events::Event;

use crate::error::{Error, Result};
use crate::types::TurnAnswer;

/// A finished turn: what the agent said, where it was kept, what it cost,
/// and every event it produced (typed as on the stream; kinds this SDK does
/// not know are kept raw as [`Event::Unknown`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TurnResult {
    /// The assistant's answer text.
    pub text: String,
    /// The thread the turn ran in (new when the call opened one).
    pub thread_id: String,
    /// The persisted assistant message: rate it with
    /// `client.messages().rate(id, Rating::Up)`.
    pub message_id: Option<String>,
    /// What the turn cost, in (fractional) cents.
    pub cost_cents: Option<f64>,
    /// Prompt tokens, when the server reported them.
    pub input_tokens: Option<u64>,
    /// Completion tokens, when the server reported them.
    pub output_tokens: Option<u64>,
    /// The turn's events in the order they happened.
    pub events: Vec<Event>,
}

impl TryFrom<TurnAnswer> for TurnResult {
    type Error = Error;

    /// A malformed event of a known kind is a decode error naming its index
    /// and field: the answer does not mean what the API says.
    fn try_from(answer: TurnAnswer) -> Result<Self> {
        let events = answer
            .events
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                let text = raw.to_string();
                Event::from_value(raw).map_err(|e| {
                    let path = format!("events[{i}]{}", e.path().unwrap_or(""));
                    Error::decode(None, path, e.to_string(), text.as_bytes())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let persisted = events.iter().rev().find_map(|e| match e {
            Event::MessagePersisted(m) => Some(m),
            _ => None,
        });
        Ok(TurnResult {
            message_id: answer
                .message_id
                .or_else(|| persisted.map(|m| m.message_id.clone())),
            cost_cents: answer
                .cost_cents
                .or_else(|| persisted.and_then(|m| m.cost_cents)),
            input_tokens: persisted.and_then(|m| m.input_tokens),
            output_tokens: persisted.and_then(|m| m.output_tokens),
            text: answer.text.unwrap_or_default(),
            thread_id: answer.thread_id.unwrap_or_default(),
            events,
        })
    }
}
