//! `into_stream()` walks offset pages (limit/offset) until a short page,
//! an empty page or `hasMore: false`, one request per page as it is polled.

use futures::{StreamExt, TryStreamExt};
use platos_client::{DEFAULT_PAGE_SIZE, Error, PlatosClient};
use platos_integration_tests::recorder::{Answer, Recorded, Recorder};
use serde_json::{Value, json};

fn client(url: &str) -> PlatosClient {
    PlatosClient::builder()
        .base_url(url)
        .session_token("tok_paging")
        .build()
        .unwrap()
}

fn threads(range: std::ops::Range<u64>) -> Vec<Value> {
    range
        .map(|i| json!({"id": format!("th_{i}"), "agentId": "ag_1"}))
        .collect()
}

fn query(r: &Recorded) -> Vec<(String, String)> {
    let mut q = r.query.clone();
    q.sort();
    q
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn threads_walk_until_a_short_page() {
    let recorder = Recorder::start().await;
    // Legacy answers: no hasMore, so a full page means "maybe more".
    recorder
        .push(Answer::json(200, json!({"threads": threads(0..2)})))
        .push(Answer::json(
            200,
            json!({"threads": threads(2..4), "total": 5}),
        ))
        .push(Answer::json(200, json!({"threads": threads(4..5)})));
    let ids: Vec<String> = client(&recorder.url())
        .threads()
        .list()
        .agent_id("ag 1&x")
        .limit(2)
        .into_stream()
        .map_ok(|t| t.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids, ["th_0", "th_1", "th_2", "th_3", "th_4"]);
    let seen = recorder.requests();
    let queries: Vec<_> = seen.iter().map(query).collect();
    assert_eq!(
        queries,
        [
            q(&[("agentId", "ag 1&x"), ("limit", "2"), ("offset", "0")]),
            q(&[("agentId", "ag 1&x"), ("limit", "2"), ("offset", "2")]),
            q(&[("agentId", "ag 1&x"), ("limit", "2"), ("offset", "4")]),
        ]
    );
    assert!(
        seen.iter()
            .all(|r| r.method == "GET" && r.path == "/api/v1/agent/threads")
    );
}

#[tokio::test]
async fn agents_stop_on_has_more_false_and_drop_page() {
    let recorder = Recorder::start().await;
    let agents = |r: std::ops::Range<u64>| -> Vec<Value> {
        r.map(|i| json!({"id": format!("ag_{i}")})).collect()
    };
    recorder
        .push(Answer::json(
            200,
            json!({"agents": agents(10..13), "hasMore": true, "total": 9}),
        ))
        .push(Answer::json(
            200,
            json!({"agents": agents(13..16), "items": agents(13..16), "hasMore": true}),
        ))
        .push(Answer::json(
            200,
            json!({"agents": agents(16..19), "hasMore": false}),
        ));
    let all: Vec<_> = client(&recorder.url())
        .agents()
        .list()
        .page(7)
        .offset(10)
        .limit(3)
        .status("active")
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        all.len(),
        9,
        "a full last page with hasMore:false ends the walk"
    );
    assert_eq!(all[0].id, "ag_10");
    assert_eq!(all[8].id, "ag_18");
    let queries: Vec<_> = recorder.requests().iter().map(query).collect();
    assert_eq!(
        queries,
        [
            q(&[("limit", "3"), ("offset", "10"), ("status", "active")]),
            q(&[("limit", "3"), ("offset", "13"), ("status", "active")]),
            q(&[("limit", "3"), ("offset", "16"), ("status", "active")]),
        ],
        "`page` is not sent while auto-paging"
    );
}

#[tokio::test]
async fn default_page_size_and_empty_first_page() {
    let recorder = Recorder::start().await;
    recorder.push(Answer::json(200, json!({"threads": [], "hasMore": false})));
    let all: Vec<_> = client(&recorder.url())
        .threads()
        .list()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert!(all.is_empty());
    let page_size = DEFAULT_PAGE_SIZE.to_string();
    assert_eq!(
        query(&recorder.only()),
        q(&[("limit", &page_size), ("offset", "0")])
    );
}

#[tokio::test]
async fn an_empty_page_ends_the_walk_even_if_has_more() {
    let recorder = Recorder::start().await;
    recorder
        .push(Answer::json(
            200,
            json!({"agents": [{"id": "ag_0"}, {"id": "ag_1"}], "hasMore": true}),
        ))
        .push(Answer::json(200, json!({"agents": [], "hasMore": true})));
    let all: Vec<_> = client(&recorder.url())
        .agents()
        .list()
        .limit(2)
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(recorder.count(), 2);

    // An empty body (legacy "no items") ends it too.
    let recorder = Recorder::start().await;
    recorder
        .push(Answer::json(200, json!({"threads": threads(0..2)})))
        .push(Answer::empty(200));
    let all: Vec<_> = client(&recorder.url())
        .threads()
        .list()
        .limit(2)
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(recorder.count(), 2);
}

#[tokio::test]
async fn pages_are_fetched_lazily() {
    let recorder = Recorder::start().await;
    recorder.respond_with(|r| {
        let offset: u64 = r
            .query
            .iter()
            .find(|(k, _)| k == "offset")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        Answer::json(200, json!({"threads": threads(offset..offset + 2)}))
    });
    let stream = client(&recorder.url())
        .threads()
        .list()
        .limit(2)
        .into_stream();
    assert_eq!(recorder.count(), 0, "nothing sent before polling");
    let first: Vec<_> = stream.take(3).try_collect().await.unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(recorder.count(), 2, "only the pages needed for 3 items");
}

#[tokio::test]
async fn an_error_ends_the_stream() {
    let recorder = Recorder::start().await;
    recorder
        .push(Answer::json(200, json!({"threads": threads(0..2)})))
        .push(Answer::json(
            404,
            json!({"statusCode": 404, "message": "gone"}),
        ));
    let mut stream = Box::pin(
        client(&recorder.url())
            .threads()
            .list()
            .limit(2)
            .into_stream(),
    );
    assert!(stream.next().await.unwrap().is_ok());
    assert!(stream.next().await.unwrap().is_ok());
    let e = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    assert!(stream.next().await.is_none());
    assert_eq!(recorder.count(), 2);
}

#[tokio::test]
async fn other_paged_lists_stream_too() {
    let recorder = Recorder::start().await;
    recorder
        .push(Answer::json(
            200,
            json!({"rows": [{"id": "apr_1"}], "hasMore": false}),
        ))
        .push(Answer::json(200, json!({"jobs": [{"id": "job_1"}]})))
        .push(Answer::json(200, json!({"messages": [{"id": "m_1"}]})));
    let client = client(&recorder.url());
    let approvals: Vec<_> = client
        .approvals()
        .list()
        .status("pending")
        .limit(5)
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    let jobs: Vec<_> = client
        .jobs()
        .list()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    let messages: Vec<_> = client
        .threads()
        .messages("a/b")
        .limit(10)
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!((approvals.len(), jobs.len(), messages.len()), (1, 1, 1));
    let seen = recorder.requests();
    assert_eq!(seen[0].path, "/api/v1/agent/monitoring/approvals");
    assert_eq!(
        query(&seen[0]),
        q(&[("limit", "5"), ("offset", "0"), ("status", "pending")])
    );
    assert_eq!(seen[2].path, "/api/v1/agent/threads/a%2Fb/messages");
}
