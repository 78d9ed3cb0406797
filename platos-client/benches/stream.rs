//! Throughput of `threads.send`: events per second decoded through
//! `TurnStream`, against raw tokio-tungstenite readers of the same local
//! server in the same run.
//!
//! ```text
//! cargo bench -p platos-client --bench stream            # 1 000 000 events per run
//! STREAM_BENCH_EVENTS=200000 cargo bench -p platos-client --bench stream
//! ```
//!
//! The server speaks just enough Engine.IO/Socket.IO to start a turn, then
//! writes every `agent_event` frame from one pre-encoded buffer straight to
//! the TCP socket, so it costs next to nothing and the numbers measure the
//! client. Three readers, each timed from the first event to `done`:
//!
//! - `raw frames`: tokio-tungstenite, counting text frames (no decoding);
//! - `raw + JSON`: the same, plus `serde_json` of each Socket.IO payload
//!   into a `Value` (what any Socket.IO client must at least do);
//! - `raw + Event`: the same, decoding each event into the same typed
//!   `platos_events::Event` the SDK yields, on the reading thread: the
//!   like-for-like baseline;
//! - `TurnStream`: the SDK: Engine.IO + Socket.IO framing, typed
//!   `platos_events::Event` decoding, the channel to the consumer.
//!
//! Each reader runs `ROUNDS` times, interleaved; the best run counts.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use platos_client::PlatosClient;
use platos_events::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const ROUNDS: usize = 3;
const DEFAULT_EVENTS: usize = 1_000_000;
const TOKEN_FRAME: &str =
    r#"42/agent,["agent_event",{"type":"token","text":"Hello, world. ","threadId":"th_bench"}]"#;
const DONE_FRAME: &str = r#"42/agent,["agent_event",{"type":"done","threadId":"th_bench"}]"#;

fn main() {
    let events = std::env::var("STREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EVENTS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(events));
}

async fn run(events: usize) {
    let blob = std::sync::Arc::new(encode_blast(events));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, blob.clone()));
        }
    });
    let base_url = format!("http://{addr}");
    let ws_url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let client = PlatosClient::builder()
        .base_url(&base_url)
        .session_token("bench")
        .build()
        .expect("client");

    println!("stream bench: {events} token events per run, best of {ROUNDS}");
    let mut raw = Duration::MAX;
    let mut json = Duration::MAX;
    let mut typed = Duration::MAX;
    let mut sdk = Duration::MAX;
    for _ in 0..ROUNDS {
        raw = raw.min(raw_reader(&ws_url, events, Decode::Nothing).await);
        json = json.min(raw_reader(&ws_url, events, Decode::Json).await);
        typed = typed.min(raw_reader(&ws_url, events, Decode::Event).await);
        sdk = sdk.min(turn_stream(&client, events).await);
    }
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!("  raw frames  : {:>12.0} events/s", rate(raw));
    println!("  raw + JSON  : {:>12.0} events/s", rate(json));
    println!("  raw + Event : {:>12.0} events/s", rate(typed));
    println!("  TurnStream  : {:>12.0} events/s", rate(sdk));
    println!(
        "  TurnStream / raw + Event = {:.2}   / raw + JSON = {:.2}   / raw frames = {:.2}",
        rate(sdk) / rate(typed),
        rate(sdk) / rate(json),
        rate(sdk) / rate(raw)
    );
}

/// Every token frame plus `done`, as unmasked server WebSocket frames.
fn encode_blast(events: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity((TOKEN_FRAME.len() + 4) * (events + 1));
    for _ in 0..events {
        push_frame(&mut out, TOKEN_FRAME.as_bytes());
    }
    push_frame(&mut out, DONE_FRAME.as_bytes());
    out
}

fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81); // FIN + text
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n < 65_536 => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Engine.IO open, namespace ack, `connected`; on `message` the blast.
async fn serve(tcp: TcpStream, blob: std::sync::Arc<Vec<u8>>) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let open = r#"0{"sid":"b","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    if ws.send(Message::text(open)).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if text.starts_with("40/agent,") {
            let _ = ws.send(Message::text(r#"40/agent,{"sid":"n"}"#)).await;
            let _ = ws
                .send(Message::text(r#"42/agent,["connected",{"status":"ok"}]"#))
                .await;
        } else if text.starts_with(r#"42/agent,["message""#) {
            let _ = ws.flush().await;
            let tcp = ws.get_mut();
            if tcp.write_all(&blob).await.is_err() {
                return;
            }
            // Wait for the client to leave.
            let mut sink = [0u8; 4096];
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
    }
}

/// How much a raw reader decodes.
#[derive(Clone, Copy, PartialEq)]
enum Decode {
    Nothing,
    Json,
    Event,
}

/// A hand-rolled Socket.IO client on tokio-tungstenite.
async fn raw_reader(url: &str, events: usize, decode: Decode) -> Duration {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut started = None;
    let mut seen = 0usize;
    let mut checksum = 0usize;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if text.starts_with('0') {
            ws.send(Message::text(r#"40/agent,{"token":"bench"}"#))
                .await
                .expect("send");
        } else if text.starts_with(r#"42/agent,["connected""#) {
            ws.send(Message::text(
                r#"42/agent,["message",{"message":"go","threadId":"th_bench"}]"#,
            ))
            .await
            .expect("send");
        } else if let Some(body) = text.strip_prefix("42/agent,") {
            if started.is_none() {
                started = Some(Instant::now());
            }
            match decode {
                Decode::Nothing => {}
                Decode::Json => {
                    let value: serde_json::Value = serde_json::from_str(body).expect("json");
                    checksum += value.as_array().map_or(0, Vec::len);
                }
                Decode::Event => {
                    let (_, event): (String, serde_json::Value) =
                        serde_json::from_str(body).expect("json");
                    let event = Event::from_value(event).expect("event");
                    checksum += event.kind().len();
                }
            }
            if body.contains(r#""type":"done""#) {
                break;
            }
            seen += 1;
        }
    }
    let elapsed = started.expect("no events").elapsed();
    assert_eq!(seen, events);
    std::hint::black_box(checksum);
    let _ = ws.close(None).await;
    elapsed
}

/// The SDK: every event decoded into `platos_events::Event`.
async fn turn_stream(client: &PlatosClient, events: usize) -> Duration {
    let mut stream = client.threads().send("th_bench", "go");
    let mut started = None;
    let mut tokens = 0usize;
    while let Some(item) = stream.next().await {
        match item.expect("stream error") {
            Event::Token(token) => {
                if started.is_none() {
                    started = Some(Instant::now());
                }
                tokens += token.text.len().min(1);
            }
            Event::Done(_) => break,
            _ => {}
        }
    }
    let elapsed = started.expect("no events").elapsed();
    assert_eq!(tokens, events);
    elapsed
}
