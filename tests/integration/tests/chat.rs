//! What a chat app needs, end to end against the test server: thread
//! operations, memory (refusals answered in HTTP 200 become errors), tokens
//! minted by the server, and attachments uploaded in one call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use platos_client::mint::{MintOptions, mint_session_token};
use platos_client::types::SessionTokenRequest;
use platos_client::{Error, PlatosClient, Scope, UploadFailure, UploadSource};
use platos_test_server::{RestFault, SEED_AGENT_SUPPORT, TestServer, UploadFault};
use serde_json::json;

fn token_for(server: &TestServer, user: &str) -> String {
    let scope = server.scope();
    mint_session_token(
        &MintOptions::new(server.secret(), server.entity_id())
            .scope(
                &scope.organization_id,
                &scope.project_id,
                &scope.environment_id,
            )
            .user_id(user),
    )
    .expect("mint")
}

fn session_client(server: &TestServer, token: String) -> PlatosClient {
    PlatosClient::builder()
        .base_url(server.base_url())
        .session_token(token)
        .build()
        .expect("client")
}

fn user_client(server: &TestServer) -> PlatosClient {
    session_client(server, token_for(server, server.user_id()))
}

fn operator_client(server: &TestServer) -> PlatosClient {
    let scope = server.scope();
    PlatosClient::builder()
        .base_url(server.base_url())
        .api_key(server.api_key())
        .scope(
            Scope::new(
                &scope.organization_id,
                &scope.project_id,
                &scope.environment_id,
            )
            .with_user_id(server.user_id()),
        )
        .build()
        .expect("client")
}

/// FNV-1a of `bytes`, as the test server's storage reports it.
fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[tokio::test]
async fn rename_pin_tag_fork_edit_and_retry_a_thread() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let thread = client.threads().create(SEED_AGENT_SUPPORT).await.unwrap();
    client
        .threads()
        .ask(&thread.id, "first question")
        .await
        .unwrap();
    client
        .threads()
        .ask(&thread.id, "second question")
        .await
        .unwrap();
    let messages = client.threads().messages(&thread.id).await.unwrap();
    assert_eq!(
        messages.len(),
        4,
        "two turns, a user and an assistant message each"
    );
    let roles: Vec<_> = messages
        .iter()
        .map(|m| m.role.clone().unwrap_or_default())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);

    let renamed = client
        .threads()
        .rename(&thread.id)
        .title("Trip plans")
        .await
        .unwrap();
    assert_eq!(renamed.title.as_deref(), Some("Trip plans"));
    let updated = client
        .threads()
        .update(&thread.id)
        .title("Trips")
        .await
        .unwrap();
    assert_eq!(updated.title.as_deref(), Some("Trips"));
    let pinned = client.threads().pin(&thread.id).await.unwrap();
    assert!(
        pinned.pinned_at.is_some(),
        "no `pinned` flips an unpinned thread"
    );
    let unpinned = client
        .threads()
        .pin(&thread.id)
        .pinned(false)
        .await
        .unwrap();
    assert!(unpinned.pinned_at.is_none());
    let tagged = client
        .threads()
        .set_tags(
            &thread.id,
            vec![" Travel ".to_owned(), "travel".to_owned(), "EU".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(tagged.tags, ["travel", "eu"]);

    // A fork keeps the history up to the message, inclusive.
    let fork = client
        .threads()
        .fork(&thread.id, &messages[1].id)
        .title("Branch")
        .await
        .unwrap();
    assert_eq!(fork.parent_thread_id.as_deref(), Some(thread.id.as_str()));
    let forked = client.threads().messages(&fork.id).await.unwrap();
    assert_eq!(forked.len(), 2);
    assert_eq!(forked[0].content, messages[0].content);

    // Edit-and-rerun rewrites the user message and drops what followed.
    let edited = client
        .threads()
        .edit_and_rerun(&thread.id, &messages[2].id)
        .content("second question, rephrased")
        .await
        .unwrap();
    assert_eq!(
        edited.content.as_deref(),
        Some("second question, rephrased")
    );
    let after = client.threads().messages(&thread.id).await.unwrap();
    assert_eq!(after.len(), 3);
    // Retry rewinds to before the assistant message.
    client
        .threads()
        .retry(&thread.id, &messages[1].id)
        .await
        .unwrap();
    assert_eq!(
        client.threads().messages(&thread.id).await.unwrap().len(),
        1
    );

    // Bad input is a typed refusal, not a panic.
    let empty = client
        .threads()
        .edit_and_rerun(&thread.id, &messages[0].id)
        .content("")
        .await;
    assert!(matches!(empty, Err(Error::Validation(_))), "{empty:?}");
    let missing = client
        .threads()
        .fork(&thread.id, "no-such-message")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("THREAD_MESSAGE_NOT_FOUND"));
    assert!(
        client
            .threads()
            .replies(&thread.id, &messages[0].id)
            .await
            .unwrap()
            .is_empty()
    );
    let counts = client
        .threads()
        .reply_counts(&thread.id, messages[0].id.clone())
        .await
        .unwrap();
    assert!(counts.is_empty());

    // Another end user cannot touch the thread.
    let stranger = session_client(&server, token_for(&server, "someone-else"));
    let refused = stranger
        .threads()
        .rename(&thread.id)
        .title("mine")
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::NotFound(_)), "{refused:?}");
}

#[tokio::test]
async fn memories_are_the_callers_own_and_refusals_in_200_are_errors() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let operator = operator_client(&server);

    let m = client
        .memory()
        .create("Prefers window seats")
        .kind("preference")
        .await
        .unwrap();
    assert_eq!(m.kind.as_deref(), Some("preference"));
    operator
        .memory()
        .create("Another user's secret")
        .user_id("other-user")
        .await
        .unwrap();

    let mine = client.memory().list().await.unwrap();
    assert_eq!(mine.len(), 1, "an end user sees only their own memories");
    // Naming another user does nothing for an end user (upstream's rule).
    assert_eq!(
        client
            .memory()
            .list()
            .user_id("other-user")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        operator
            .memory()
            .list()
            .user_id("other-user")
            .await
            .unwrap()
            .len(),
        1
    );

    let updated = client
        .memory()
        .update(&m.id)
        .content("Prefers aisle seats")
        .await
        .unwrap();
    assert_eq!(updated.content.as_deref(), Some("Prefers aisle seats"));
    let hits = client.memory().search("aisle").await.unwrap();
    assert_eq!(hits.hits.len(), 1);

    // The server answers these refusals with HTTP 200 {error, status}.
    let missing = client
        .memory()
        .update("no-such-memory")
        .content("x")
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing:?}");
    assert_eq!(missing.message(), "memory not found");
    let invalid = client.memory().create("  ").await.unwrap_err();
    assert!(matches!(invalid, Error::Validation(_)), "{invalid:?}");
    assert_eq!(
        invalid.validation_errors(),
        ["content must be a non-empty string"]
    );
    let no_query = client.memory().search("").await.unwrap_err();
    assert_eq!(no_query.status(), Some(400));

    assert!(client.memory().delete(&m.id).await.unwrap());
    assert!(!client.memory().delete(&m.id).await.unwrap());
    assert!(client.memory().list().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_server_mints_guest_and_entity_session_tokens() {
    let server = TestServer::start().await.unwrap();
    server.insert_agent(
        server.scope(),
        json!({"id": "ag_public", "name": "Widget", "visibility": "public-guest", "isActive": true}),
    );
    let client = user_client(&server);
    let guest = client.tokens().guest("ag_public").await.unwrap();
    assert!(
        guest
            .guest_id
            .as_deref()
            .is_some_and(|g| g.starts_with("guest-"))
    );
    // The guest token is a working credential.
    let as_guest = session_client(&server, guest.token.clone());
    assert!(as_guest.threads().list().await.unwrap().is_empty());
    let private = client.tokens().guest(SEED_AGENT_SUPPORT).await.unwrap_err();
    assert!(matches!(private, Error::NotFound(_)), "{private:?}");
    // The route reads no credential (`security: []` in the spec), so none
    // is sent: not a session client's token, not an api-key client's key or scope.
    operator_client(&server)
        .tokens()
        .guest("ag_public")
        .await
        .unwrap();
    let sent = server.recorder().requests_to("/guest-token");
    assert_eq!(sent.len(), 3);
    for r in &sent {
        for h in [
            "authorization",
            "x-platos-session-token",
            "x-platos-organization-id",
            "x-platos-user-id",
            "x-platos-user-token",
        ] {
            assert_eq!(r.header(h), None, "{h} sent to the guest route");
        }
    }

    let scope = server.scope();
    let request = SessionTokenRequest {
        organization_id: scope.organization_id.clone(),
        project_id: scope.project_id.clone(),
        environment_id: scope.environment_id.clone(),
        user_id: "u_from_server".into(),
        user_token: None,
        ttl_seconds: Some(120),
        agent_id: None,
        user_meta: None,
        claims: Default::default(),
    };
    let minted = operator_client(&server)
        .tokens()
        .session(server.entity_id(), request.clone())
        .await
        .unwrap();
    let as_user = session_client(&server, minted.token);
    assert!(as_user.threads().list().await.unwrap().is_empty());
    // Another entity's id is refused like a bad key.
    let refused = operator_client(&server)
        .tokens()
        .session("other_entity", request)
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Auth(_)), "{refused:?}");
}

async fn thread_of(client: &PlatosClient) -> String {
    client
        .threads()
        .create(SEED_AGENT_SUPPORT)
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn an_upload_streams_with_progress_and_arrives_intact() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let thread = thread_of(&client).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let seen = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let (s, c) = (seen.clone(), calls.clone());
    let up = client
        .attachments()
        .upload(
            SEED_AGENT_SUPPORT,
            &thread,
            UploadSource::bytes(data.clone()),
        )
        .mime_type("application/pdf")
        .filename("report.pdf")
        .on_progress(move |sent, total| {
            assert_eq!(total, 300_000);
            assert!(
                sent >= s.swap(sent, Ordering::SeqCst),
                "progress never goes back"
            );
            c.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    assert_eq!(up.bytes, 300_000);
    assert_eq!(seen.load(Ordering::SeqCst), 300_000);
    assert!(
        calls.load(Ordering::SeqCst) >= 4,
        "one report per 64 KiB chunk"
    );
    let att = up.attachment.unwrap();
    assert_eq!(att.kind.as_deref(), Some("document"));
    assert_eq!(att.original_name.as_deref(), Some("report.pdf"));
    assert_eq!(
        server.uploaded(&up.attachment_id),
        Some((300_000, fnv1a(&data)))
    );

    // A path source reads the file as it goes.
    let path = std::env::temp_dir().join(format!("platos-upload-{}.png", std::process::id()));
    std::fs::write(&path, &data[..1000]).unwrap();
    let up = client
        .attachments()
        .upload(SEED_AGENT_SUPPORT, &thread, UploadSource::path(&path))
        .mime_type("image/png")
        .await
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(up.attachment.unwrap().kind.as_deref(), Some("image"));
    assert_eq!(
        server.uploaded(&up.attachment_id),
        Some((1000, fnv1a(&data[..1000])))
    );
}

#[tokio::test]
async fn an_upload_fails_with_a_typed_error_for_each_way_it_can_fail() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let thread = thread_of(&client).await;
    let upload = |source| {
        client
            .attachments()
            .upload(SEED_AGENT_SUPPORT, &thread, source)
    };

    // A reader shorter than declared: nothing half-stored.
    let short = upload(UploadSource::reader(
        std::io::Cursor::new(vec![1u8; 100]),
        200,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        short.upload_failure(),
        Some(UploadFailure::LengthMismatch),
        "{short:?}"
    );
    // Longer than declared.
    let long = upload(UploadSource::reader(
        std::io::Cursor::new(vec![1u8; 300]),
        200,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        long.upload_failure(),
        Some(UploadFailure::LengthMismatch),
        "{long:?}"
    );

    // The storage refuses the URL (expired): 403.
    server.faults().fail_next_upload(UploadFault::Status(403));
    let expired = upload(UploadSource::bytes(vec![7u8; 64]))
        .await
        .unwrap_err();
    assert_eq!(
        expired.upload_failure(),
        Some(UploadFailure::UrlExpired),
        "{expired:?}"
    );
    assert_eq!(expired.status(), Some(403));

    // The service's 413: over its limit.
    server.set_max_attachment_bytes(1000);
    let big = upload(UploadSource::bytes(vec![7u8; 1001]))
        .await
        .unwrap_err();
    assert_eq!(
        big.upload_failure(),
        Some(UploadFailure::TooLarge),
        "{big:?}"
    );
    assert_eq!(
        (big.status(), big.code()),
        (Some(413), Some("ATTACHMENT_TOO_LARGE"))
    );

    // The thread must be the caller's and the agent's.
    let wrong = client
        .attachments()
        .upload("other-agent", &thread, UploadSource::bytes(vec![1u8]))
        .await
        .unwrap_err();
    assert_eq!(
        wrong.upload_failure(),
        Some(UploadFailure::ThreadNotFound),
        "{wrong:?}"
    );
    let bad_mime = upload(UploadSource::bytes(vec![1u8]))
        .mime_type("not a type")
        .await
        .unwrap_err();
    assert_eq!(
        bad_mime.upload_failure(),
        Some(UploadFailure::Invalid),
        "{bad_mime:?}"
    );

    // A presign answer without uploadUrl: nothing is sent anywhere.
    let presigned = |body| RestFault::new(200, body).path_contains("/attachments/presigned");
    server
        .faults()
        .fail_next_rest(presigned(json!({"attachmentId": "att_x", "maxBytes": 100})));
    let no_url = upload(UploadSource::bytes(vec![1u8; 10]))
        .await
        .unwrap_err();
    assert_eq!(
        no_url.upload_failure(),
        Some(UploadFailure::MissingUploadUrl),
        "{no_url:?}"
    );
    // Over the answer's maxBytes: refused before a byte goes to storage (a
    // PUT to this unreserved URL would have failed as StorageRefused, 404).
    let url = format!("{}/storage/uploads/att_x", server.base_url());
    server.faults().fail_next_rest(presigned(
        json!({"attachmentId": "att_x", "uploadUrl": url, "maxBytes": 5, "headers": {}}),
    ));
    let over = upload(UploadSource::bytes(vec![1u8; 10]))
        .await
        .unwrap_err();
    assert_eq!(
        over.upload_failure(),
        Some(UploadFailure::TooLarge),
        "{over:?}"
    );
    assert_eq!(over.status(), None, "the client refused it, not a server");

    // A network failure mid-PUT is retried once with the source read again.
    server.set_max_attachment_bytes(20 * 1024 * 1024);
    server.faults().fail_next_upload(UploadFault::Reset);
    let data = vec![9u8; 200_000];
    let up = upload(UploadSource::bytes(data.clone())).await.unwrap();
    assert_eq!(
        server.uploaded(&up.attachment_id),
        Some((200_000, fnv1a(&data)))
    );
    // A reader cannot be read again: its failure is reported.
    server.faults().fail_next_upload(UploadFault::Reset);
    let once = upload(UploadSource::reader(
        std::io::Cursor::new(data.clone()),
        200_000,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        once.upload_failure(),
        Some(UploadFailure::Network),
        "{once:?}"
    );
}

#[tokio::test]
async fn extract_archive_and_restore_act_on_the_callers_own_memories() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let other = session_client(&server, token_for(&server, "other-user"));
    let thread = client.threads().create(SEED_AGENT_SUPPORT).await.unwrap();
    client
        .threads()
        .ask(&thread.id, "I live in Lisbon")
        .await
        .unwrap();

    let first = client.memory().extract(&thread.id).await.unwrap();
    assert_eq!(first.memories_created, Some(1));
    let again = client.memory().extract(&thread.id).await.unwrap();
    assert_eq!(
        (again.memories_created, again.skipped),
        (Some(0), Some(1)),
        "a second run adds nothing new"
    );
    // Another end user cannot extract from this thread: a 404 in an HTTP 200.
    let refused = other.memory().extract(&thread.id).await.unwrap_err();
    assert!(matches!(refused, Error::NotFound(_)), "{refused:?}");
    let missing = client.memory().extract("  ").await.unwrap_err();
    assert!(matches!(missing, Error::Validation(_)), "{missing:?}");

    let listed = client.memory().list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let id = listed[0].id.clone();
    assert_eq!(listed[0].content.as_deref(), Some("I live in Lisbon"));
    assert_eq!(listed[0].source.as_deref(), Some("extracted"));

    // Another user's archive finds nothing of theirs to archive.
    assert!(!other.memory().archive(&id).await.unwrap().ok);
    let archived = client.memory().archive(&id).await.unwrap();
    assert!(archived.ok && archived.archived_at.is_some());
    assert!(
        client.memory().list().await.unwrap().is_empty(),
        "an archived memory leaves the list"
    );
    assert!(!client.memory().archive(&id).await.unwrap().ok, "once");
    let restored = client.memory().restore(&id).await.unwrap();
    assert!(restored.ok);
    let memory = restored.memory.expect("the restored memory");
    assert_eq!(memory.id, id);
    // `archivedAt` is not a named field of the 1.0 `Memory`: it is kept in `extra`.
    assert!(
        memory
            .extra
            .get("archivedAt")
            .is_none_or(serde_json::Value::is_null),
        "{memory:?}"
    );
    assert_eq!(client.memory().list().await.unwrap().len(), 1);
    assert!(
        !client.memory().restore(&id).await.unwrap().ok,
        "not archived"
    );
}

#[tokio::test]
async fn the_knowledge_graph_relates_walks_and_round_trips_through_export() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let operator = operator_client(&server);
    let other = session_client(&server, token_for(&server, "other-user"));

    let works = client
        .memory()
        .relate()
        .from_entity_key("alice")
        .from_label("Alice")
        .from_entity_type("person")
        .to_entity_key("acme")
        .relationship_type("works_at")
        .await
        .unwrap();
    let based = client
        .memory()
        .relate()
        .from_entity_key("acme")
        .to_entity_key("lisbon")
        .relationship_type("based_in")
        .await
        .unwrap();
    assert_eq!(
        works.to_entity_id, based.from_entity_id,
        "one entity per key"
    );
    let missing = client
        .memory()
        .relate()
        .from_entity_key("alice")
        .relationship_type("knows")
        .await
        .unwrap_err();
    // A required field left unset is refused before anything is sent.
    assert!(matches!(missing, Error::Config(_)), "{missing:?}");

    let entities = client.memory().graph_entities().await.unwrap();
    assert_eq!(entities.len(), 3);
    let people = client
        .memory()
        .graph_entities()
        .entity_type("person")
        .await
        .unwrap();
    assert_eq!(people.len(), 1);
    assert_eq!(people[0].label.as_deref(), Some("Alice"));
    assert!(other.memory().graph_entities().await.unwrap().is_empty());

    let acme = client
        .memory()
        .graph_relationships(&works.to_entity_id)
        .await
        .unwrap();
    assert_eq!(acme.entity.entity_key.as_deref(), Some("acme"));
    assert_eq!((acme.outbound.len(), acme.inbound.len()), (1, 1));
    let from = acme.inbound[0].from.as_ref().expect("the other end");
    assert_eq!(from.entity_key.as_deref(), Some("alice"));
    // Another user's entity is a 404 in an HTTP 200: not found.
    let hidden = other
        .memory()
        .graph_relationships(&works.to_entity_id)
        .await
        .unwrap_err();
    assert!(matches!(hidden, Error::NotFound(_)), "{hidden:?}");

    let path = client
        .memory()
        .graph_path(&works.from_entity_id, &based.to_entity_id)
        .await
        .unwrap()
        .path
        .expect("a path");
    let keys: Vec<_> = path
        .iter()
        .map(|hop| hop.entity.entity_key.clone().unwrap_or_default())
        .collect();
    assert_eq!(keys, ["alice", "acme", "lisbon"]);
    assert_eq!(path[1].direction.as_deref(), Some("out"));
    let short = client
        .memory()
        .graph_path(&works.from_entity_id, &based.to_entity_id)
        .max_hops(1)
        .await
        .unwrap();
    assert_eq!(short.path, None, "not within one hop");

    // Export, then import into another user: the bundle lands with its importer.
    client.memory().create("Prefers tea").await.unwrap();
    let bundle = client.memory().export().await.unwrap();
    assert_eq!(bundle.memories.len(), 1);
    assert_eq!(bundle.entities.len(), 3);
    assert_eq!(bundle.relationships.len(), 2);
    let imported = other.memory().import(bundle.clone()).await.unwrap();
    assert_eq!(
        (
            imported.memories_imported,
            imported.entities_imported,
            imported.relationships_imported
        ),
        (Some(1), Some(3), Some(2))
    );
    assert_eq!(other.memory().list().await.unwrap().len(), 1);
    assert_eq!(other.memory().graph_entities().await.unwrap().len(), 3);
    let replaced = other.memory().import(bundle).mode("replace").await.unwrap();
    assert_eq!(replaced.memories_deleted, Some(1));
    assert_eq!(other.memory().list().await.unwrap().len(), 1);
    assert_eq!(client.memory().list().await.unwrap().len(), 1, "untouched");
    // An operator may export any user's memories; an end user only their own.
    let theirs = operator
        .memory()
        .export()
        .user_id("other-user")
        .await
        .unwrap();
    assert_eq!(theirs.user_id.as_deref(), Some("other-user"));
    let forged = client
        .memory()
        .export()
        .user_id("other-user")
        .await
        .unwrap();
    assert_eq!(forged.user_id.as_deref(), Some(server.user_id()));
}

#[tokio::test]
async fn a_durable_approval_is_resolved_by_its_waitpoint_token() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    server.open_waitpoint("wp_refund");

    let done = client
        .approvals()
        .resolve_durable(
            "wp_refund",
            platos_client::Decision::approve().with_comment("fine"),
        )
        .await
        .unwrap();
    assert!(done.resolved);
    assert_eq!(
        (done.token.as_deref(), done.approved),
        (Some("wp_refund"), Some(true))
    );
    let decision = server.waitpoint("wp_refund").expect("completed");
    assert_eq!(
        (
            &decision["approved"],
            &decision["comment"],
            &decision["respondedBy"]
        ),
        (&json!(true), &json!("fine"), &json!(server.user_id()))
    );

    // The engine refuses a completed or unknown waitpoint in an HTTP 200
    // `{resolved: false, error}`: an error, not a receipt.
    for token in ["wp_refund", "wp_unknown"] {
        let refused = client
            .approvals()
            .resolve_durable(token, platos_client::Decision::reject())
            .await
            .unwrap_err();
        assert!(matches!(refused, Error::Validation(_)), "{refused:?}");
    }
    assert_eq!(
        server.waitpoint("wp_refund").unwrap()["approved"],
        json!(true),
        "the first decision stands"
    );

    // A server without a durable engine answers 503.
    server.disable_durable_approvals();
    server.open_waitpoint("wp_later");
    let unavailable = client
        .approvals()
        .resolve_durable("wp_later", platos_client::Decision::approve())
        .await
        .unwrap_err();
    assert_eq!(unavailable.status(), Some(503), "{unavailable:?}");
    assert_eq!(server.waitpoint("wp_later"), None);
}

#[tokio::test]
async fn a_threads_cost_is_its_owners_to_read() {
    let server = TestServer::start().await.unwrap();
    let client = user_client(&server);
    let other = session_client(&server, token_for(&server, "other-user"));
    let thread = client.threads().create(SEED_AGENT_SUPPORT).await.unwrap();
    let empty = client.monitoring().cost_thread(&thread.id).await.unwrap();
    assert_eq!((empty.tasks, empty.input_tokens), (Some(0), Some(0)));
    client.threads().ask(&thread.id, "hello").await.unwrap();
    let cost = client.monitoring().cost_thread(&thread.id).await.unwrap();
    assert_eq!(cost.tasks, Some(1));
    assert!(cost.input_tokens.unwrap_or(0) > 0 && cost.cost_cents.unwrap_or(0.0) > 0.0);
    let hidden = other
        .monitoring()
        .cost_thread(&thread.id)
        .await
        .unwrap_err();
    assert!(matches!(hidden, Error::NotFound(_)), "{hidden:?}");
}

#[tokio::test]
async fn public_write_routes_get_a_finite_length_and_refuse_a_chunked_body() {
    let server = TestServer::start().await.unwrap();
    server.insert_agent(
        server.scope(),
        json!({"id": "ag_public", "name": "Widget", "visibility": "public-guest", "isActive": true}),
    );
    let client = user_client(&server);
    client.tokens().guest("ag_public").await.unwrap();
    let scope = server.scope();
    let mut request = SessionTokenRequest {
        organization_id: scope.organization_id.clone(),
        project_id: scope.project_id.clone(),
        environment_id: scope.environment_id.clone(),
        user_id: "u_capped".into(),
        user_token: None,
        ttl_seconds: None,
        agent_id: None,
        user_meta: None,
        claims: Default::default(),
    };
    operator_client(&server)
        .tokens()
        .session(server.entity_id(), request.clone())
        .await
        .unwrap();
    // Both calls went out with the exact length of what they sent.
    for suffix in ["/guest-token", "/session-tokens"] {
        let sent = server.recorder().requests_to(suffix);
        let [one] = sent.as_slice() else {
            panic!("one call to {suffix}: {sent:?}");
        };
        assert_eq!(
            one.header("content-length"),
            Some(one.body.len().to_string().as_str()),
            "{suffix}"
        );
    }

    // A body of unknown length (chunked) is refused before it is read.
    let chunks = futures::stream::iter(
        [&br#"{"agentId":"#[..], &br#""ag_public"}"#[..]]
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from_static(c))),
    );
    let chunked = reqwest::Client::new()
        .post(format!("{}/api/v1/public/guest-token", server.base_url()))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status().as_u16(), 413);
    assert_eq!(
        chunked.json::<serde_json::Value>().await.unwrap(),
        json!({"error": "payload_too_large", "limit": 262_144})
    );

    // The same refusal through the SDK (a body over the cap) is typed.
    request
        .claims
        .insert("blob".into(), json!("x".repeat(300 * 1024)));
    let refused = operator_client(&server)
        .tokens()
        .session(server.entity_id(), request)
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Refused(_)), "{refused:?}");
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(413), Some("payload_too_large"))
    );
}
