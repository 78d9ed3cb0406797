//! [`Decision`]: the answer to a human-in-the-loop approval, one type for
//! every lane that carries it (REST `approvals().resolve`, the socket's
//! `approval_response`, the HTTP lane's REST fallback).
//!
//! The wire forms (docs/wire.md §3.4, §4.3): REST reads
//! `{approved, comment?, editedArgs?}`; the socket reads
//! `{approvalId, approved, comment?}` and has no field for edited
//! arguments, so a decision that edits arguments goes over REST.

use serde_json::{Map, Value};

use crate::JsonObject;

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Let the action run (with edited arguments, if the decision has them).
    Approve,
    /// Refuse the action.
    Reject,
}

/// The answer to an approval: a verdict, an optional comment, and for an
/// approval optionally the arguments the action should run with instead.
///
/// ```
/// use platos_client::Decision;
///
/// let yes = Decision::approve().with_comment("looks right");
/// let no = Decision::reject().with_comment("wrong account");
/// assert!(yes.is_approved() && !no.is_approved());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Decision {
    verdict: Verdict,
    comment: Option<String>,
    edited_args: Option<JsonObject>,
}

impl Decision {
    /// Approves the action as requested.
    pub fn approve() -> Self {
        Decision::new(Verdict::Approve)
    }

    /// Rejects the action.
    pub fn reject() -> Self {
        Decision::new(Verdict::Reject)
    }

    /// A decision with this verdict and nothing else.
    pub fn new(verdict: Verdict) -> Self {
        Decision {
            verdict,
            comment: None,
            edited_args: None,
        }
    }

    /// Adds a comment the server records with the decision.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// The arguments the approved action runs with instead of the requested
    /// ones (`editedArgs`; REST only, see the module docs).
    pub fn with_edited_args(mut self, args: JsonObject) -> Self {
        self.edited_args = Some(args);
        self
    }

    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Whether this decision approves.
    pub fn is_approved(&self) -> bool {
        self.verdict == Verdict::Approve
    }

    /// The comment, if any.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The edited arguments, if any.
    pub fn edited_args(&self) -> Option<&JsonObject> {
        self.edited_args.as_ref()
    }

    /// The socket payload: `{approvalId, approved, comment?}`; `None` when
    /// the decision edits arguments, which the socket cannot carry.
    #[cfg(any(test, feature = "realtime"))]
    pub(crate) fn socket_payload(&self, approval_id: &str) -> Option<Value> {
        if self.edited_args.is_some() {
            return None;
        }
        let mut body = Map::new();
        body.insert("approvalId".into(), Value::String(approval_id.to_owned()));
        body.insert("approved".into(), Value::Bool(self.is_approved()));
        if let Some(comment) = &self.comment {
            body.insert("comment".into(), Value::String(comment.clone()));
        }
        Some(Value::Object(body))
    }
}

/// The REST body of `approvals().resolve`: `{approved, comment?, editedArgs?}`.
impl crate::request::RestBody for Decision {
    fn rest_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("approved".into(), Value::Bool(self.is_approved()));
        if let Some(comment) = &self.comment {
            body.insert("comment".into(), Value::String(comment.clone()));
        }
        if let Some(args) = &self.edited_args {
            body.insert("editedArgs".into(), Value::Object(args.clone()));
        }
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::RestBody;

    #[test]
    fn wire_forms() {
        let d = Decision::reject().with_comment("no");
        assert_eq!(d.rest_body(), json!({"approved": false, "comment": "no"}));
        assert_eq!(
            d.socket_payload("a1"),
            Some(json!({"approvalId": "a1", "approved": false, "comment": "no"}))
        );
        let mut args = JsonObject::new();
        args.insert("amount".into(), json!(5));
        let edited = Decision::approve().with_edited_args(args);
        assert_eq!(
            edited.rest_body(),
            json!({"approved": true, "editedArgs": {"amount": 5}})
        );
        assert_eq!(edited.socket_payload("a1"), None);
    }
}
