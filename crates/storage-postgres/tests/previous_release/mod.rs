//! A schema as an earlier release left it, for the compatibility tests: that release's
//! migrations applied by refinery as it applied them, and its rows planted with raw SQL
//! as its code wrote them.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

/// The migrations of the earlier releases, oldest first; a release at version `n` had
/// the first `n`.
const MIGRATIONS: [(&str, &str); 6] = [
    (
        "V1__initial_schema",
        include_str!("../../migrations/V1__initial_schema.sql"),
    ),
    (
        "V2__checkpoints_across_threads",
        include_str!("../../migrations/V2__checkpoints_across_threads.sql"),
    ),
    (
        "V3__context_versions",
        include_str!("../../migrations/V3__context_versions.sql"),
    ),
    (
        "V4__compaction",
        include_str!("../../migrations/V4__compaction.sql"),
    ),
    (
        "V5__stored_counts",
        include_str!("../../migrations/V5__stored_counts.sql"),
    ),
    (
        "V6__checkpoint_value_users",
        include_str!("../../migrations/V6__checkpoint_value_users.sql"),
    ),
];

/// A connection to `namespace` (its `search_path`), the schema dropped and created anew at
/// migration `version`, as the release that stopped there left it.
pub async fn schema_at(url: &str, namespace: &str, version: usize) -> tokio_postgres::Client {
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {namespace} CASCADE; CREATE SCHEMA {namespace}; \
             SET search_path = {namespace}"
        ))
        .await
        .unwrap();
    let migrations: Vec<refinery::Migration> = MIGRATIONS[..version]
        .iter()
        .map(|(name, sql)| refinery::Migration::unapplied(name, sql).unwrap())
        .collect();
    refinery::Runner::new(&migrations)
        .set_grouped(true)
        .set_migration_table_name(storage_postgres::schema::MIGRATION_TABLE)
        .run_async(&mut client)
        .await
        .unwrap();
    client
}

/// A message record as the earlier releases encoded it (sequence 0: the row's column is
/// the number).
pub fn old_message_record(session_id: &str, n: i64) -> String {
    format!(
        r#"{{"v":1,"kind":"message","data":{{"session_id":"{session_id}","sequence":0,"role":"user","content":"m{n}","client_id":"c{n}","metadata":{{}},"created_at":"2026-11-01T10:00:0{n}Z"}}}}"#
    )
}

/// Messages as the earlier releases' appends wrote them: `s1` with 5 (client ids `c1`..),
/// `s2` with 2, each session's counter at its last number.
pub async fn plant_messages(client: &tokio_postgres::Client) {
    for (session_id, count) in [("s1", 5_i64), ("s2", 2)] {
        for n in 1..=count {
            client
                .execute(
                    "INSERT INTO messages (session_id, sequence, client_id, record) \
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &session_id,
                        &n,
                        &format!("c{n}"),
                        &old_message_record(session_id, n).as_bytes(),
                    ],
                )
                .await
                .unwrap();
        }
        client
            .execute(
                "INSERT INTO message_counters (session_id, last_sequence) VALUES ($1, $2)",
                &[&session_id, &count],
            )
            .await
            .unwrap();
    }
}

/// A checkpoint put as the releases up to version 5 wrote it, from their `PUT`: the new
/// values stored if absent, the row inserted or, for a stored id, its columns replaced
/// (a column the statement does not name, like V6's `indexed`, keeps what it held).
const CHECKPOINT_PUT: &str = "\
WITH lock AS (
    SELECT pg_advisory_xact_lock_shared(hashtextextended($12, 0))
),
blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, ns, channel, version, value)
    SELECT $1, $2, b.channel, b.version, b.value
    FROM lock, UNNEST($8::text[], $9::text[], $10::bytea[]) AS b(channel, version, value)
    ON CONFLICT DO NOTHING
)
INSERT INTO checkpoints (thread_id, ns, checkpoint_id, run_id, channels, versions, metadata, record)
SELECT $1, $2, $3, $4, $5, $6, $7, $11 FROM lock
ON CONFLICT (thread_id, ns, checkpoint_id) DO UPDATE SET
    run_id = EXCLUDED.run_id, channels = EXCLUDED.channels, versions = EXCLUDED.versions,
    metadata = EXCLUDED.metadata, record = EXCLUDED.record";

/// Puts `checkpoint` with the earlier releases' statement, storing the values of
/// `new_versions`; `client`'s `search_path` names the schema.
pub async fn put_checkpoint(
    client: &tokio_postgres::Client,
    schema: &str,
    checkpoint: &storage_core::Checkpoint,
    new_versions: &storage_core::ChannelVersions,
) {
    let (mut blob_channels, mut blob_versions, mut blob_values) = (vec![], vec![], vec![]);
    for (channel, version, value) in checkpoint.new_blobs(new_versions) {
        blob_channels.push(channel.to_owned());
        blob_versions.push(version.to_owned());
        blob_values.push(storage_core::wire::encode_value(value).unwrap());
    }
    let channels: Vec<String> = checkpoint.channel_versions.keys().cloned().collect();
    let versions: Vec<String> = checkpoint.channel_versions.values().cloned().collect();
    let mut bare = checkpoint.clone();
    bare.channel_values.clear();
    let record = storage_core::wire::encode(&bare).unwrap();
    let lock_key = format!("storage-postgres:thread:{schema}:{}", checkpoint.thread_id);
    let metadata = serde_json::Value::Object(checkpoint.metadata.clone());
    let run_id: Option<&str> = None;
    client
        .execute(
            CHECKPOINT_PUT,
            &[
                &checkpoint.thread_id,
                &checkpoint.namespace,
                &checkpoint.id,
                &run_id,
                &channels,
                &versions,
                &metadata,
                &blob_channels,
                &blob_versions,
                &blob_values,
                &record,
                &lock_key,
            ],
        )
        .await
        .unwrap();
}

/// The previous release's (version 6) removal index step, quoted from its
/// `INDEX_CHECKPOINTS`: it marks rows indexed, which V7's triggers count.
pub const V6_INDEX_CHECKPOINTS: &str = "\
WITH fresh AS (
    UPDATE checkpoints SET indexed = true
    WHERE thread_id = $1 AND ($2::text IS NULL OR ns = $2) AND NOT indexed
    RETURNING ns, checkpoint_id, channels, versions
)
INSERT INTO checkpoint_value_users (thread_id, ns, channel, version, checkpoint_id)
SELECT $1, f.ns, v.channel, v.version, f.checkpoint_id
FROM fresh f, unnest(f.channels, f.versions) AS v(channel, version)
ON CONFLICT DO NOTHING";

/// The previous release's (version 6) retention removal, its `REMOVE_BEFORE` with the
/// macros it is built of expanded: the checkpoints of `($1, $2)` below `$3`.
pub const V6_REMOVE_BEFORE: &str = "\
WITH doomed AS (
    DELETE FROM checkpoints WHERE thread_id = $1 AND ns = $2 AND checkpoint_id < $3
    RETURNING thread_id, ns, checkpoint_id, channels, versions
),
writes AS (
    DELETE FROM checkpoint_writes w USING doomed d
    WHERE w.thread_id = d.thread_id AND w.ns = d.ns AND w.checkpoint_id = d.checkpoint_id
),
named AS (
    SELECT d.thread_id, d.ns, d.checkpoint_id, v.channel, v.version
    FROM doomed d, unnest(d.channels, d.versions) AS v(channel, version)
),
unlisted AS (
    DELETE FROM checkpoint_value_users u USING named n
    WHERE u.thread_id = n.thread_id AND u.ns = n.ns AND u.channel = n.channel
      AND u.version = n.version AND u.checkpoint_id = n.checkpoint_id
),
blobs AS (
    DELETE FROM checkpoint_blobs b
    USING (SELECT DISTINCT thread_id, ns, channel, version FROM named) c
    WHERE b.thread_id = c.thread_id AND b.ns = c.ns AND b.channel = c.channel
      AND b.version = c.version
      AND NOT EXISTS (
        SELECT 1 FROM checkpoint_value_users u
        JOIN checkpoints s ON s.thread_id = u.thread_id AND s.ns = u.ns
            AND s.checkpoint_id = u.checkpoint_id
        WHERE u.thread_id = c.thread_id AND u.ns = c.ns AND u.channel = c.channel
          AND u.version = c.version
          AND NOT EXISTS (SELECT 1 FROM doomed d WHERE d.thread_id = u.thread_id
              AND d.ns = u.ns AND d.checkpoint_id = u.checkpoint_id))
)
SELECT count(*) FROM doomed";

/// The previous release's (version 6) `DELETE_THREAD`: it leaves V7's count deltas alone.
pub const V6_DELETE_THREAD: &str = "\
WITH c AS (DELETE FROM checkpoints WHERE thread_id = $1 RETURNING 1),
b AS (DELETE FROM checkpoint_blobs WHERE thread_id = $1),
w AS (DELETE FROM checkpoint_writes WHERE thread_id = $1),
u AS (DELETE FROM checkpoint_value_users WHERE thread_id = $1)
SELECT count(*) FROM c";

/// A retention removal as the previous release (version 6) ran it for `(thread, ns)`: the
/// thread's lock, the index step, the checkpoints below `end` removed; how many.
pub async fn v6_remove_before(
    client: &mut tokio_postgres::Client,
    schema: &str,
    thread: &str,
    ns: &str,
    end: &str,
) -> i64 {
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("storage-postgres:thread:{schema}:{thread}")],
    )
    .await
    .unwrap();
    tx.execute(V6_INDEX_CHECKPOINTS, &[&thread, &ns])
        .await
        .unwrap();
    let removed = tx
        .query_one(V6_REMOVE_BEFORE, &[&thread, &ns, &end])
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    removed
}
