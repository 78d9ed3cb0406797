//! The page in a real browser: headless Chromium (Debian's `chromium`)
//! driven by playwright-core (`npm ci --prefix tests/node`) through
//! `tests/node/chat_web.mjs`. It types a message, approves the tool call,
//! sees the streamed text, uploads a file and sends a turn with it, stops a
//! long turn mid-stream, edits a message and reruns it; the screenshot is
//! kept at `target/chat-web/screenshot.png`.

use std::path::PathBuf;
use std::process::Stdio;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_streams_approves_and_uploads_in_chromium() {
    let root = root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (cargo xtask ci installs it)"
    );
    assert!(
        root.join("tests/node/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: npm ci --prefix tests/node"
    );
    let server = platos_test_server::TestServer::start().await.unwrap();
    // Spaced events: the stop click lands while the long turn still streams.
    server
        .faults()
        .set_event_delay(std::time::Duration::from_millis(20));
    let app = platos_chat_web::router(&platos_chat_web::embedded_settings(&server)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let shot = root.join("target/chat-web/screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/node/chat_web.mjs"))
        .arg(&url)
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), out)
        .await
        .expect("the browser run finishes within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser run failed:\n{stdout}\n{stderr}"
    );
    for step in [
        "chat-web: file uploaded",
        "chat-web: turn stopped",
        "chat-web: edited and rerun",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    server.shutdown().await;
}
