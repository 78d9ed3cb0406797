//! A simulated gateway restart mid-turn: the socket side goes away and comes
//! back, and the turns it was running either die with it (a direct-mode turn
//! dies with its process) or keep pumping to their thread's room (durable).
//!
//! Each restart starts a new epoch. A turn remembers the epoch it started in
//! and looks, right before each event, whether a restart came since; a dead
//! turn then persists what the restart says and goes quiet, with no `done`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

use super::{Faults, lock};

/// What a restart does to the turns that were running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restart {
    /// The turns keep running and pump to their thread's room once a client
    /// re-joins it (a durable lane).
    Durable,
    /// The turns die: nothing more is persisted.
    Forget,
    /// The turns die, their answer persisted in the thread first.
    PersistAnswer,
    /// The turns die, a failure recorded on the thread (an assistant message
    /// whose `responseJson.error` is `{message, code:"aborted"}`).
    PersistFailure,
}

/// The restarts so far and the turns running per epoch.
#[derive(Default)]
pub(crate) struct Restarts {
    /// Restart k ends epoch k: its kind and how many `join_thread` events
    /// were recorded before it (a durable turn resumes after a newer one).
    done: Vec<(Restart, usize)>,
}

/// A running turn's place in its epoch; leaving it (drop) counts it out.
pub(crate) struct TurnSlot {
    faults: Faults,
    pub(crate) epoch: u64,
}

impl Drop for TurnSlot {
    fn drop(&mut self) {
        let epoch = self.epoch;
        self.faults.inner.running.send_modify(|m| {
            if let Some(n) = m.get_mut(&epoch) {
                *n = n.saturating_sub(1);
            }
        });
        self.faults.inner.recorder.touch();
    }
}

/// How long a restart waits for its dying turns to reach their next event
/// (a turn blocked on an approval or `[hang]` does not).
const HALT_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn running() -> watch::Sender<BTreeMap<u64, usize>> {
    watch::Sender::new(BTreeMap::new())
}

impl Faults {
    /// Restarts the realtime side as a deploy does: with [`Restart::Durable`]
    /// the sockets are dropped and the turns go on; otherwise the running
    /// turns die first (at their next event, persisting what `restart` says,
    /// awaited here) and then every socket is dropped, so a client that
    /// reconnects finds the thread as the new process would. Returns how
    /// many connections were dropped.
    pub async fn restart_realtime(&self, restart: Restart) -> usize {
        let joins = self.inner.recorder.socket_events_named("join_thread").len();
        let ended = {
            let mut restarts = lock(&self.inner.restarts);
            restarts.done.push((restart, joins));
            restarts.done.len() as u64
        };
        // Wakes turns held by `[hang]`.
        self.inner.epochs.send_replace(ended);
        self.inner
            .recorder
            .fault_fired(format!("realtime restart ({restart:?})"));
        if restart != Restart::Durable {
            let mut rx = self.inner.running.subscribe();
            let halted = rx.wait_for(|m| m.range(..ended).all(|(_, n)| *n == 0));
            let _ = tokio::time::timeout(HALT_WAIT, halted).await;
        }
        self.drop_sockets_now()
    }

    /// A turn starts in the current epoch.
    pub(crate) fn turn_slot(&self) -> TurnSlot {
        let epoch = lock(&self.inner.restarts).done.len() as u64;
        self.inner
            .running
            .send_modify(|m| *m.entry(epoch).or_default() += 1);
        TurnSlot {
            faults: self.clone(),
            epoch,
        }
    }

    /// The current epoch, watched: it moves at each restart.
    pub(crate) fn epochs(&self) -> watch::Receiver<u64> {
        self.inner.epochs.subscribe()
    }

    /// The first restart since `epoch`, if any, and the `join_thread`
    /// count before it; the epoch to resume in.
    pub(crate) fn restarted_since(&self, epoch: u64) -> Option<(Restart, usize, u64)> {
        let restarts = lock(&self.inner.restarts);
        let index = usize::try_from(epoch).ok()?;
        restarts
            .done
            .get(index)
            .map(|&(r, joins)| (r, joins, restarts.done.len() as u64))
    }
}
