//! How `platos` fails: one line `error: …` on stderr (the server's code and
//! a hint when there is one) and an exit code a script can branch on.
//!
//! | Code | Meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the server refused the call (or answered what the API does not describe) |
//! | 2 | usage: bad flags, arguments, `--body` or configuration; nothing was sent |
//! | 3 | network: the server could not be reached, or a try timed out |
//! | 130 | stopped by Ctrl-C (`chat` on a second one, `events tail`, `dev-server`'s is 0) |

use std::fmt;

use platos_client::Error;

/// The exit codes, documented in `platos --help` and README.
pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 the server refused the call, \
2 usage (bad flags, arguments or configuration; nothing sent), 3 network (unreachable, timed out), \
130 stopped by Ctrl-C.";

/// Why a command failed, and so how the process exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Api = 1,
    Usage = 2,
    Network = 3,
}

/// A failure: its one-line message and exit class.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    pub fn io(what: &str, e: std::io::Error) -> Self {
        Failure::usage(format!("{what}: {e}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the server put in its message.
        let line: String = self
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        f.write_str(line.trim())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let exit = match &e {
            Error::Network(_) | Error::Timeout(_) | Error::Proxy(_) => Exit::Network,
            Error::Config(_) => Exit::Usage,
            _ => Exit::Api,
        };
        let mut message = match e.status() {
            Some(status) => match e.code() {
                Some(code) => format!("{} ({status} {code})", e.message()),
                None => format!("{} ({status})", e.message()),
            },
            None => e.message().to_owned(),
        };
        // A V1 refusal names each refused input: say which.
        if let Some(refusal) = e.refusal().filter(|r| !r.fields.is_empty()) {
            let fields: Vec<String> = refusal
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            message.push_str(&format!(" [{}]", fields.join("; ")));
        }
        if let Some(hint) = hint(&e) {
            message.push_str("; hint: ");
            message.push_str(hint);
        }
        Failure { exit, message }
    }
}

fn hint(e: &Error) -> Option<&'static str> {
    match (e.status(), e.code()) {
        (_, Some("OPERATOR_ONLY" | "FORBIDDEN_SCOPE" | "RATING_ACTOR_FORBIDDEN")) => {
            Some(if e.code() == Some("RATING_ACTOR_FORBIDDEN") {
                "ratings are written by end users: use an end user's session token (PLATOS_SESSION_TOKEN)"
            } else {
                "this call needs an operator credential: set PLATOS_OPERATOR_TOKEN and pass \
                 --operator (agent API), or use `platos v1 …`; an end user's session token \
                 cannot make it"
            })
        }
        (Some(401), _) => Some(
            "the credential was refused or has expired: set PLATOS_SESSION_TOKEN \
             (PLATOS_OPERATOR_TOKEN for operator calls) or run `platos auth login`",
        ),
        (Some(403), _) => {
            Some("the credential may not do this; an operator credential may be needed")
        }
        _ if matches!(e, Error::Network(_) | Error::Timeout(_)) => {
            Some("is the server running at the base URL (--base-url, PLATOS_BASE_URL)?")
        }
        _ => None,
    }
}
