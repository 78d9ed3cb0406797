//! A 100 MB upload streams: the process's resident memory stays flat while
//! it goes (the SDK reads 64 KiB at a time; the test server's storage counts
//! the bytes without keeping them). Alone in its binary so no other test's
//! allocations move the figure. Prints the figure it measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use platos_client::mint::{MintOptions, mint_session_token};
use platos_client::{PlatosClient, UploadSource};
use platos_test_server::{SEED_AGENT_SUPPORT, TestServer};
use tokio::io::AsyncReadExt;

const SIZE: u64 = 100 * 1024 * 1024;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_keeps_memory_flat() {
    let server = TestServer::start().await.unwrap();
    server.set_max_attachment_bytes(SIZE);
    let scope = server.scope();
    let token = mint_session_token(
        &MintOptions::new(server.secret(), server.entity_id())
            .scope(
                &scope.organization_id,
                &scope.project_id,
                &scope.environment_id,
            )
            .user_id(server.user_id()),
    )
    .unwrap();
    let client = PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(token)
        .build()
        .unwrap();
    let thread = client
        .threads()
        .create(SEED_AGENT_SUPPORT)
        .await
        .unwrap()
        .id;
    // Warm up the connection pool and allocator with a small upload first.
    client
        .attachments()
        .upload(
            SEED_AGENT_SUPPORT,
            &thread,
            UploadSource::bytes(vec![1u8; 1 << 20]),
        )
        .await
        .unwrap();

    let before = rss();
    let peak = Arc::new(AtomicU64::new(before));
    let last = Arc::new(AtomicU64::new(0));
    let (p, l) = (peak.clone(), last.clone());
    let source = tokio::io::repeat(0x5a).take(SIZE);
    let up = client
        .attachments()
        .upload(
            SEED_AGENT_SUPPORT,
            &thread,
            UploadSource::reader(source, SIZE),
        )
        .on_progress(move |sent, _| {
            // Sample every ~4 MiB: reading /proc on every chunk would dominate.
            if sent - l.load(Ordering::Relaxed) >= 4 << 20 || sent == SIZE {
                l.store(sent, Ordering::Relaxed);
                p.fetch_max(rss(), Ordering::Relaxed);
            }
        })
        .await
        .unwrap();
    assert_eq!(up.bytes, SIZE);
    assert_eq!(server.uploaded(&up.attachment_id).map(|u| u.0), Some(SIZE));
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "100 MiB upload: RSS before {:.1} MiB, peak during {:.1} MiB, growth {:.1} MiB",
        before as f64 / 1048576.0,
        peak.load(Ordering::Relaxed) as f64 / 1048576.0,
        growth as f64 / 1048576.0
    );
    assert!(
        growth < 16 << 20,
        "memory grew by {growth} bytes for a {SIZE}-byte upload"
    );
}
