//! What every namespace's request builders share: list-envelope unwrapping
//! and the macros that give builders their setters and `.await`.
//!
//! A builder owns a client handle and its arguments, so it can be awaited
//! directly (`client.agents().list().limit(5).await?`), sent with `.send()`,
//! and, for paged lists, turned into a `'static` stream of every item.

use crate::error::{Error, Result};
use crate::paging::Page;
use crate::types;

/// Checks an id that becomes a path segment. The generated client
/// percent-encodes segments, but `.`, `..` and the empty string survive
/// encoding and would change which route the URL names.
pub(crate) fn path_id(id: &str) -> Result<&str> {
    match id {
        "" | "." | ".." => Err(Error::config(format!(
            "`{id}` is not a usable id: it would change the request path"
        ))),
        _ => Ok(id),
    }
}

/// A list answer: the named array (`agents`, `threads`, …), else `items`,
/// else a legacy key; `hasMore` when the server says it (wire.md §3.1).
pub(crate) trait Envelope {
    type Item;
    fn into_page(self) -> Page<Self::Item>;
}

fn first_non_empty<T>(candidates: impl IntoIterator<Item = Vec<T>>) -> Vec<T> {
    candidates
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

macro_rules! envelope {
    ($envelope:ty => $item:ty, [$($key:ident),+], $has_more:expr) => {
        impl Envelope for $envelope {
            type Item = $item;
            fn into_page(self) -> Page<$item> {
                let has_more: fn(&$envelope) -> Option<bool> = $has_more;
                let more = has_more(&self);
                Page {
                    items: first_non_empty([$(self.$key),+]),
                    has_more: more,
                }
            }
        }
    };
}

envelope!(types::AgentList => types::Agent, [agents, items], |e| e.has_more);
envelope!(types::AgentVersionList => types::AgentVersion, [versions, items], |e| e.has_more);
envelope!(types::ThreadList => types::Thread, [threads, items], |e| e.has_more);
envelope!(types::MessageList => types::Message, [messages, items], |e| e.has_more);
envelope!(types::ArtifactList => types::Artifact, [artifacts, items], |e| e.has_more);
// The TS SDK reads `approvals`; the server sends `rows` (wire.md §3.4).
envelope!(types::ApprovalList => types::Approval, [rows, items, approvals], |e| e.has_more);
envelope!(types::BudgetCapList => types::BudgetCap, [caps, items], |e| e.has_more);
envelope!(types::RunList => types::Run, [runs, items], |e| e.has_more);
envelope!(types::CostByAgentResponse => types::CostByAgentRow, [rows], |_| None);
envelope!(types::JobList => types::Job, [jobs, items], |e| e.has_more);
envelope!(types::BgoTaskList => types::BgoTask, [tasks, items], |_| None);
envelope!(types::BgoRunList => types::BgoRun, [runs, items], |_| None);
envelope!(types::BgoScheduleList => types::BgoSchedule, [schedules, items], |_| None);

/// Chainable setters for optional arguments stored as `Option` fields.
/// Each type must be a single token (use an alias for a path type).
macro_rules! setters {
    ($( $(#[$doc:meta])* $field:ident : $ty:tt ),* $(,)?) => {
        $( $crate::request::setter!($(#[$doc])* $field : $ty); )*
    };
}

/// One setter. Integers take the exact type so that a literal works:
/// `impl Into<u64>` would leave `.limit(5)` an ambiguous `i32`.
macro_rules! setter {
    ($(#[$doc:meta])* $field:ident : u64) => {
        $(#[$doc])*
        pub fn $field(mut self, value: u64) -> Self {
            self.$field = Some(value);
            self
        }
    };
    ($(#[$doc:meta])* $field:ident : $ty:tt) => {
        $(#[$doc])*
        pub fn $field(mut self, value: impl Into<$ty>) -> Self {
            self.$field = Some(value.into());
            self
        }
    };
}

/// Applies the `Option` fields that are set to a generated builder, so
/// absent parameters are never sent.
macro_rules! apply {
    ($gen:expr, $args:expr, [$($field:ident),* $(,)?]) => {{
        #[allow(unused_mut)]
        let mut generated = $gen;
        $(
            if let Some(value) = &$args.$field {
                generated = generated.$field(value.clone());
            }
        )*
        generated
    }};
}

/// Lets a builder be awaited directly.
macro_rules! into_future {
    ($builder:ty => $output:ty) => {
        impl ::std::future::IntoFuture for $builder {
            type Output = $crate::Result<$output>;
            type IntoFuture = ::futures::future::BoxFuture<'static, $crate::Result<$output>>;
            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.send())
            }
        }
    };
}

/// Gives a list builder that has an `async fn fetch(self) -> Result<Page<Item>>`
/// its `send()` (one page of items) and `.await`; with `paged`, also
/// `into_stream()` over every item, for builders with `offset`/`limit`
/// fields (and a `page` field, which auto-paging clears).
macro_rules! list_builder {
    ($builder:ident => $item:ty) => {
        impl $builder {
            /// Sends the call and returns the items of the answer.
            pub async fn send(self) -> $crate::Result<Vec<$item>> {
                Ok(self.fetch().await?.items)
            }
        }
        $crate::request::into_future!($builder => Vec<$item>);
    };
    ($builder:ident => $item:ty, paged $(, $page:ident)?) => {
        $crate::request::list_builder!($builder => $item);
        impl $builder {
            /// Every item from `offset` on (default 0), fetched `limit` at a
            /// time (default 50), one request per page as the stream is polled.
            pub fn into_stream(
                self,
            ) -> impl ::futures::Stream<Item = $crate::Result<$item>> + Send + 'static {
                let start = self.offset.unwrap_or(0);
                let size = self.limit.unwrap_or($crate::paging::DEFAULT_PAGE_SIZE);
                $crate::paging::offset_pages(start, size, move |offset, limit| {
                    let mut args = self.clone();
                    args.offset = Some(offset);
                    args.limit = Some(limit);
                    $( args.$page = None; )?
                    args.fetch()
                })
            }
        }
    };
}

pub(crate) use {apply, into_future, list_builder, setter, setters};
