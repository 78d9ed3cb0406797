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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::Error;

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
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

/// A queue holding at most `capacity` (at least 1) items.
pub(crate) fn queue<T>(capacity: usize) -> (Writer<T>, Reader<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
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

impl<T> Writer<T> {
    /// Queues `item` without waking the reader (see [`flush`](Self::flush)),
    /// unless the queue is now half full: a reader that is behind is woken
    /// before the queue overflows, not at the end of the writer's burst.
    pub(crate) fn try_push(&self, item: T) -> Result<(), Refused<T>> {
        let waker = {
            let mut state = self.shared.lock();
            if state.reader_gone {
                return Err(Refused::Gone);
            }
            if state.items.len() >= state.capacity {
                return Err(Refused::Full(item));
            }
            state.items.push_back(item);
            if state.items.len() * 2 >= state.capacity {
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

    pub(crate) fn capacity(&self) -> usize {
        self.shared.lock().capacity
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

impl<T> Reader<T> {
    /// The next item, then the tail error (as `Err`), then `None`.
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>> {
        if let Some(item) = self.taken.pop_front() {
            return Poll::Ready(Some(Ok(item)));
        }
        let mut state = self.shared.lock();
        if !state.items.is_empty() {
            let n = state.items.len().min(TAKE);
            self.taken.extend(state.items.drain(..n));
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
    use futures::task::noop_waker;

    fn pop<T>(reader: &mut Reader<T>) -> Poll<Option<Result<T, Error>>> {
        let waker = noop_waker();
        reader.poll_pop(&mut Context::from_waker(&waker))
    }

    #[test]
    fn bounded_in_order_then_tail_then_end() {
        let (writer, mut reader) = queue(2);
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
        let (writer, mut reader) = queue::<u8>(4);
        assert!(pop(&mut reader).is_pending());
        drop(writer);
        assert!(matches!(pop(&mut reader), Poll::Ready(None)));
    }

    #[test]
    fn the_writer_learns_of_a_dropped_reader() {
        let (writer, reader) = queue(1);
        assert!(writer.try_push(1).is_ok());
        drop(reader);
        assert!(matches!(writer.try_push(2), Err(Refused::Gone)));
    }
}
