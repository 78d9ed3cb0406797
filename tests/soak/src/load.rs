//! The client side of the soak: workers that run turns and REST calls until
//! told to stop, checking every turn and call, and the counters they share.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use platos_client::{Error, PlatosClient, SendOptions, Transport};
use platos_events::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::check;

/// A turn that has not ended by then is a violation (a stream must end:
/// the lost-turn check runs 5 s after a reconnect, REST retries are bounded).
pub const TURN_DEADLINE: Duration = Duration::from_secs(120);
/// The same for one REST call, retries included.
pub const CALL_DEADLINE: Duration = Duration::from_secs(90);
/// How long a stalled consumer stops reading.
const STALL: Duration = Duration::from_secs(3);

/// Counters and violations shared by the workers.
#[derive(Debug, Default)]
pub struct Stats {
    pub counts: BTreeMap<String, u64>,
    pub violations: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<Stats>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn add(&self, key: impl Into<String>, n: u64) {
        *self.lock().counts.entry(key.into()).or_default() += n;
    }
    pub fn violation(&self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.lock().violations.push(what);
    }
    pub fn take(&self) -> Stats {
        std::mem::take(&mut *self.lock())
    }
}

/// Creates a thread, retrying through faults; `None` once stopped.
async fn new_thread(
    client: &PlatosClient,
    agent: &str,
    stats: &Shared,
    stop: &watch::Receiver<bool>,
) -> Option<String> {
    while !*stop.borrow() {
        let created = client.threads().create(agent).title("soak").send();
        if let Some(thread) = call(stats, "create", created).await {
            return Some(thread.id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Runs turns on threads of its own until `stop`.
pub async fn turn_worker(
    id: usize,
    client: PlatosClient,
    agent: String,
    stats: Shared,
    stop: watch::Receiver<bool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while let Some(thread) = new_thread(&client, &agent, &stats, &stop).await {
        for _ in 0..rng.random_range(1..=4) {
            if *stop.borrow() {
                break;
            }
            n += 1;
            let stalled = rng.random_bool(0.05);
            let tokens: usize = if stalled {
                rng.random_range(400..800)
            } else {
                rng.random_range(10..150)
            };
            let approval = rng.random_bool(0.1);
            let http = rng.random_bool(0.2);
            let text = format!(
                "soak {id}.{n} [tokens={tokens}]{}",
                if approval { " (needs approval)" } else { "" }
            );
            let lane = if http {
                Transport::Http
            } else {
                Transport::WebSocket
            };
            let stream =
                client
                    .threads()
                    .send_with(&thread, &text, SendOptions::new().transport(lane));
            let lane = if http { "http" } else { "ws" };
            let items = std::sync::Arc::new(Mutex::new(Vec::new()));
            let read = read_turn(stream, &client, &stats, stalled, items.clone());
            if tokio::time::timeout(TURN_DEADLINE, read).await.is_err() {
                let items = items.lock().unwrap_or_else(|e| e.into_inner());
                stats.violation(format!(
                    "turn {text:?} ({lane}) did not end within {} s; last items: {:?}",
                    TURN_DEADLINE.as_secs(),
                    items
                        .iter()
                        .rev()
                        .take(5)
                        .map(check::describe)
                        .collect::<Vec<_>>()
                ));
                break;
            }
            let items = std::mem::take(&mut *items.lock().unwrap_or_else(|e| e.into_inner()));
            match check::turn(&items, &thread, tokens) {
                Ok(t) => {
                    // A turn that ended early may still run server-side, and the
                    // gateway tags events with the thread only: its remaining
                    // events would reach the next turn on this thread
                    // (docs/realtime.md §6.3). A careful caller moves on.
                    let early = matches!(t.end, check::End::Error(_));
                    let end = match &t.end {
                        check::End::Complete => "complete".to_owned(),
                        check::End::DoneAfterGap => "done_after_gap".to_owned(),
                        check::End::Recovered => "recovered".to_owned(),
                        check::End::Error(code) => format!("error.{code}"),
                    };
                    stats.add(format!("turn.{lane}.{end}"), 1);
                    if stalled {
                        stats.add(format!("turn.stalled.{end}"), 1);
                    }
                    stats.add("turn.tokens", t.tokens as u64);
                    stats.add("turn.gaps", t.gaps as u64);
                    stats.add("turn.reconnects", t.reconnects as u64);
                    stats.add("turn.decode_errors", t.decode_errors as u64);
                    if early {
                        break;
                    }
                }
                Err(v) => {
                    stats.violation(format!("turn {text:?} ({lane}): {v}"));
                    break;
                }
            }
        }
        call(&stats, "delete", client.threads().delete(&thread).send()).await;
    }
}

/// Reads a turn to its end into `items`, answering approvals over REST; a
/// stalled consumer stops reading for [`STALL`] after its first token.
async fn read_turn(
    mut stream: platos_client::TurnStream,
    client: &PlatosClient,
    stats: &Shared,
    mut stalled: bool,
    items: Arc<Mutex<Vec<Result<Event, Error>>>>,
) {
    while let Some(item) = stream.next().await {
        match &item {
            Ok(Event::ApprovalNeeded(a)) => {
                let (client, stats, id) = (client.clone(), stats.clone(), a.approval_id.clone());
                tokio::spawn(async move { approve(&client, &stats, &id).await });
            }
            Ok(Event::Token(_)) if stalled => {
                stalled = false;
                tokio::time::sleep(STALL).await;
            }
            _ => {}
        }
        items.lock().unwrap_or_else(|e| e.into_inner()).push(item);
    }
}

/// Approves over REST, retrying through faults (a lost answer would leave the
/// server's turn waiting, which the soak would report as a turn that never ends).
async fn approve(client: &PlatosClient, stats: &Shared, id: &str) {
    for _ in 0..20 {
        match client
            .approvals()
            .resolve(id, platos_client::Decision::approve())
            .await
        {
            Ok(_) => {
                stats.add("approval.ok", 1);
                return;
            }
            Err(e) if e.status() == Some(409) => return,
            Err(e) => stats.add(format!("approval.err.{}", check::error_code(&e)), 1),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs REST calls on a thread of its own until `stop`; every call must end
/// in time, and what it answers must be what was asked.
pub async fn rest_worker(
    client: PlatosClient,
    agent: String,
    stats: Shared,
    stop: watch::Receiver<bool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(thread) = new_thread(&client, &agent, &stats, &stop).await else {
        return;
    };
    while !*stop.borrow() {
        match rng.random_range(0..4) {
            0 => drop(call(&stats, "list_threads", client.threads().list().send()).await),
            1 => {
                let got = call(&stats, "get_thread", client.threads().get(&thread).send()).await;
                if let Some(other) = got.filter(|t| t.as_ref().is_none_or(|t| t.id != thread)) {
                    stats.violation(format!("get({thread}) answered {other:?}"));
                }
            }
            2 => drop(
                call(
                    &stats,
                    "messages",
                    client.threads().messages(&thread).send(),
                )
                .await,
            ),
            _ => drop(call(&stats, "get_agent", client.agents().get(&agent).send()).await),
        }
        // A caller between two calls, not a loop hammering the server.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One REST call within [`CALL_DEADLINE`], counted as `rest.<name>.ok` or
/// `rest.<name>.err.<code>`; one that does not end in time is a violation.
async fn call<T>(
    stats: &Shared,
    name: &str,
    f: impl std::future::Future<Output = platos_client::Result<T>>,
) -> Option<T> {
    match tokio::time::timeout(CALL_DEADLINE, f).await {
        Ok(Ok(value)) => {
            stats.add(format!("rest.{name}.ok"), 1);
            Some(value)
        }
        Ok(Err(e)) => {
            stats.add(format!("rest.{name}.err.{}", check::error_code(&e)), 1);
            None
        }
        Err(_) => {
            stats.violation(format!(
                "REST {name} did not end within {} s",
                CALL_DEADLINE.as_secs()
            ));
            None
        }
    }
}
