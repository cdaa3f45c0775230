//! Artifacts: versions, digests, listing, deletion, scopes, streaming.

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::json;
use storage_core::artifact::sha256_hex;
use storage_core::ext::ArtifactStoreExt;
use storage_core::{ByteStream, ErrorKind, NewArtifact};

use crate::data::{assert_kind, obj};
use crate::TestContext;

fn text(body: &str) -> NewArtifact {
    NewArtifact::new("text/plain", body.as_bytes().to_vec())
}

fn versions_of(metas: &[storage_core::ArtifactMeta]) -> Vec<u64> {
    metas.iter().map(|m| m.version).collect()
}

/// A saved artifact reads back with its content type, size, digest and metadata.
pub async fn save_then_get(ctx: TestContext) {
    let b = &ctx.backend;
    let artifact = text("hello").with_metadata(obj(json!({"author": "agent"})));
    let meta = b
        .save_artifact("run1", "report.txt", artifact)
        .await
        .unwrap();
    assert_eq!(
        (meta.scope.as_str(), meta.name.as_str(), meta.version),
        ("run1", "report.txt", 0)
    );
    assert_eq!((meta.content_type.as_str(), meta.size), ("text/plain", 5));
    assert_eq!(meta.sha256, sha256_hex(b"hello"));
    assert_eq!(meta.metadata, obj(json!({"author": "agent"})));
    let read = b
        .get_artifact("run1", "report.txt", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.data, Bytes::from_static(b"hello"));
    assert_eq!(read.meta, meta);
    assert_eq!(
        b.get_artifact_meta("run1", "report.txt", None)
            .await
            .unwrap(),
        Some(meta)
    );
}

/// Every save is a new version from 0; get takes a version, the default is the latest.
pub async fn versions_count_from_zero(ctx: TestContext) {
    let b = &ctx.backend;
    for i in 0..3 {
        let meta = b
            .save_artifact("run1", "a", text(&format!("v{i}")))
            .await
            .unwrap();
        assert_eq!(meta.version, i);
    }
    let latest = b.get_artifact("run1", "a", None).await.unwrap().unwrap();
    assert_eq!(
        (latest.meta.version, latest.data),
        (2, Bytes::from_static(b"v2"))
    );
    let first = b.get_artifact("run1", "a", Some(0)).await.unwrap().unwrap();
    assert_eq!(first.data, Bytes::from_static(b"v0"));
    assert_eq!(b.get_artifact("run1", "a", Some(3)).await.unwrap(), None);
    assert_eq!(b.get_artifact("run1", "missing", None).await.unwrap(), None);
    assert_eq!(
        b.get_artifact_meta("run1", "missing", Some(0))
            .await
            .unwrap(),
        None
    );
}

/// Existence by name and by version.
pub async fn exists_by_name_and_version(ctx: TestContext) {
    let b = &ctx.backend;
    assert!(!b.artifact_exists("run1", "a", None).await.unwrap());
    b.save_artifact("run1", "a", text("x")).await.unwrap();
    assert!(b.artifact_exists("run1", "a", None).await.unwrap());
    assert!(b.artifact_exists("run1", "a", Some(0)).await.unwrap());
    assert!(!b.artifact_exists("run1", "a", Some(1)).await.unwrap());
    assert!(!b.artifact_exists("run2", "a", None).await.unwrap());
}

/// Names list sorted; versions list oldest first with their metadata.
pub async fn list_names_and_versions(ctx: TestContext) {
    let b = &ctx.backend;
    for name in ["zeta", "alpha", "mid/dle", "alpha"] {
        b.save_artifact("run1", name, text(name)).await.unwrap();
    }
    assert_eq!(
        b.list_artifacts("run1").await.unwrap(),
        ["alpha", "mid/dle", "zeta"]
    );
    let versions = b.list_artifact_versions("run1", "alpha").await.unwrap();
    assert_eq!(versions_of(&versions), [0, 1]);
    assert!(versions.iter().all(|m| m.sha256 == sha256_hex(b"alpha")));
    assert!(b.list_artifacts("empty").await.unwrap().is_empty());
    assert!(b
        .list_artifact_versions("run1", "missing")
        .await
        .unwrap()
        .is_empty());
}

/// Deleting one version keeps the others, and its number is not handed out again.
pub async fn delete_one_version(ctx: TestContext) {
    let b = &ctx.backend;
    for i in 0..3 {
        b.save_artifact("run1", "a", text(&i.to_string()))
            .await
            .unwrap();
    }
    assert_eq!(b.delete_artifact("run1", "a", Some(2)).await.unwrap(), 1);
    assert_eq!(b.delete_artifact("run1", "a", Some(2)).await.unwrap(), 0);
    assert_eq!(
        versions_of(&b.list_artifact_versions("run1", "a").await.unwrap()),
        [0, 1]
    );
    assert_eq!(
        b.get_artifact("run1", "a", None)
            .await
            .unwrap()
            .unwrap()
            .meta
            .version,
        1
    );
    assert_eq!(
        b.save_artifact("run1", "a", text("new"))
            .await
            .unwrap()
            .version,
        3
    );
}

/// Deleting every version removes the name; a new save starts over at 0.
pub async fn delete_all_versions(ctx: TestContext) {
    let b = &ctx.backend;
    for i in 0..3 {
        b.save_artifact("run1", "a", text(&i.to_string()))
            .await
            .unwrap();
    }
    b.save_artifact("run1", "b", text("b")).await.unwrap();
    assert_eq!(b.delete_artifact("run1", "a", None).await.unwrap(), 3);
    assert!(!b.artifact_exists("run1", "a", None).await.unwrap());
    assert_eq!(b.list_artifacts("run1").await.unwrap(), ["b"]);
    assert_eq!(
        b.save_artifact("run1", "a", text("again"))
            .await
            .unwrap()
            .version,
        0
    );
    assert_eq!(b.delete_artifact("run1", "missing", None).await.unwrap(), 0);
}

/// Clearing a scope removes all of it and nothing of scopes whose names look related.
pub async fn clear_touches_only_its_scope(ctx: TestContext) {
    let b = &ctx.backend;
    let scopes = ["run", "run1", "run/1", "ru", "run*", "run:1", "%"];
    for scope in scopes {
        b.save_artifact(scope, "a", text(scope)).await.unwrap();
        b.save_artifact(scope, "a", text(scope)).await.unwrap();
    }
    b.save_artifact("run", "b", text("b")).await.unwrap();
    assert_eq!(b.clear_artifacts("run").await.unwrap(), 3);
    assert!(b.list_artifacts("run").await.unwrap().is_empty());
    for scope in &scopes[1..] {
        assert_eq!(
            b.list_artifact_versions(scope, "a").await.unwrap().len(),
            2,
            "scope {scope} untouched"
        );
    }
    assert_eq!(b.clear_artifacts("run").await.unwrap(), 0);
}

/// Concurrent saves of one name get distinct, gapless versions.
pub async fn concurrent_saves_get_distinct_versions(ctx: TestContext) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                b.save_artifact("run1", "a", text(&format!("{i}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        let meta = task.await.unwrap();
        let stored = ctx
            .backend
            .get_artifact("run1", "a", Some(meta.version))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.meta, meta, "each version holds what its save wrote");
        versions.push(meta.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (0..16).collect::<Vec<u64>>());
}

/// Empty content and every byte value round-trip exactly.
pub async fn binary_and_empty_content_round_trip(ctx: TestContext) {
    let b = &ctx.backend;
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let meta = b
        .save_artifact(
            "run1",
            "bin",
            NewArtifact::new("application/octet-stream", all_bytes.clone()),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, 4096);
    assert_eq!(
        b.get_artifact("run1", "bin", None)
            .await
            .unwrap()
            .unwrap()
            .data,
        all_bytes
    );
    let empty = b
        .save_artifact("run1", "empty", NewArtifact::new("text/plain", Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        (empty.size, empty.sha256.as_str()),
        (0, sha256_hex(b"").as_str())
    );
    assert!(b
        .get_artifact("run1", "empty", None)
        .await
        .unwrap()
        .unwrap()
        .data
        .is_empty());
}

/// Streaming save and read give the same bytes and digest as a whole save.
pub async fn streaming_round_trip(ctx: TestContext) {
    let b = &ctx.backend;
    let chunks: Vec<Bytes> = (0..64u8).map(|i| Bytes::from(vec![i; 1024])).collect();
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let content: ByteStream = stream::iter(chunks.into_iter().map(Ok)).boxed();
    let meta = b
        .save_artifact_stream(
            "run1",
            "big",
            "application/octet-stream",
            Default::default(),
            content,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (meta.size, meta.sha256.clone()),
        (whole.len() as u64, sha256_hex(&whole))
    );
    let (read_meta, body) = b
        .open_artifact_stream("run1", "big", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_meta, meta);
    let read: Vec<Bytes> = body.try_collect().await.unwrap();
    assert_eq!(read.concat(), whole);
    assert!(b
        .open_artifact_stream("run1", "missing", None)
        .await
        .unwrap()
        .is_none());
}

/// A stream over the caller's size limit is `InvalidInput` and stores nothing.
pub async fn streaming_size_limit_stores_nothing(ctx: TestContext) {
    let content: ByteStream =
        stream::iter((0..8).map(|_| Ok(Bytes::from(vec![0u8; 1024])))).boxed();
    let result = ctx
        .backend
        .save_artifact_stream(
            "run1",
            "big",
            "application/octet-stream",
            Default::default(),
            content,
            Some(4096),
        )
        .await;
    assert_kind(result, ErrorKind::InvalidInput);
    assert!(!ctx
        .backend
        .artifact_exists("run1", "big", None)
        .await
        .unwrap());
}

/// JSON documents through the typed extension.
pub async fn json_documents_round_trip(ctx: TestContext) {
    let b = &ctx.backend;
    let doc = json!({"findings": [1, 2, 3], "ok": true});
    let meta = b.save_json("run1", "doc.json", &doc).await.unwrap();
    assert_eq!(meta.content_type, "application/json");
    assert_eq!(
        b.get_json::<serde_json::Value>("run1", "doc.json", None)
            .await
            .unwrap(),
        Some(doc)
    );
}
