//! Drives every entry of `spec/conformance/v1.json` through the real
//! `V1Client` against the recording server, with the same checks as
//! `rest.json` (the request on the wire, the envelope returned whole or the
//! error), plus the replay flag: an answer carrying
//! `idempotency-replayed: true` must read as replayed. Also checks that every
//! JSON operation of `spec/v1.yaml` has an entry.

use std::collections::BTreeSet;

use platos_client::v1::V1Client;
use platos_integration_tests::calls::invoke_v1;
use platos_integration_tests::conformance::{
    all_conform, answer_for, check_outcome, check_request, entries, load, repo_root,
};
use platos_integration_tests::recorder::Recorder;
use serde_json::Value;

async fn run_entry(doc: &Value, entry: &Value) -> Vec<String> {
    let recorder = Recorder::start().await;
    recorder.push(answer_for(&entry["response"]));
    let name = entry["client"].as_str().expect("entry.client");
    let spec = &doc["clients"][name];
    let mut builder = V1Client::builder().base_url(recorder.url());
    if let Some(t) = spec["operatorToken"].as_str() {
        builder = builder.operator_token(t);
    }
    let client = builder.build().expect("conformance client builds");
    let call = entry["call"].as_str().expect("entry.call");
    let outcome = invoke_v1(&client, call, &entry["args"]).await;

    let seen = recorder.requests();
    let mut problems = match seen.as_slice() {
        [one] => check_request(&entry["request"], one),
        other => vec![format!("want exactly one request, got {}", other.len())],
    };
    if let Ok(answer) = &outcome {
        let replayed = entry["response"]["headers"]["idempotency-replayed"] == "true";
        if answer.replayed != replayed {
            problems.push(format!(
                "replayed: want {replayed}, got {}",
                answer.replayed
            ));
        }
    }
    problems.extend(check_outcome(entry, outcome.map(|a| a.body)));
    problems
}

#[tokio::test]
async fn every_v1_entry_conforms() {
    let doc = load("v1.json");
    all_conform(&doc, |entry| run_entry(&doc, entry)).await;
}

#[test]
fn every_v1_json_operation_has_an_entry() {
    let doc = load("v1.json");
    let covered: BTreeSet<&str> = entries(&doc)
        .iter()
        .filter_map(|e| e["operationId"].as_str())
        .collect();
    let yaml = std::fs::read_to_string(repo_root().join("spec/v1.yaml")).expect("v1.yaml");
    let spec: Value = serde_yaml::from_str(&yaml).expect("v1.yaml parses");
    let mut wanted = BTreeSet::new();
    for item in spec["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            let streamed = op["x-platos-stream"] == true;
            if let (Some(id), false) = (op["operationId"].as_str(), streamed) {
                wanted.insert(id);
            }
        }
    }
    assert_eq!(wanted.len(), 27, "the V1 JSON operations");
    let missing: Vec<_> = wanted.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "operations without an entry: {missing:?}"
    );
}
