//! Auto-paging over offset-paged list calls.
//!
//! The server pages lists with `limit`/`offset` and says `hasMore` (newer
//! servers) or nothing at all (older ones). One mechanism serves every list:
//! fetch a page, yield its items, stop on `hasMore: false`, a short page or
//! an empty one.

use std::future::Future;

use futures::Stream;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::error::Result;

/// The page size used when the caller did not set a `limit`.
pub const DEFAULT_PAGE_SIZE: u64 = 50;

/// One fetched page: its items and what the envelope said about more.
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) has_more: Option<bool>,
}

/// Streams every item from `offset` on, `page_size` at a time.
pub(crate) fn offset_pages<T, F, Fut>(
    offset: u64,
    page_size: u64,
    mut fetch: F,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Send + 'static,
    F: FnMut(u64, u64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Page<T>>> + Send + 'static,
{
    let page_size = page_size.max(1);
    stream::try_unfold(Some(offset), move |next| {
        let fut = next.map(|offset| (offset, fetch(offset, page_size)));
        async move {
            let Some((offset, fut)) = fut else {
                return Ok::<_, crate::Error>(None);
            };
            let page = fut.await?;
            let got = page.items.len() as u64;
            let more = match page.has_more {
                Some(more) => more && got > 0,
                None => got >= page_size,
            };
            let next = more.then(|| offset.saturating_add(got));
            Ok(Some((stream::iter(page.items.into_iter().map(Ok)), next)))
        }
    })
    .try_flatten()
    .boxed()
}

/// One page of a cursor-paged list: its items and the cursor of the next.
#[cfg(any(test, feature = "v1"))]
pub(crate) struct CursorPage<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next: Option<String>,
}

/// Streams every item from the page `start` names on, following each
/// answer's next cursor. A page that names no next cursor, an empty one, or
/// the cursor it was fetched with (a server that would loop) ends it.
#[cfg(any(test, feature = "v1"))]
pub(crate) fn cursor_pages<T, F, Fut>(
    start: Option<String>,
    mut fetch: F,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<CursorPage<T>>> + Send + 'static,
{
    stream::try_unfold(Some(start), move |state| {
        let fut = state.map(|cursor| (cursor.clone(), fetch(cursor)));
        async move {
            let Some((cursor, fut)) = fut else {
                return Ok::<_, crate::Error>(None);
            };
            let page = fut.await?;
            let next = page
                .next
                .filter(|n| !n.is_empty() && Some(n) != cursor.as_ref())
                .map(Some);
            Ok(Some((stream::iter(page.items.into_iter().map(Ok)), next)))
        }
    })
    .try_flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn walks_pages_until_short_page() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        let items: Vec<u64> = offset_pages(0, 3, move |offset, limit| {
            c.lock().unwrap().push((offset, limit));
            async move {
                let end = (offset + limit).min(7);
                Ok(Page {
                    items: (offset..end).collect(),
                    has_more: None,
                })
            }
        })
        .try_collect()
        .await
        .unwrap();
        assert_eq!(items, (0..7).collect::<Vec<_>>());
        assert_eq!(*calls.lock().unwrap(), vec![(0, 3), (3, 3), (6, 3)]);
    }

    #[tokio::test]
    async fn has_more_false_stops_even_on_full_page() {
        let items: Vec<u64> = offset_pages(10, 2, |offset, _| async move {
            Ok(Page {
                items: vec![offset, offset + 1],
                has_more: Some(offset < 12),
            })
        })
        .try_collect()
        .await
        .unwrap();
        assert_eq!(items, vec![10, 11, 12, 13]);
    }

    #[tokio::test]
    async fn cursors_are_followed_until_none_and_a_repeat_ends_the_walk() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let items: Vec<u64> = cursor_pages(None, move |cursor: Option<String>| {
            s.lock().unwrap().push(cursor.clone());
            async move {
                Ok(match cursor.as_deref() {
                    None => CursorPage {
                        items: vec![1, 2],
                        next: Some("c2".into()),
                    },
                    Some("c2") => CursorPage {
                        items: vec![3],
                        next: Some("c3".into()),
                    },
                    // A server that hands back the cursor it was given.
                    _ => CursorPage {
                        items: vec![4],
                        next: Some("c3".into()),
                    },
                })
            }
        })
        .try_collect()
        .await
        .unwrap();
        assert_eq!(items, vec![1, 2, 3, 4]);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![None, Some("c2".to_owned()), Some("c3".to_owned())]
        );
    }

    #[tokio::test]
    async fn error_ends_the_stream() {
        let mut s = Box::pin(offset_pages(0, 1, |offset, _| async move {
            if offset == 0 {
                Ok(Page {
                    items: vec![0u64],
                    has_more: Some(true),
                })
            } else {
                Err(crate::Error::config("boom"))
            }
        }));
        assert_eq!(s.next().await.unwrap().unwrap(), 0);
        assert!(s.next().await.unwrap().is_err());
        assert!(s.next().await.is_none());
    }
}
