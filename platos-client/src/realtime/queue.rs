//! The bounded hand-off between the socket task (writer) and the
//! [`TurnStream`](super::TurnStream) (reader).
//!
//! Why not a Tokio channel: a channel wakes the reader on every item, and a
//! reader that keeps up parks after every item, so a fast stream pays a
//! cross-thread wake-up per event (several times the cost of decoding it).
//! Here the writer adds items silently and wakes the reader once per burst
//! ([`Writer::flush`], called whenever the socket task is about to wait).
//! The queue also carries the stream's terminal error, delivered after the
//! last item, and tells each side when the other is gone.
//!
//! It is bounded in items and in bytes ([`Weigh`]). A writer refused for
//! room is told when the reader has taken it down to half of both bounds
//! (the `drain` signal), so the socket task can stop reading meanwhile
//! instead of ending the turn (docs/realtime.md §5).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use crate::error::Error;

/// What an item costs the queue's byte bound.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// The weight of `items`, and its bound.
    bytes: usize,
    max_bytes: usize,
    /// The writer was refused for room and waits for `drain`.
    writer_waiting: bool,
    drain: Option<Arc<Notify>>,
    /// The writer is done; `tail` (if any) follows the last item.
    finished: bool,
    tail: Option<Error>,
    reader_gone: bool,
    reader: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; recover rather than spread one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why an item was not queued.
pub(crate) enum Refused<T> {
    /// The queue holds `capacity` items; the item is handed back.
    Full(T),
    /// The reader was dropped.
    Gone,
}

/// The socket task's end.
pub(crate) struct Writer<T> {
    shared: Arc<Shared<T>>,
}

/// The stream's end.
pub(crate) struct Reader<T> {
    shared: Arc<Shared<T>>,
    /// Items taken from the queue in one lock, handed out one by one.
    taken: VecDeque<T>,
}

/// How many items the reader takes per lock: one lock per item would make
/// the two threads fight over the lock's cache line on every event.
const TAKE: usize = 32;

/// A queue holding at most `capacity` (at least 1) items weighing at most
/// `max_bytes` together (one item always fits in an empty queue).
pub(crate) fn queue<T: Weigh>(capacity: usize, max_bytes: usize) -> (Writer<T>, Reader<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
            max_bytes,
            writer_waiting: false,
            drain: None,
            finished: false,
            tail: None,
            reader_gone: false,
            reader: None,
        }),
    });
    (
        Writer {
            shared: shared.clone(),
        },
        Reader {
            shared,
            taken: VecDeque::new(),
        },
    )
}

impl<T: Weigh> Writer<T> {
    /// Queues `item` without waking the reader (see [`flush`](Self::flush)),
    /// unless the queue is now half full: a reader that is behind is woken
    /// before the queue overflows, not at the end of the writer's burst.
    /// Refused for room, the writer is signalled when the queue drained
    /// ([`on_drain`](Self::on_drain)).
    pub(crate) fn try_push(&self, item: T) -> Result<(), Refused<T>> {
        let weight = item.weight();
        let waker = {
            let mut state = self.shared.lock();
            if state.reader_gone {
                return Err(Refused::Gone);
            }
            if !state.items.is_empty()
                && (state.items.len() >= state.capacity
                    || state.bytes.saturating_add(weight) > state.max_bytes)
            {
                state.writer_waiting = true;
                return Err(Refused::Full(item));
            }
            state.items.push_back(item);
            state.bytes = state.bytes.saturating_add(weight);
            if state.items.len() * 2 >= state.capacity || state.bytes * 2 >= state.max_bytes {
                state.reader.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Wakes the reader if items wait for it. Call before the writer waits.
    pub(crate) fn flush(&self) {
        let waker = {
            let mut state = self.shared.lock();
            if state.items.is_empty() {
                return;
            }
            state.reader.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Queues `item` past the bounds: for the last few items of a turn
    /// that ends (what it held while full).
    pub(crate) fn force_push(&self, item: T) {
        let mut state = self.shared.lock();
        if !state.reader_gone {
            state.bytes = state.bytes.saturating_add(item.weight());
            state.items.push_back(item);
        }
    }

    /// Where to signal that the queue drained after a refusal.
    pub(crate) fn on_drain(&self, drain: Arc<Notify>) {
        self.shared.lock().drain = Some(drain);
    }

    /// Ends the queue; the reader gets `tail` after the last item, then the end.
    pub(crate) fn finish(self, tail: Option<Error>) {
        self.shared.lock().tail = tail;
        // Drop marks the end and wakes the reader.
    }
}

impl<T> Drop for Writer<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.finished = true;
            state.reader.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T: Weigh> Reader<T> {
    /// The next item, then the tail error (as `Err`), then `None`.
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>> {
        if let Some(item) = self.taken.pop_front() {
            return Poll::Ready(Some(Ok(item)));
        }
        let mut state = self.shared.lock();
        if !state.items.is_empty() {
            let n = state.items.len().min(TAKE);
            let mut taken_bytes = 0usize;
            for item in state.items.drain(..n) {
                taken_bytes = taken_bytes.saturating_add(item.weight());
                self.taken.push_back(item);
            }
            state.bytes = state.bytes.saturating_sub(taken_bytes);
            let drained = state.writer_waiting
                && state.items.len() * 2 <= state.capacity
                && state.bytes * 2 <= state.max_bytes;
            let drain = if drained {
                state.writer_waiting = false;
                state.drain.clone()
            } else {
                None
            };
            drop(state);
            if let Some(drain) = drain {
                drain.notify_one();
            }
            Poll::Ready(self.taken.pop_front().map(Ok))
        } else if state.finished {
            Poll::Ready(state.tail.take().map(Err))
        } else {
            state.reader = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Items waiting (for `Debug`).
    pub(crate) fn len(&self) -> usize {
        self.taken.len() + self.shared.lock().items.len()
    }
}

impl<T> Drop for Reader<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.reader_gone = true;
        state.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    use futures::task::noop_waker;

    impl Weigh for u8 {
        fn weight(&self) -> usize {
            usize::from(*self)
        }
    }

    impl Weigh for i32 {
        fn weight(&self) -> usize {
            1
        }
    }

    fn pop<T: Weigh>(reader: &mut Reader<T>) -> Poll<Option<Result<T, Error>>> {
        let waker = noop_waker();
        reader.poll_pop(&mut Context::from_waker(&waker))
    }

    #[test]
    fn bounded_in_order_then_tail_then_end() {
        let (writer, mut reader) = queue(2, 100);
        assert!(writer.try_push(1).is_ok());
        assert!(writer.try_push(2).is_ok());
        assert!(matches!(writer.try_push(3), Err(Refused::Full(3))));
        assert!(matches!(pop(&mut reader), Poll::Ready(Some(Ok(1)))));
        assert!(writer.try_push(3).is_ok());
        writer.finish(Some(Error::stream(Some("x".into()), "end")));
        assert!(matches!(pop(&mut reader), Poll::Ready(Some(Ok(2)))));
        assert!(matches!(pop(&mut reader), Poll::Ready(Some(Ok(3)))));
        match pop(&mut reader) {
            Poll::Ready(Some(Err(e))) => assert_eq!(e.code(), Some("x")),
            _ => panic!("no tail"),
        }
        assert!(matches!(pop(&mut reader), Poll::Ready(None)));
    }

    #[test]
    fn an_empty_unfinished_queue_is_pending_and_a_dropped_writer_ends_it() {
        let (writer, mut reader) = queue::<u8>(4, 100);
        assert!(pop(&mut reader).is_pending());
        drop(writer);
        assert!(matches!(pop(&mut reader), Poll::Ready(None)));
    }

    #[test]
    fn the_writer_learns_of_a_dropped_reader() {
        let (writer, reader) = queue(1, 100);
        assert!(writer.try_push(1).is_ok());
        drop(reader);
        assert!(matches!(writer.try_push(2), Err(Refused::Gone)));
    }

    #[test]
    fn bytes_bound_the_queue_and_a_drain_to_half_is_signalled() {
        let drain = Arc::new(Notify::new());
        let (writer, mut reader) = queue::<u8>(100, 10);
        writer.on_drain(drain.clone());
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut signalled = || {
            let notified = drain.notified();
            futures::pin_mut!(notified);
            notified.as_mut().poll(&mut cx).is_ready()
        };
        // One item always fits, however heavy.
        assert!(writer.try_push(40).is_ok());
        assert!(matches!(writer.try_push(1), Err(Refused::Full(1))));
        assert!(!signalled());
        assert!(matches!(pop(&mut reader), Poll::Ready(Some(Ok(40)))));
        assert!(signalled());
        for _ in 0..5 {
            assert!(writer.try_push(2).is_ok());
        }
        // 12 bytes > 10: refused, and the writer now waits.
        let full = writer.try_push(2);
        assert!(
            matches!(full, Err(Refused::Full(2))),
            "12 bytes would exceed 10"
        );
        assert!(!signalled());
        // The reader takes everything queued in one lock: 0 bytes left.
        assert!(matches!(pop(&mut reader), Poll::Ready(Some(Ok(2)))));
        assert!(signalled());
        // Past the bounds on purpose: a turn's last items.
        for _ in 0..20 {
            writer.force_push(9);
        }
        assert_eq!(reader.len(), 24);
    }
}
