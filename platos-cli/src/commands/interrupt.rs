//! Ctrl-C as a stream: every SIGINT counts, also one that arrives while
//! nobody is waiting (the handler is installed once, up front).

use crate::fail::{Failure, Result};

pub struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| Failure::io("installing the Ctrl-C handler", e))?;
            Ok(Interrupts { signal })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// The next Ctrl-C.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        {
            if self.signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The exit code of a process stopped by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;
