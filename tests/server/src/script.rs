//! The scripted agent's answer to one message, as a plain list of `agent_event` payloads.
//!
//! Pure apart from fresh ids: no store, no socket, no clock. The one-shot REST turns use it
//! as is; the socket lane can replay the same list (adding its pauses, approvals and
//! artifacts) once it is moved onto this function.

use serde_json::{Value, json};

use crate::store::new_id;

/// What the agent thought before answering (also stored on the assistant message).
pub(crate) const THINKING: &str = "Looking up what the user asked.";

/// One answered message: the events in order (ending with `done`) and what to persist.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub events: Vec<Value>,
    /// The assistant's text: the `token` texts concatenated.
    pub text: String,
    /// Id of the assistant message, as `message_persisted` announces it.
    pub message_id: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_cents: f64,
    /// `toolCalls` of the assistant message.
    pub tool_calls: Value,
}

/// The most tokens one answer holds, so `[tokens=N]` cannot exhaust memory.
pub(crate) const MAX_TOKENS: usize = 10_000;

/// `[tokens=N]` (case-insensitive) asks for N tokens `w1 `, `w2 `, … (at most
/// [`MAX_TOKENS`]).
fn token_count(text: &str) -> Option<usize> {
    let lower = text.to_lowercase();
    let rest = &lower[lower.find("[tokens=")? + "[tokens=".len()..];
    let n: usize = rest[..rest.find(']')?].trim().parse().ok()?;
    Some(n.min(MAX_TOKENS))
}

/// The answer to `text` on `thread_id` by `agent_id` for the turn `turn_id`: `status
/// thinking`, `meta`, `thinking`, `status executing`, `tool_call`, `tool_result`, `status
/// generating`, N×`token` (the text quotes the message), `message_persisted`, `done {usage}`.
/// Every event carries `threadId`. Usage and cost follow the socket lane's formula.
pub(crate) fn answer(thread_id: &str, agent_id: &str, turn_id: &str, text: &str) -> Answer {
    let call_id = format!("call_{}", &new_id()[..8]);
    let params = json!({"query": text});
    let result = json!({"hits": 2, "top": "Platos quick start"});
    let chunks: Vec<String> = match token_count(text) {
        Some(n) => (1..=n).map(|i| format!("w{i} ")).collect(),
        None => format!("Here is what I found about \"{text}\".")
            .split_inclusive(' ')
            .map(str::to_string)
            .collect(),
    };
    let input = 40 + (text.len() as u64) / 4;
    let output = chunks.len() as u64 * 2 + 8;
    let cost = (input as f64) * 0.015 / 100.0 + (output as f64) * 0.06 / 100.0;
    let message_id = new_id();
    let run_id: String = turn_id.replace('-', "").chars().take(16).collect();
    let run_id = format!("run_{run_id}");

    let mut events = vec![
        json!({"type": "status", "status": "thinking", "agentId": agent_id}),
        json!({"type": "meta", "thread_id": thread_id, "agent_id": agent_id, "runId": run_id, "durable": false}),
        json!({"type": "thinking", "text": THINKING}),
        json!({"type": "status", "status": "executing", "agentId": agent_id}),
        json!({"type": "tool_call", "name": "lookup", "params": params, "callId": call_id}),
        json!({"type": "tool_result", "name": "lookup", "result": result, "callId": call_id,
               "display": {"kind": "card", "summary": "2 results"}}),
        json!({"type": "status", "status": "generating", "agentId": agent_id}),
    ];
    events.extend(chunks.iter().map(|c| json!({"type": "token", "text": c})));
    events.push(json!({"type": "message_persisted", "messageId": message_id, "costCents": cost,
                       "inputTokens": input, "outputTokens": output, "totalTokens": input + output}));
    events.push(json!({"type": "done", "usage": {
        "promptTokens": input, "completionTokens": output, "totalTokens": input + output,
        "cachedTokens": 0, "costCents": cost, "inputTokens": input, "outputTokens": output,
        "cacheCreationInputTokens": 0, "cacheReadInputTokens": 0, "reasoningTokens": 0}}));
    for e in &mut events {
        e["threadId"] = json!(thread_id);
    }
    Answer {
        events,
        text: chunks.concat(),
        message_id,
        input_tokens: input,
        output_tokens: output,
        cost_cents: cost,
        tool_calls: json!([{"name": "lookup", "params": params, "result": result, "error": null}]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_quotes_the_message_and_ends_with_persisted_then_done() {
        let a = answer("thr", "agent", "turn-0123456789abcdef", "hello there");
        let types: Vec<&str> = a.events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(types.first(), Some(&"status"));
        assert_eq!(&types[types.len() - 2..], ["message_persisted", "done"]);
        assert_eq!(a.text, "Here is what I found about \"hello there\".");
        let tokens: String = a
            .events
            .iter()
            .filter(|e| e["type"] == "token")
            .filter_map(|e| e["text"].as_str())
            .collect();
        assert_eq!(tokens, a.text);
        let persisted = &a.events[a.events.len() - 2];
        assert_eq!(persisted["messageId"], a.message_id.as_str());
        assert_eq!(persisted["costCents"], json!(a.cost_cents));
        assert!(a.events.iter().all(|e| e["threadId"] == "thr"));
    }

    #[test]
    fn tokens_marker_sets_the_token_count() {
        let a = answer("t", "a", "turn", "go [TOKENS=3] now");
        assert_eq!(a.text, "w1 w2 w3 ");
        assert_eq!(a.events.iter().filter(|e| e["type"] == "token").count(), 3);
        assert_eq!(token_count("[tokens=x]"), None);
        assert_eq!(token_count("[tokens=99999999999]"), Some(MAX_TOKENS));
    }
}
