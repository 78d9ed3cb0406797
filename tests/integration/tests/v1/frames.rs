//! `spec/conformance/v1-frames.json`: the typed payload of every frame type the
//! stream contract names, read through the V1 reader over real HTTP on loopback.
//! Each entry's frame is journaled on a stream of its own on the test server and
//! the first item the reader yields is checked: the typed variant and its
//! members (unknown members kept), the raw members of an unknown `t`, or the
//! `STREAM_FRAME_MALFORMED` violation naming the member at fault.

use std::time::Duration;

use futures::StreamExt;
use platos_client::StreamViolation;
use platos_client::v1::{FramePayload, FrameType, V1Client};
use platos_integration_tests::conformance::{entries, load, normalise, same};
use platos_test_server::{StreamPlan, TestServer};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_frame_fixture_reads_as_the_schema_says() {
    let doc = load("v1-frames.json");
    let server = TestServer::start().await.expect("server");
    let env = server.scope().environment_id.clone();
    let client = V1Client::builder()
        .base_url(server.base_url())
        .operator_token(server.operator_token())
        .build()
        .expect("client");
    let mut failures = Vec::new();
    for (i, entry) in entries(&doc).iter().enumerate() {
        let name = entry["name"].as_str().expect("name");
        let t = entry["t"].as_str().expect("t");
        let stream_id = format!("frame-{i}");
        server
            .v1_streams()
            .append(&env, &stream_id, t, entry["payload"].clone());
        let mut stream = client
            .environment_streams()
            .read(&env, &stream_id)
            .open()
            .expect("open");
        let first = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("within the deadline")
            .expect("an item");
        let expect = &entry["expect"];
        match (first, expect.get("error")) {
            (Ok(frame), None) => {
                let payload = frame.payload();
                let typed = expect["typed"].as_str();
                match (typed, payload) {
                    (None, FramePayload::Unknown { t: raw, .. }) if raw == t => {}
                    (Some(want), p) if p.frame_type().as_str() == want => {
                        if matches!(p.frame_type(), FrameType::Unknown(_)) {
                            failures.push(format!("{name}: `{want}` was not typed"));
                        }
                    }
                    (_, p) => failures.push(format!("{name}: typed as {:?}", p.frame_type())),
                }
                let got = normalise(&payload.to_value());
                let want = normalise(&expect["payload"]);
                if !same(&got, &want) {
                    failures.push(format!("{name}: payload {got} != {want}"));
                }
                if !same(&payload.to_value(), &Value::Object(frame.fields.clone())) {
                    failures.push(format!(
                        "{name}: the typed payload lost a member of `fields`"
                    ));
                }
            }
            (Err(e), Some(error)) => {
                let member = error["member"].as_str().expect("member");
                if e.stream_violation() != Some(StreamViolation::FrameMalformed)
                    || e.code() != error["code"].as_str()
                    || !e.to_string().contains(member)
                {
                    failures.push(format!("{name}: {:?} {e}", e.code()));
                }
            }
            (Ok(frame), Some(_)) => {
                failures.push(format!("{name}: read {:?}, not an error", frame.payload()))
            }
            (Err(e), None) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The frames the test server writes itself (the transport-minted
/// `stream.error`, `go_offline`'s `stream.offline`) read as the schema's
/// typed payloads, with nothing left over in `extra`.
#[tokio::test]
async fn the_test_servers_own_frames_match_the_schema() {
    let server = TestServer::start().await.expect("server");
    let env = server.scope().environment_id.clone();
    let client = V1Client::builder()
        .base_url(server.base_url())
        .operator_token(server.operator_token())
        .build()
        .expect("client");
    // The second frame of a stream whose first is an `assistant.delta` (a
    // stream exists once something is journaled).
    let second = |stream_id: &'static str| {
        server.v1_streams().append(
            &env,
            stream_id,
            "assistant.delta",
            serde_json::json!({"text": "a"}),
        );
        let mut stream = client
            .environment_streams()
            .read(&env, stream_id)
            .open()
            .expect("open");
        async move {
            let mut next = async || {
                tokio::time::timeout(DEADLINE, stream.next())
                    .await
                    .expect("within the deadline")
                    .expect("an item")
                    .expect("a frame")
            };
            next().await;
            next().await
        }
    };

    server
        .v1_streams()
        .plan(StreamPlan::deliver().error("STREAM_CREDENTIAL_EXPIRED"));
    match second("minted-error").await.into_payload() {
        FramePayload::StreamError(e) => {
            assert_eq!(e.code.as_deref(), Some("STREAM_CREDENTIAL_EXPIRED"));
            assert!(e.extra.is_empty(), "{:?}", e.extra);
        }
        other => panic!("not a typed stream.error: {other:?}"),
    }

    let offline = second("offline");
    let seq = server.v1_streams().go_offline(&env, "offline");
    let cursor = server.v1_streams().cursor(&env, "offline", seq);
    match offline.await.into_payload() {
        FramePayload::StreamOffline(o) => {
            assert_eq!(o.resume_from, Some(cursor));
            assert!(o.extra.is_empty(), "{:?}", o.extra);
        }
        other => panic!("not a typed stream.offline: {other:?}"),
    }
}

/// Every frame type of the schema has a good, an unknown-member and a
/// wrong-typed entry, and an unknown `t` is among the fixtures.
#[test]
fn the_fixtures_cover_every_frame_type() {
    let doc = load("v1-frames.json");
    for t in platos_client::v1::payload::KNOWN_FRAME_TYPES {
        let of_t: Vec<&Value> = entries(&doc).iter().filter(|e| e["t"] == *t).collect();
        assert!(
            of_t.iter().any(|e| e["expect"]["typed"] == *t),
            "{t}: a good payload"
        );
        assert!(
            of_t.iter()
                .any(|e| e["payload"].get("laterMember").is_some()),
            "{t}: an unknown member"
        );
        assert!(
            of_t.iter().any(|e| e["expect"].get("error").is_some()),
            "{t}: a wrong-typed member"
        );
    }
    assert!(
        entries(&doc)
            .iter()
            .any(|e| e["expect"]["typed"].is_null() && e.get("expect").is_some()),
        "an unknown type"
    );
}
