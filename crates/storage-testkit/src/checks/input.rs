//! Hostile and invalid input: rejected before any I/O, or stored verbatim and isolated.

use serde_json::json;
use storage_core::ext::TaskContextStoreExt;
use storage_core::{
    CheckpointKey, CheckpointQuery, ContextScope, ErrorKind, ExpectedVersion, MessageRange,
    NewArtifact, NewMessage, NewSession, SessionQuery, SessionUpdate, StorageBackend,
};

use crate::data::{assert_kind, checkpoint, HOSTILE_IDS};
use crate::TestContext;

/// Calls every operation that takes an id with `id`, expecting `InvalidInput` from each.
async fn every_operation_rejects(b: &dyn StorageBackend, id: &str) {
    let bad = ErrorKind::InvalidInput;
    assert_kind(b.create_session(NewSession::new(id, "u")).await, bad);
    assert_kind(b.create_session(NewSession::new("ok", id)).await, bad);
    assert_kind(b.get_session(id).await, bad);
    assert_kind(
        b.get_sessions(&["ok".to_string(), id.to_string()]).await,
        bad,
    );
    assert_kind(b.update_session(id, SessionUpdate::default()).await, bad);
    assert_kind(
        b.end_session(id, storage_core::SessionStatus::Completed)
            .await,
        bad,
    );
    assert_kind(b.delete_session(id).await, bad);
    let by_user = SessionQuery {
        user_id: Some(id.to_string()),
        ..SessionQuery::default()
    };
    assert_kind(b.list_sessions(by_user).await, bad);
    assert_kind(
        b.append_message(id, NewMessage::new("user", "x")).await,
        bad,
    );
    assert_kind(
        b.append_message("ok", NewMessage::new("user", "x").with_client_id(id))
            .await,
        bad,
    );
    assert_kind(
        b.append_messages(id, vec![NewMessage::new("user", "x")])
            .await,
        bad,
    );
    assert_kind(b.get_conversation_history(id, 5).await, bad);
    assert_kind(b.get_messages(id, MessageRange::last(5)).await, bad);
    assert_kind(b.pop_last_message(id).await, bad);
    assert_kind(b.clear_conversation(id).await, bad);
    let cp = checkpoint(id, "", "cp", &[]);
    assert_kind(b.put_checkpoint(cp, Default::default()).await, bad);
    let cp = checkpoint("t", "", id, &[]);
    assert_kind(b.put_checkpoint(cp, Default::default()).await, bad);
    assert_kind(b.get_checkpoint(id, "", None).await, bad);
    assert_kind(b.get_checkpoint("t", "", Some(id)).await, bad);
    assert_kind(b.list_checkpoints(CheckpointQuery::thread(id)).await, bad);
    assert_kind(
        b.put_writes(CheckpointKey::new(id, "cp"), "task", "", vec![])
            .await,
        bad,
    );
    assert_kind(
        b.put_writes(CheckpointKey::new("t", "cp"), id, "", vec![])
            .await,
        bad,
    );
    assert_kind(b.get_writes(CheckpointKey::new("t", id)).await, bad);
    assert_kind(b.delete_thread(id).await, bad);
    assert_kind(b.prune_checkpoints(id, 1).await, bad);
    assert_kind(b.copy_thread(id, "t2").await, bad);
    assert_kind(b.copy_thread("t", id).await, bad);
    assert_kind(b.delete_for_runs(&[id.to_string()]).await, bad);
    assert_kind(b.get_task_context(id).await, bad);
    assert_kind(
        b.store_task_context(id, json!(1), ExpectedVersion::Any)
            .await,
        bad,
    );
    assert_kind(b.delete_task_context(id).await, bad);
    assert_kind(
        b.save_artifact(id, "a", NewArtifact::new("text/plain", "x"))
            .await,
        bad,
    );
    assert_kind(
        b.save_artifact("s", id, NewArtifact::new("text/plain", "x"))
            .await,
        bad,
    );
    assert_kind(b.get_artifact(id, "a", None).await, bad);
    assert_kind(b.get_artifact_meta("s", id, None).await, bad);
    assert_kind(b.artifact_exists(id, "a", None).await, bad);
    assert_kind(b.list_artifacts(id).await, bad);
    assert_kind(b.list_artifact_versions("s", id).await, bad);
    assert_kind(b.delete_artifact(id, "a", None).await, bad);
    assert_kind(b.clear_artifacts(id).await, bad);
}

/// An empty id is `InvalidInput` for every operation.
pub async fn empty_ids_are_rejected(ctx: TestContext) {
    every_operation_rejects(ctx.backend.as_ref(), "").await;
}

/// An id of 257 bytes is `InvalidInput` everywhere; 256 bytes is stored and read back.
pub async fn id_length_limit_is_256_bytes(ctx: TestContext) {
    every_operation_rejects(ctx.backend.as_ref(), &"x".repeat(257)).await;
    let longest = "é".repeat(128);
    assert_eq!(longest.len(), 256);
    let b = &ctx.backend;
    b.create_session(NewSession::new(longest.clone(), longest.clone()))
        .await
        .unwrap();
    assert_eq!(
        b.get_session(&longest).await.unwrap().unwrap().user_id,
        longest
    );
    b.append_message(
        &longest,
        NewMessage::new("user", "x").with_client_id(longest.clone()),
    )
    .await
    .unwrap();
    b.save_artifact(&longest, &longest, NewArtifact::new("text/plain", "x"))
        .await
        .unwrap();
    assert_eq!(
        b.list_artifacts(&longest).await.unwrap(),
        vec![longest.clone()]
    );
    let cp = checkpoint(&longest, &longest, &longest, &[]);
    b.put_checkpoint(cp, Default::default()).await.unwrap();
    assert!(b
        .get_checkpoint(&longest, &longest, None)
        .await
        .unwrap()
        .is_some());
}

/// Control characters (NUL, newline, escape, DEL) are `InvalidInput` everywhere.
pub async fn control_characters_are_rejected(ctx: TestContext) {
    for id in ["a\0b", "line\nbreak", "\u{1b}[31m", "del\u{7f}"] {
        every_operation_rejects(ctx.backend.as_ref(), id).await;
    }
}

/// Rejected input leaves stored data as it was.
pub async fn rejected_input_changes_nothing(ctx: TestContext) {
    let b = &ctx.backend;
    let session = b.create_session(NewSession::new("s1", "u1")).await.unwrap();
    b.append_message("s1", NewMessage::new("user", "kept"))
        .await
        .unwrap();
    let bad_batch = vec![
        NewMessage::new("user", "a"),
        NewMessage::new("user", "b").with_client_id(""),
    ];
    assert_kind(
        b.append_messages("s1", bad_batch).await,
        ErrorKind::InvalidInput,
    );
    let bad_update = SessionUpdate::default().request(1);
    assert_kind(
        b.update_session("", bad_update).await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(b.get_session("s1").await.unwrap(), Some(session));
    assert_eq!(b.get_conversation_history("s1", 10).await.unwrap().len(), 1);
}

/// Hostile session ids are stored verbatim; each reaches only its own session,
/// conversation and context, and deleting one deletes no other.
pub async fn hostile_session_ids_are_isolated(ctx: TestContext) {
    let b = &ctx.backend;
    for id in HOSTILE_IDS {
        b.create_session(NewSession::new(*id, *id)).await.unwrap();
        b.append_message(id, NewMessage::new("user", *id).with_client_id(*id))
            .await
            .unwrap();
        b.store_task_context(id, json!(id), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    for id in HOSTILE_IDS {
        let session = b.get_session(id).await.unwrap().unwrap();
        assert_eq!((session.id.as_str(), session.user_id.as_str()), (*id, *id));
        let history = b.get_conversation_history(id, 10).await.unwrap();
        assert_eq!(history.len(), 1, "conversation of {id:?}");
        assert_eq!(history[0].content, json!(id));
        assert_eq!(
            b.get_task_context(id).await.unwrap().unwrap().value,
            json!(id)
        );
        let own = SessionQuery {
            user_id: Some(id.to_string()),
            ..SessionQuery::default()
        };
        let listed = b.list_sessions(own).await.unwrap();
        assert_eq!(
            listed.items.len(),
            1,
            "user {id:?} lists only its own session"
        );
    }
    let all = SessionQuery {
        limit: 1000,
        ..SessionQuery::default()
    };
    assert_eq!(
        b.list_sessions(all).await.unwrap().items.len(),
        HOSTILE_IDS.len()
    );
    assert!(b.delete_session("*").await.unwrap());
    assert!(b.delete_session("%").await.unwrap());
    for id in HOSTILE_IDS.iter().filter(|id| !["*", "%"].contains(id)) {
        assert!(
            b.get_session(id).await.unwrap().is_some(),
            "{id:?} survives deleting * and %"
        );
        assert_eq!(b.get_conversation_history(id, 10).await.unwrap().len(), 1);
        assert!(b.get_task_context(id).await.unwrap().is_some());
    }
}

/// Hostile thread ids, namespaces and checkpoint ids are isolated.
pub async fn hostile_thread_ids_are_isolated(ctx: TestContext) {
    let b = &ctx.backend;
    for (n, id) in HOSTILE_IDS.iter().enumerate() {
        let cp = checkpoint(id, id, id, &[("ch", id, json!(n))]);
        let new = cp.all_versions();
        b.put_checkpoint(cp, new).await.unwrap();
        b.put_writes(
            CheckpointKey::new(*id, *id).in_namespace(*id),
            id,
            id,
            vec![((*id).into(), json!(n).into())],
        )
        .await
        .unwrap();
    }
    for (n, id) in HOSTILE_IDS.iter().enumerate() {
        let tuple = b.get_checkpoint(id, id, None).await.unwrap().unwrap();
        assert_eq!(tuple.checkpoint.id, *id);
        assert_eq!(tuple.checkpoint.channel_values["ch"], json!(n).into());
        assert_eq!(tuple.pending_writes.len(), 1, "writes of {id:?}");
        let all = CheckpointQuery {
            namespace: None,
            ..CheckpointQuery::thread(*id)
        };
        assert_eq!(
            b.list_checkpoints(all).await.unwrap().len(),
            1,
            "thread {id:?}"
        );
        assert_eq!(b.get_checkpoint(id, "", None).await.unwrap(), None);
    }
    assert_eq!(b.delete_thread("*").await.unwrap(), 1);
    assert_eq!(b.delete_thread("%").await.unwrap(), 1);
    for id in HOSTILE_IDS.iter().filter(|id| !["*", "%"].contains(id)) {
        assert!(
            b.get_checkpoint(id, id, None).await.unwrap().is_some(),
            "{id:?} survives"
        );
    }
}

/// Hostile scopes and names are isolated; clearing `*` or `%` clears only that scope.
pub async fn hostile_artifact_scopes_are_isolated(ctx: TestContext) {
    let b = &ctx.backend;
    for id in HOSTILE_IDS {
        b.save_artifact(
            id,
            id,
            NewArtifact::new("text/plain", id.as_bytes().to_vec()),
        )
        .await
        .unwrap();
    }
    for id in HOSTILE_IDS {
        assert_eq!(
            b.list_artifacts(id).await.unwrap(),
            [id.to_string()],
            "scope {id:?}"
        );
        let artifact = b.get_artifact(id, id, None).await.unwrap().unwrap();
        assert_eq!(artifact.data, id.as_bytes());
    }
    assert_eq!(b.clear_artifacts("*").await.unwrap(), 1);
    assert_eq!(b.clear_artifacts("%").await.unwrap(), 1);
    assert_eq!(b.clear_artifacts("..").await.unwrap(), 1);
    for id in HOSTILE_IDS
        .iter()
        .filter(|id| !["*", "%", ".."].contains(id))
    {
        assert!(
            b.artifact_exists(id, id, None).await.unwrap(),
            "{id:?} survives"
        );
    }
}

/// Ids of `len - 1`, `len` and `len + 1` bytes, each extending the one before: `stem`
/// repeated, then a `z`.
fn extending_family(stem: char, len: usize) -> [String; 3] {
    let full: String = std::iter::repeat_n(stem, len).collect();
    [
        full[..len - 1].to_string(),
        full.clone(),
        format!("{full}z"),
    ]
}

/// Ids that extend one another, at the lengths where the object backend's encoded id fills
/// a key segment (63, 126, 189 and 252 bytes) and one byte either side, are distinct
/// records whichever is stored first: checkpoint ids (with their run markers and pending
/// writes), channel versions, client message ids, session ids and artifact names each read
/// back their own data and list once, and removing one removes no other.
pub async fn ids_extending_one_another_are_distinct(ctx: TestContext) {
    let b = &ctx.backend;
    for len in [63, 126, 189, 252] {
        let ascending = extending_family('a', len);
        let descending: Vec<String> = ascending.iter().rev().cloned().collect();
        for (order, ids) in [("up", ascending.to_vec()), ("down", descending)] {
            let thread = format!("t{len}{order}");
            for id in &ids {
                let mut cp = checkpoint(&thread, "", id, &[("ch", id, json!(id))]);
                cp.metadata = crate::data::obj(json!({ "run_id": id }));
                let new = cp.all_versions();
                b.put_checkpoint(cp, new).await.unwrap();
                let key = CheckpointKey::new(&thread, id);
                b.put_writes(key, id, "", vec![("w".into(), json!(id).into())])
                    .await
                    .unwrap();
                b.create_session(NewSession::new(id, id)).await.unwrap();
                b.append_message(
                    &thread,
                    NewMessage::new("user", id.as_str()).with_client_id(id),
                )
                .await
                .unwrap();
                b.save_artifact(&thread, id, NewArtifact::new("text/plain", id.clone()))
                    .await
                    .unwrap();
            }
            let newest_first: Vec<String> = ascending.iter().rev().cloned().collect();
            let listed = b
                .list_checkpoints(CheckpointQuery::thread(&thread))
                .await
                .unwrap();
            let listed: Vec<String> = listed.into_iter().map(|t| t.checkpoint.id).collect();
            assert_eq!(listed, newest_first, "{len} bytes, stored {order}");
            for id in &ids {
                let tuple = b
                    .get_checkpoint(&thread, "", Some(id))
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("checkpoint of {} bytes", id.len()));
                assert_eq!(tuple.checkpoint.channel_versions["ch"], *id);
                assert_eq!(tuple.checkpoint.channel_values["ch"], json!(id).into());
                assert_eq!(
                    tuple.pending_writes.len(),
                    1,
                    "writes of {} bytes",
                    id.len()
                );
                assert_eq!(tuple.pending_writes[0].task_id, *id);
                let session = b.get_session(id).await.unwrap().unwrap();
                assert_eq!(session.user_id, *id);
                let artifact = b.get_artifact(&thread, id, None).await.unwrap().unwrap();
                assert_eq!(artifact.data, id.as_bytes());
                let replay = NewMessage::new("user", "again").with_client_id(id);
                let stored = b.append_message(&thread, replay).await.unwrap();
                assert_eq!(stored.content, json!(id), "client id of {} bytes", id.len());
            }
            assert_eq!(
                b.get_conversation_history(&thread, 10).await.unwrap().len(),
                3
            );
            let mut names = b.list_artifacts(&thread).await.unwrap();
            names.sort();
            assert_eq!(names, ascending);

            let middle = &ascending[1];
            assert_eq!(
                b.delete_for_runs(std::slice::from_ref(middle))
                    .await
                    .unwrap(),
                1
            );
            assert!(b.delete_session(middle).await.unwrap());
            assert_eq!(b.delete_artifact(&thread, middle, None).await.unwrap(), 1);
            for id in [&ascending[0], &ascending[2]] {
                let tuple = b.get_checkpoint(&thread, "", Some(id)).await.unwrap();
                let tuple = tuple.unwrap_or_else(|| panic!("{} bytes survive", id.len()));
                assert_eq!(tuple.checkpoint.channel_values["ch"], json!(id).into());
                assert_eq!(tuple.pending_writes.len(), 1);
                assert!(b.get_session(id).await.unwrap().is_some());
                assert!(b.artifact_exists(&thread, id, None).await.unwrap());
            }
            assert_eq!(
                b.get_checkpoint(&thread, "", Some(middle)).await.unwrap(),
                None
            );
            assert_eq!(b.get_session(middle).await.unwrap(), None);
            assert!(!b.artifact_exists(&thread, middle, None).await.unwrap());
            // The same session ids are created again in the next order.
            assert!(b.delete_session(&ascending[0]).await.unwrap());
            assert!(b.delete_session(&ascending[2]).await.unwrap());
        }
    }
}

/// Series keyed by ids that extend one another (lengths as in
/// [`ids_extending_one_another_are_distinct`]) are distinct whichever is written first:
/// session and user context scopes with their versions, compacted conversations with the
/// messages they kept, checkpoint threads and namespaces, artifact scopes. Each reads back
/// its own; enumerations list each once; removing one series leaves the others whole.
pub async fn series_of_ids_extending_one_another_are_distinct(ctx: TestContext) {
    let b = &ctx.backend;
    let mut expected_scopes = Vec::new();
    for (stem, len) in [('b', 63), ('c', 126), ('d', 189), ('e', 252)] {
        let family = extending_family(stem, len);
        // The full id first, then the one that extends it, then the one it extends.
        for id in [&family[1], &family[2], &family[0]] {
            for _ in 0..2 {
                let scope = ContextScope::session(id);
                b.store_context(scope, json!(id), ExpectedVersion::Any, 5)
                    .await
                    .unwrap();
            }
            let user = ContextScope::user(id);
            b.store_context(user, json!(id), ExpectedVersion::Any, 5)
                .await
                .unwrap();
            let messages = (1..=3)
                .map(|n| NewMessage::new("user", format!("{id}-{n}")))
                .collect();
            b.append_messages(id, messages).await.unwrap();
            let summary = NewMessage::new("system", format!("{id}-summary"));
            b.compact_conversation(id, 2, summary, true).await.unwrap();
            for ns in ["", id.as_str()] {
                let cp = checkpoint(id, ns, "cp", &[("ch", "1", json!([id, ns]))]);
                let new = cp.all_versions();
                b.put_checkpoint(cp, new).await.unwrap();
            }
            b.save_artifact(id, "n", NewArtifact::new("text/plain", id.clone()))
                .await
                .unwrap();
        }
        let check = |id: String| async move {
            let session = b.get_context(ContextScope::session(&id), None).await;
            let session = session.unwrap().unwrap();
            assert_eq!((session.value, session.version), (json!(id), 2));
            let versions = b
                .list_context_versions(ContextScope::session(&id), None, 10)
                .await
                .unwrap();
            assert_eq!(versions.len(), 2, "versions of {} bytes", id.len());
            let user = b.get_context(ContextScope::user(&id), None).await;
            assert_eq!(user.unwrap().unwrap().version, 1);
            let history = b.get_conversation_history(&id, 10).await.unwrap();
            let contents: Vec<_> = history.iter().map(|m| m.content.clone()).collect();
            assert_eq!(
                contents,
                [json!(format!("{id}-summary")), json!(format!("{id}-3"))]
            );
            let replaced = b
                .get_replaced_messages(&id, history[0].sequence)
                .await
                .unwrap();
            assert_eq!(replaced.len(), 2, "kept messages of {} bytes", id.len());
            assert_eq!(replaced[0].content, json!(format!("{id}-1")));
            for ns in ["", id.as_str()] {
                let tuple = b.get_checkpoint(&id, ns, None).await.unwrap().unwrap();
                assert_eq!(
                    tuple.checkpoint.channel_values["ch"],
                    json!([id, ns]).into()
                );
            }
            let all = CheckpointQuery {
                namespace: None,
                ..CheckpointQuery::thread(&id)
            };
            assert_eq!(b.list_checkpoints(all).await.unwrap().len(), 2);
            assert_eq!(b.list_artifacts(&id).await.unwrap(), ["n"]);
            let artifact = b.get_artifact(&id, "n", None).await.unwrap().unwrap();
            assert_eq!(artifact.data, id.as_bytes());
        };
        for id in &family {
            check(id.clone()).await;
        }

        let middle = &family[1];
        assert!(b
            .delete_context(ContextScope::session(middle))
            .await
            .unwrap());
        assert!(b.delete_context(ContextScope::user(middle)).await.unwrap());
        assert_eq!(b.clear_conversation(middle).await.unwrap(), 2);
        assert_eq!(b.delete_thread(middle).await.unwrap(), 2);
        assert_eq!(b.clear_artifacts(middle).await.unwrap(), 1);
        for id in [&family[0], &family[2]] {
            check(id.clone()).await;
        }
        let middle_scope = ContextScope::session(middle);
        assert_eq!(b.get_context(middle_scope, None).await.unwrap(), None);
        assert!(b
            .get_conversation_history(middle, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(b.get_checkpoint(middle, "", None).await.unwrap(), None);
        assert!(b.list_artifacts(middle).await.unwrap().is_empty());
        for id in [&family[0], &family[2]] {
            expected_scopes.push(ContextScope::session(id));
            expected_scopes.push(ContextScope::user(id));
        }
    }
    expected_scopes.sort_by_key(ContextScope::key);
    let scopes = b.list_context_scopes(None, 100).await.unwrap();
    assert_eq!(scopes, expected_scopes);
}
