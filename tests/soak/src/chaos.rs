//! The server side of the soak: the test server in this (child) process and
//! the fault injector that keeps hitting it with random faults from its knobs.
//!
//! The child prints one JSON line with what the client needs, then one line
//! per fault it fires, and exits when its stdin closes (the parent is done).

use std::time::Duration;

use platos_test_server::{
    HandshakeStep, RawFrame, RestFault, SEED_AGENT_SUPPORT, SocketRefusal, TestServer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

/// The client's largest accepted message is 16 MiB: one byte more.
const OVERSIZE: usize = (16 << 20) + 1;

/// One fault the injector can fire.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Close every WebSocket connection without a close frame.
    DropSockets,
    /// Every WebSocket connection stops carrying anything; TCP stays open.
    SilenceSockets,
    /// Drop the connection that writes the `n`th next `agent_event`.
    DropAfterEvents(u64),
    /// Drop the next connection at a step of its handshake.
    DropAtHandshake(HandshakeStep),
    /// Answer the next Engine.IO handshakes 503.
    FailHandshakes(u64),
    /// A frame no Engine.IO peer would send, between the server's own.
    Garbage(RawFrame),
    /// A frame larger than the client accepts.
    Oversize,
    /// The next REST calls answer this 5xx.
    ServerErrors { status: u16, calls: u32 },
    /// The next REST calls answer 429 with `Retry-After: 1`.
    RateLimited { calls: u32 },
    /// The gateway says the session expired and disconnects every socket.
    SessionExpired,
    /// The next `message` is refused with the gateway's rate limit.
    RefuseMessage,
    /// REST answers come this much later, for a while.
    SlowRest(Duration),
    /// Agent events come this far apart, for a while.
    SlowEvents(Duration),
}

impl Fault {
    /// A random fault; the weights favour what real networks do most.
    pub fn pick(rng: &mut impl Rng) -> Fault {
        match rng.random_range(0..100) {
            0..12 => Fault::DropSockets,
            12..18 => Fault::SilenceSockets,
            18..28 => Fault::DropAfterEvents(rng.random_range(1..40)),
            28..40 => Fault::DropAtHandshake(
                [
                    HandshakeStep::Upgrade,
                    HandshakeStep::Open,
                    HandshakeStep::NamespaceAck,
                    HandshakeStep::Connected,
                ][rng.random_range(0..4)],
            ),
            40..46 => Fault::FailHandshakes(rng.random_range(1..3)),
            46..52 => Fault::Garbage(
                [
                    RawFrame::Text(b"\xff\xfe not engine.io".to_vec()),
                    RawFrame::Text(br#"42/agent,["agent_event",{"type":"token","text""#.to_vec()),
                    RawFrame::Text(b"4".to_vec()),
                    RawFrame::Binary(vec![0, 1, 2, 3]),
                ][rng.random_range(0..4)]
                .clone(),
            ),
            52..55 => Fault::Oversize,
            55..68 => Fault::ServerErrors {
                status: [500, 502, 503][rng.random_range(0..3)],
                calls: rng.random_range(1..5),
            },
            68..76 => Fault::RateLimited {
                calls: rng.random_range(1..3),
            },
            76..82 => Fault::SessionExpired,
            82..87 => Fault::RefuseMessage,
            87..94 => Fault::SlowRest(Duration::from_millis(rng.random_range(200..1500))),
            _ => Fault::SlowEvents(Duration::from_millis(rng.random_range(20..80))),
        }
    }

    /// A short name for the report.
    pub fn name(&self) -> String {
        match self {
            Fault::DropSockets => "drop_sockets".into(),
            Fault::SilenceSockets => "silence_sockets".into(),
            Fault::DropAfterEvents(_) => "drop_after_events".into(),
            Fault::DropAtHandshake(s) => format!("drop_at_{s:?}").to_lowercase(),
            Fault::FailHandshakes(_) => "handshake_503".into(),
            Fault::Garbage(_) => "garbage_frame".into(),
            Fault::Oversize => "oversize_frame".into(),
            Fault::ServerErrors { status, .. } => format!("rest_{status}"),
            Fault::RateLimited { .. } => "rest_429".into(),
            Fault::SessionExpired => "session_expired".into(),
            Fault::RefuseMessage => "message_rate_limited".into(),
            Fault::SlowRest(_) => "slow_rest".into(),
            Fault::SlowEvents(_) => "slow_events".into(),
        }
    }
}

/// How long a slow spell lasts.
const SLOW_SPELL: Duration = Duration::from_secs(3);
/// Pause between scripted events outside slow spells.
const EVENT_DELAY: Duration = Duration::from_millis(2);

/// Fires `fault` on `server`; slow spells end on their own.
async fn fire(server: &TestServer, fault: &Fault) {
    let f = server.faults();
    match fault {
        Fault::DropSockets => {
            f.drop_sockets_now();
        }
        Fault::SilenceSockets => {
            f.silence_sockets_now();
        }
        Fault::DropAfterEvents(n) => f.drop_socket_after_events(*n),
        Fault::DropAtHandshake(step) => f.drop_next_handshake_at(*step),
        Fault::FailHandshakes(n) => f.fail_next_handshakes(*n),
        Fault::Garbage(frame) => {
            f.inject_frame(frame);
        }
        Fault::Oversize => {
            f.inject_frame(&RawFrame::Oversize(OVERSIZE));
        }
        Fault::ServerErrors { status, calls } => {
            let body = json!({"statusCode": status, "message": "soak", "error": "Server Error"});
            f.fail_next_rest(RestFault::new(*status, body).times(*calls));
        }
        Fault::RateLimited { calls } => f.fail_next_rest(RestFault::rate_limited(1).times(*calls)),
        Fault::SessionExpired => {
            f.send_socket_error(
                json!({"code": "SESSION_EXPIRED", "message": "Session expired"}),
                true,
            )
            .await;
        }
        Fault::RefuseMessage => f.refuse_next_message(SocketRefusal::rate_limit(1)),
        Fault::SlowRest(d) => {
            f.set_rest_delay(*d);
            let f = f.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SLOW_SPELL).await;
                f.set_rest_delay(Duration::ZERO);
            });
        }
        Fault::SlowEvents(d) => {
            f.set_event_delay(*d);
            let f = f.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SLOW_SPELL).await;
                f.set_event_delay(EVENT_DELAY);
            });
        }
    }
}

/// Runs the server and the injector until stdin closes.
pub async fn serve(seed: u64, every: Duration) -> anyhow::Result<()> {
    let server = TestServer::builder()
        .port(0)
        .ping_interval(Duration::from_millis(500))
        .ping_timeout(Duration::from_millis(1000))
        .event_delay(EVENT_DELAY)
        .expire_sessions(true)
        .start()
        .await?;
    let scope = server.scope();
    println!(
        "{}",
        json!({
            "base_url": server.base_url(),
            "secret": server.secret(),
            "entity_id": server.entity_id(),
            "user_id": server.user_id(),
            "organization_id": scope.organization_id,
            "project_id": scope.project_id,
            "environment_id": scope.environment_id,
            "agent_id": SEED_AGENT_SUPPORT,
        })
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let pause = every.mul_f64(rng.random_range(0.5..1.5));
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(_)) => continue,
                _ => break,
            },
            _ = tokio::time::sleep(pause) => {}
        }
        let fault = Fault::pick(&mut rng);
        fire(&server, &fault).await;
        // What the server saw is kept for tests to read; a soak only grows it.
        server.recorder().clear();
        println!("{}", json!({"fault": fault.name()}));
    }
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_can_be_picked() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..5_000 {
            names.insert(Fault::pick(&mut rng).name());
        }
        // 13 kinds, the handshake drop at 4 steps and 5xx at 3 statuses.
        assert_eq!(names.len(), 13 + 3 + 2, "{names:?}");
    }
}
