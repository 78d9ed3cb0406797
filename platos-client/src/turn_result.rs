//! [`TurnResult`]: a whole turn as one value, as the one-shot calls
//! (`threads().ask`, `agents().ask`) answer it and as a streamed turn
//! collects into (`TurnStream::collect_turn`, with the `realtime` feature).

use platos_events::Event;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::structured::{self, Structured, StructuredOutput};
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
    /// The turn's `structured_output`, when the turn was sent with an
    /// `outputSchema` and the runtime produced one (see
    /// [`structured`](Self::structured)).
    pub structured_output: Option<StructuredOutput>,
    /// The turn's events in the order they happened.
    pub events: Vec<Event>,
}

impl TurnResult {
    /// A result read off the events of a streamed turn: the text is the
    /// `token` texts joined, cost, ids and usage come from the last
    /// `message_persisted`, the structured output from the last
    /// `structured_output`.
    #[cfg(feature = "realtime")]
    pub(crate) fn from_events(thread_id: String, events: Vec<Event>) -> TurnResult {
        let text = events
            .iter()
            .filter_map(|e| match e {
                Event::Token(t) => Some(t.text.as_str()),
                _ => None,
            })
            .collect();
        let mut result = TurnResult {
            text,
            thread_id,
            message_id: None,
            cost_cents: None,
            input_tokens: None,
            output_tokens: None,
            structured_output: None,
            events,
        };
        result.fill_from_events();
        result
    }

    /// What the events say and the answer's fields did not.
    fn fill_from_events(&mut self) {
        let persisted = self.events.iter().rev().find_map(|e| match e {
            Event::MessagePersisted(m) => Some(m),
            _ => None,
        });
        if let Some(m) = persisted {
            self.message_id.get_or_insert_with(|| m.message_id.clone());
            if self.cost_cents.is_none() {
                self.cost_cents = m.cost_cents;
            }
            self.input_tokens = self.input_tokens.or(m.input_tokens);
            self.output_tokens = self.output_tokens.or(m.output_tokens);
        }
        self.structured_output = self.events.iter().rev().find_map(|e| match e {
            Event::StructuredOutput(s) => Some(StructuredOutput {
                object: s.object.clone(),
                retry_count: s.retry_count.or(s.attempts),
            }),
            _ => None,
        });
    }

    /// The structured answer decoded into `T` (see
    /// [`crate::structured`]): the runtime's `structured_output_invalid` is
    /// [`Error::Validation`] listing its validation errors, an object that
    /// does not fit `T` is [`Error::Decode`] naming the field.
    pub fn structured<T: DeserializeOwned>(&self) -> Result<Structured<T>> {
        if let Some(output) = &self.structured_output {
            return output.decode();
        }
        let invalid = self.events.iter().rev().find_map(|e| match e {
            Event::Error(e) if e.code.as_deref() == Some("structured_output_invalid") => Some(e),
            _ => None,
        });
        if let Some(e) = invalid {
            return Err(structured::invalid(
                &e.message,
                e.validation_errors.as_ref(),
            ));
        }
        let why = self
            .events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Error(e) => Some(format!("the turn failed: {}", e.message)),
                _ => None,
            })
            .unwrap_or_else(|| "the turn produced no structured_output event".to_owned());
        Err(Error::decode(None, "structured_output", why, b""))
    }
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
        let mut result = TurnResult {
            message_id: answer.message_id,
            cost_cents: answer.cost_cents,
            input_tokens: None,
            output_tokens: None,
            text: answer.text.unwrap_or_default(),
            thread_id: answer.thread_id.unwrap_or_default(),
            structured_output: None,
            events,
        };
        result.fill_from_events();
        Ok(result)
    }
}
