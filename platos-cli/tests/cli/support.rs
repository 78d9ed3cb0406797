//! Running the real `platos` binary against a test server: a clean
//! environment (no inherited `PLATOS_*`, a config directory of its own),
//! piped stdio, and every wait bounded by [`DEADLINE`] so a hang fails.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platos_test_server::TestServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// The longest any one step may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A fresh, empty directory under the system's temporary one.
pub fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "platos-cli-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `platos ARGS` with nothing from the caller's environment but `PATH`,
/// and `XDG_CONFIG_HOME` in a fresh directory.
pub fn bare(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_platos"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("XDG_CONFIG_HOME", temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `platos ARGS` pointed at `server` with its end user's session token and
/// its operator token.
pub fn platos(server: &TestServer, args: &[&str]) -> Command {
    let mut cmd = bare(args);
    cmd.env("PLATOS_BASE_URL", server.base_url())
        .env("PLATOS_SESSION_TOKEN", server.session_token())
        .env("PLATOS_OPERATOR_TOKEN", server.operator_token());
    cmd
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts exit 0 and answers stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code(), Some(0), "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts the run failed with `code` and one line `error: …` on stderr;
    /// answers that line.
    pub fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code(), Some(code), "{self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:?}");
        assert!(lines[0].starts_with("error: "), "{self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        lines[0]
    }
}

/// Runs `cmd` with `stdin` written to it (then closed) to its end.
pub async fn run(mut cmd: Command, stdin: &str) -> Run {
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn platos");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    finish(child).await
}

/// Waits for `child` to end and collects what it printed.
pub async fn finish(child: Child) -> Run {
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("platos ended in time")
        .expect("platos ran");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Reads lines of a child's stream until one contains `needle`; answers it.
pub async fn line_containing<R>(lines: &mut Lines<BufReader<R>>, needle: &str) -> String
where
    R: tokio::io::AsyncRead + Unpin,
{
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    })
    .await
    .expect("the line came in time");
    found.unwrap_or_else(|| panic!("the stream ended without a line containing {needle:?}"))
}

pub fn stdout_lines(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().expect("stdout")).lines()
}

pub fn stderr_lines(child: &mut Child) -> Lines<BufReader<ChildStderr>> {
    BufReader::new(child.stderr.take().expect("stderr")).lines()
}

/// Everything left on a stream, to its end.
pub async fn rest<R: tokio::io::AsyncRead + Unpin>(lines: Lines<BufReader<R>>) -> String {
    let mut reader = lines.into_inner();
    let mut text = String::new();
    tokio::time::timeout(DEADLINE, reader.read_to_string(&mut text))
        .await
        .expect("the stream ended in time")
        .expect("read");
    text
}

/// Sends SIGINT (Ctrl-C) to the child.
pub fn interrupt(child: &Child) {
    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The tags of a spec, as the command line names them (kebab-case, dots as spaces).
pub fn spec_namespaces(file: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../spec")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("spec readable");
    let mut in_tags = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line == "tags:" {
            in_tags = true;
            continue;
        }
        if in_tags {
            if let Some(name) = line.strip_prefix("  - name: ") {
                out.push(name.trim().replace(['_'], "-"));
            } else if !line.starts_with(' ') {
                break;
            }
        }
    }
    assert!(!out.is_empty(), "no tags read from {file}");
    out
}

/// `platos ARGS` on a pseudo-terminal (util-linux `script`), with `env`
/// besides `PATH`. Each `(prompt, line)` of `dialogue` is typed once the
/// terminal shows `prompt`; stdin closes once it shows `until`. Answers the
/// exit code and everything the terminal showed.
pub async fn on_terminal(
    env: &[(&str, String)],
    args: &[&str],
    dialogue: &[(&str, &str)],
    until: &str,
) -> (Option<i32>, String) {
    let log = temp_dir().join("terminal.log");
    let mut line = shell_quote(env!("CARGO_BIN_EXE_platos"));
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &line])
        .arg(&log)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn script (util-linux)");
    let mut input = child.stdin.take().expect("stdin");
    let shown = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait_for = |needle: String| {
        let shown = &shown;
        async move {
            tokio::time::timeout(DEADLINE, async {
                // `script -f` writes as the program does: poll the file.
                while !shown().contains(&needle) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("the terminal never showed {needle:?}: {}", shown()));
        }
    };
    for (prompt, text) in dialogue {
        wait_for(prompt.to_string()).await;
        input
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("type");
    }
    wait_for(until.to_string()).await;
    drop(input);
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("ended in time")
        .expect("script ran");
    (status.code(), shown())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
