-- Version 1 of the storage schema in SQLite. Applied by `SqliteBackend::initialize` under
-- SQLite's write lock; `{ns}` is the namespace, so every table is named
-- "<namespace>.<table>" (a quoted identifier: the dot cannot occur in a namespace, so two
-- namespaces never share a table).
--
-- Conventions as in PostgreSQL: text compares bytewise (SQLite's BINARY collation);
-- `record` / `meta` / `value` columns hold `storage_core::wire`-encoded bytes; the key
-- columns and the database-assigned numbers are authoritative over the copies inside the
-- records. WITHOUT ROWID keeps each table clustered on its primary key, so a lookup or a
-- range on the key reads one b-tree.

CREATE TABLE "{ns}.sessions" (
    id               TEXT NOT NULL PRIMARY KEY,
    user_id          TEXT NOT NULL,
    status           TEXT NOT NULL,
    last_activity_us INTEGER NOT NULL,
    record           BLOB NOT NULL
) WITHOUT ROWID;
-- list_sessions without a user filter, and cleanup_expired_sessions (range on activity).
CREATE INDEX "{ns}.sessions_by_activity" ON "{ns}.sessions" (last_activity_us DESC, id);
-- list_sessions filtered by user (and optionally status).
CREATE INDEX "{ns}.sessions_by_user_activity"
    ON "{ns}.sessions" (user_id, last_activity_us DESC, id);
-- list_sessions filtered by status only.
CREATE INDEX "{ns}.sessions_by_status_activity"
    ON "{ns}.sessions" (status, last_activity_us DESC, id);

-- The highest sequence ever handed out per session; survives pop and clear.
CREATE TABLE "{ns}.message_counters" (
    session_id    TEXT NOT NULL PRIMARY KEY,
    last_sequence INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE "{ns}.messages" (
    session_id TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    client_id  TEXT,
    record     BLOB NOT NULL,
    PRIMARY KEY (session_id, sequence)
) WITHOUT ROWID;
-- Idempotent appends: one message per (session, client id).
CREATE UNIQUE INDEX "{ns}.messages_by_client_id" ON "{ns}.messages" (session_id, client_id)
    WHERE client_id IS NOT NULL;

CREATE TABLE "{ns}.task_contexts" (
    session_id TEXT NOT NULL PRIMARY KEY,
    version    INTEGER NOT NULL,
    record     BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE "{ns}.checkpoints" (
    thread_id     TEXT NOT NULL,
    ns            TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    -- metadata.run_id when it is a string, for delete_for_runs.
    run_id        TEXT,
    -- The checkpoint without its channel values (channel_versions and metadata inside).
    record        BLOB NOT NULL,
    PRIMARY KEY (thread_id, ns, checkpoint_id)
) WITHOUT ROWID;
-- list_checkpoints across every namespace of a thread, newest first.
CREATE INDEX "{ns}.checkpoints_by_thread" ON "{ns}.checkpoints" (thread_id, checkpoint_id DESC, ns);
-- delete_for_runs.
CREATE INDEX "{ns}.checkpoints_by_run" ON "{ns}.checkpoints" (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE "{ns}.checkpoint_blobs" (
    thread_id TEXT NOT NULL,
    ns        TEXT NOT NULL,
    channel   TEXT NOT NULL,
    version   TEXT NOT NULL,
    value     BLOB NOT NULL,
    PRIMARY KEY (thread_id, ns, channel, version)
) WITHOUT ROWID;

CREATE TABLE "{ns}.checkpoint_writes" (
    thread_id     TEXT NOT NULL,
    ns            TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    record        BLOB NOT NULL,
    PRIMARY KEY (thread_id, ns, checkpoint_id, task_id, idx)
) WITHOUT ROWID;

-- The next version number per artifact name; exists exactly while the name has a version.
CREATE TABLE "{ns}.artifact_counters" (
    scope        TEXT NOT NULL,
    name         TEXT NOT NULL,
    next_version INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;

-- Artifact content is large: a rowid table keeps big blobs out of the key b-tree's pages.
CREATE TABLE "{ns}.artifacts" (
    scope   TEXT NOT NULL,
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    meta    BLOB NOT NULL,
    data    BLOB NOT NULL,
    UNIQUE (scope, name, version)
);
