//! Approval answers of one connection, in the order they were made.
//!
//! `approval_ack` and `approval_response_error` are socket-level events
//! without `threadId`: they are matched to the waiting answer by
//! `approvalId`, and a refusal without an id answers the oldest question
//! still open, so the book is a queue, not a map.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::client::PlatosClient;
use crate::decision::Decision;
use crate::error::{Error, Result};

/// One answer to send, and who waits for the server's acknowledgement.
pub(crate) struct Answer {
    pub(crate) approval_id: String,
    pub(crate) decision: Decision,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

/// Sends `decision` over REST (`approvals().resolve`): the HTTP lane's way,
/// and the socket lane's for a decision that edits arguments (the socket's
/// `approval_response` has no field for them).
pub(crate) async fn resolve_over_rest(
    client: &PlatosClient,
    approval_id: String,
    decision: &Decision,
) -> Result<()> {
    client
        .approvals()
        .resolve(approval_id, decision.clone())
        .send()
        .await
        .map(drop)
}

#[derive(Default)]
pub(crate) struct Approvals {
    /// Made while no connection was up; sent when one is.
    unsent: VecDeque<Answer>,
    /// Sent, waiting for the server's answer; oldest first.
    sent: VecDeque<(String, oneshot::Sender<Result<()>>)>,
}

impl Approvals {
    /// Keeps an answer until a connection is up.
    pub(crate) fn hold(&mut self, answer: Answer) {
        self.unsent.push_back(answer);
    }

    /// The answers held while disconnected, oldest first.
    pub(crate) fn take_unsent(&mut self) -> VecDeque<Answer> {
        std::mem::take(&mut self.unsent)
    }

    /// Remembers that `approval_id` was sent and `reply` waits for its answer.
    pub(crate) fn sent(&mut self, approval_id: String, reply: oneshot::Sender<Result<()>>) {
        self.sent.push_back((approval_id, reply));
    }

    /// The server answered `approval_id` (or, without an id, a refusal of
    /// the oldest open question).
    pub(crate) fn settle(&mut self, approval_id: Option<&str>, result: &Result<()>) {
        let answer = |reply: oneshot::Sender<Result<()>>| {
            let _ = reply.send(match result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::stream(e.code().map(str::to_owned), e.message())),
            });
        };
        match approval_id {
            Some(id) => {
                let (matching, rest) = std::mem::take(&mut self.sent)
                    .into_iter()
                    .partition::<VecDeque<_>, _>(|(sent, _)| sent == id);
                self.sent = rest;
                matching.into_iter().for_each(|(_, reply)| answer(reply));
            }
            None if result.is_err() => {
                if let Some((_, reply)) = self.sent.pop_front() {
                    answer(reply);
                }
            }
            None => {}
        }
    }

    /// The connection was lost: nobody will answer what was sent.
    pub(crate) fn connection_lost(&mut self) {
        for (_, reply) in self.sent.drain(..) {
            let _ = reply.send(Err(Error::network(
                "the connection was lost before the server acknowledged the approval; \
                 it may or may not have been received",
                None,
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(book: &mut Approvals, id: &str) -> oneshot::Receiver<Result<()>> {
        let (tx, rx) = oneshot::channel();
        book.sent(id.to_owned(), tx);
        rx
    }

    #[test]
    fn answers_match_by_id_and_an_anonymous_refusal_takes_the_oldest() {
        let mut book = Approvals::default();
        // Ids sort the other way round from their order: a map would pick "a".
        let mut z = waiter(&mut book, "z");
        let mut a = waiter(&mut book, "a");
        let mut a2 = waiter(&mut book, "a");
        book.settle(None, &Ok(()));
        assert!(z.try_recv().is_err(), "an ack without an id answers nobody");
        book.settle(None, &Err(Error::stream(Some("x".into()), "no")));
        assert_eq!(z.try_recv().unwrap().unwrap_err().code(), Some("x"));
        assert!(a.try_recv().is_err());
        book.settle(Some("a"), &Ok(()));
        assert!(a.try_recv().unwrap().is_ok());
        assert!(a2.try_recv().unwrap().is_ok());
    }

    #[test]
    fn a_lost_connection_fails_every_open_answer() {
        let mut book = Approvals::default();
        let mut a = waiter(&mut book, "a");
        book.connection_lost();
        assert!(matches!(a.try_recv().unwrap(), Err(Error::Network(_))));
        book.settle(Some("a"), &Ok(()));
    }
}
