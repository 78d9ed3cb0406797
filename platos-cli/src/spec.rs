//! The shape of the command table `cargo xtask codegen` writes into
//! `generated.rs` (see `xtask/src/cli.rs`): what each operation of the
//! specs is, as data.

/// Which API (and so which client and credential) serves an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// The agent API (`spec/openapi.yaml`): a session token or api key.
    Agent,
    /// The V1 operator API (`spec/v1.yaml`): an operator token; under `platos v1`.
    V1,
}

/// A namespace (a tag of the spec).
#[derive(Debug)]
pub struct Namespace {
    pub api: Api,
    /// `["bgo", "tasks"]` for the tag `bgo.tasks`.
    pub path: &'static [&'static str],
    pub about: &'static str,
}

/// One operation: one command.
#[derive(Debug)]
pub struct Op {
    pub api: Api,
    pub namespace: &'static [&'static str],
    pub name: &'static str,
    pub operation_id: &'static str,
    pub method: &'static str,
    /// The path template, `{name}` per path parameter.
    pub path: &'static str,
    pub about: &'static str,
    /// Positional (`required`) parameters first, in order; then the flags.
    pub params: &'static [Param],
    pub list: Option<List>,
    /// `x-platos-idempotency: once`: sent once, never retried.
    pub once: bool,
    /// `security: []`: sent without the client's credentials.
    pub anonymous: bool,
}

/// Where a parameter goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Path,
    Query,
    Body,
}

/// How a parameter's text becomes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    /// No parameter of today's specs is a `number`; the generator knows the type.
    #[allow(dead_code)]
    Num,
    Bool,
    /// A list of strings: the flag repeats.
    Strings,
    /// Any JSON value, given as JSON text.
    Json,
}

/// One parameter of an operation.
#[derive(Debug)]
pub struct Param {
    /// The name on the wire (`agentId`).
    pub wire: &'static str,
    /// The name on the command line (`agent-id`).
    pub flag: &'static str,
    pub place: Place,
    /// Positional and required (a body field may come from `--body` instead).
    pub required: bool,
    pub ty: Ty,
    pub help: &'static str,
}

/// An operation answering a list envelope.
#[derive(Debug)]
pub struct List {
    /// The envelope members that may hold the items, first non-empty wins.
    pub keys: &'static [&'static str],
    pub paging: Paging,
}

/// How `--all` follows pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// One page is everything.
    None,
    /// `offset`/`limit`, `hasMore` or a short page ends it.
    Offset,
    /// `page.nextCursor` into the named query parameter.
    Cursor(&'static str),
}
