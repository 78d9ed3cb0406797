//! The backend relays an upload without holding it: a 100 MiB body goes
//! browser → `/api/upload` → the SDK → storage while the process's resident
//! memory stays flat. Alone in its binary so no other test's allocations
//! move the figure. Prints the figure it measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::Bytes;
use platos_test_server::TestServer;
use serde_json::Value;

const SIZE: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("rss pages");
    pages * 4096
}

/// `len` bytes as a stream of 64 KiB chunks of one shared buffer: the
/// sender holds no more than the relay should.
fn body(len: u64) -> reqwest::Body {
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let chunks = (0..len.div_ceil(CHUNK as u64)).map(move |i| {
        let left = len - i * CHUNK as u64;
        Ok::<_, std::io::Error>(chunk.slice(..(left.min(CHUNK as u64) as usize)))
    });
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_upload_is_relayed_with_flat_memory() {
    let server = TestServer::start().await.unwrap();
    server.set_max_attachment_bytes(SIZE);
    let app = platos_chat_web::router(&platos_chat_web::embedded_settings(&server)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let thread: Value = http
        .post(format!("{base}/api/thread"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let thread = thread["threadId"].as_str().expect("threadId").to_owned();
    let upload = |len: u64, declared: Option<u64>| {
        let mut request = http
            // The test server's thread ids need no escaping.
            .post(format!(
                "{base}/api/upload?threadId={thread}&filename=big.bin"
            ))
            .header("content-type", "application/octet-stream")
            .body(body(len));
        if let Some(declared) = declared {
            request = request.header("content-length", declared.to_string());
        }
        request.send()
    };

    // Without a declared length there is nothing to presign for: 411.
    let no_length = upload(1024, None).await.unwrap();
    assert_eq!(no_length.status().as_u16(), 411);
    // Warm up the pools and the allocator with a small one first.
    let small = upload(1 << 20, Some(1 << 20)).await.unwrap();
    assert_eq!(small.status().as_u16(), 200);

    let before = rss();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let answer = upload(SIZE, Some(SIZE)).await.unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["bytes"], SIZE);
    let id = answer["attachmentId"].as_str().expect("attachmentId");
    assert_eq!(server.uploaded(id).map(|u| u.0), Some(SIZE));

    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "100 MiB relayed upload: RSS before {:.1} MiB, peak during {:.1} MiB, growth {:.1} MiB",
        before as f64 / 1048576.0,
        peak.load(Ordering::Relaxed) as f64 / 1048576.0,
        growth as f64 / 1048576.0
    );
    assert!(
        growth < 16 << 20,
        "memory grew by {growth} bytes relaying a {SIZE}-byte upload"
    );
}
