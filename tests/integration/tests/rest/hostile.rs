//! Servers that try to make the client buffer without bound: huge error
//! bodies, success bodies larger than the limit, and bodies that never end.
//! A raw TCP server writes the answer and counts how much of it the client
//! let it write before hanging up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use platos_client::{Error, PlatosClient, RetryConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MB: u64 = 1024 * 1024;

/// Answers every request with `status` and a body of `len` bytes (`None`:
/// endless, chunked), written 64 KiB at a time; counts what got written.
async fn serve(status: u16, len: Option<u64>) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                // Read the request head (small; one read is enough here).
                let _ = sock.read(&mut buf).await;
                let head = match len {
                    Some(n) => format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n"
                    ),
                    None => format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                    ),
                };
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut left = len.unwrap_or(u64::MAX);
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    let ok = match len {
                        Some(_) => sock.write_all(&chunk[..n]).await.is_ok(),
                        None => {
                            let framed =
                                [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
                            sock.write_all(&framed).await.is_ok()
                        }
                    };
                    if !ok {
                        return;
                    }
                    count.fetch_add(n as u64, Ordering::SeqCst);
                    left -= n as u64;
                }
            });
        }
    });
    (url, written)
}

fn client(url: &str, max_response: Option<u64>) -> PlatosClient {
    let mut b = PlatosClient::builder()
        .base_url(url)
        .session_token("t")
        .retry(RetryConfig::disabled());
    if let Some(max) = max_response {
        b = b.max_response_bytes(max);
    }
    b.build().unwrap()
}

/// A 500 with a 50 MB body: the error keeps 64 KiB and the client reads no
/// further (the server cannot write the body out).
#[tokio::test]
async fn a_huge_error_body_is_read_only_as_far_as_the_error_keeps() {
    let (url, written) = serve(500, Some(50 * MB)).await;
    let e = client(&url, None).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.body().map(str::len), Some(64 * 1024));
    // Socket buffers take some, but nowhere near the 50 MB.
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 20 * MB, "the server wrote {sent} bytes");
}

/// A success body over the limit fails the call with a decode error that
/// names the limit and keeps the status; one that never ends likewise.
#[tokio::test]
async fn success_bodies_past_the_limit_fail_without_being_buffered() {
    let (url, _) = serve(200, Some(8 * MB)).await;
    let e = client(&url, Some(MB)).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    assert_eq!(e.status(), Some(200));
    assert!(
        e.message().contains("1048576-byte limit"),
        "{}",
        e.message()
    );

    let (url, written) = serve(200, None).await;
    let e = client(&url, Some(MB)).agents().list().await.unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    assert!(e.message().contains("limit"), "{}", e.message());
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent < 20 * MB,
        "the server wrote {sent} bytes of an endless body"
    );

    // Under the limit the answer is read as usual (a blank list answer is
    // an empty list).
    let (url, _) = serve(200, Some(1000)).await;
    let agents = client(&url, Some(MB)).agents().list().await.unwrap();
    assert!(agents.is_empty());
}
