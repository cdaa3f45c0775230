-- Version 1 of the storage schema in SQLite. Applied by `SqliteBackend::initialize` under
-- SQLite's write lock; `{ns}` is the namespace, so every table is named
-- "<namespace>.<table>" (a quoted identifier: the dot cannot occur in a namespace, so two
-- namespaces never share a table).
--
-- Conventions as in PostgreSQL: text compares bytewise (SQLite's BINARY collation);
-- `record` / `meta` / `value` columns hold `storage_core::wire`-encoded bytes; the key
-- columns and the database-assigned numbers are authoritative over the copies inside the
-- records. Only the counter tables are WITHOUT ROWID (clustered on their key): their rows
-- are tiny. Tables whose rows carry a record stay rowid tables, because SQLite stores a
-- WITHOUT ROWID row in its key b-tree, where a row past about 1 KB spills into overflow
-- pages on every lookup (measured: a 2 KB channel value read 2-4x slower by key).

CREATE TABLE "{ns}.sessions" (
    id               TEXT NOT NULL PRIMARY KEY,
    user_id          TEXT NOT NULL,
    status           TEXT NOT NULL,
    last_activity_us INTEGER NOT NULL,
    record           BLOB NOT NULL
);
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
);
-- Idempotent appends: one message per (session, client id).
CREATE UNIQUE INDEX "{ns}.messages_by_client_id" ON "{ns}.messages" (session_id, client_id)
    WHERE client_id IS NOT NULL;

CREATE TABLE "{ns}.task_contexts" (
    session_id TEXT NOT NULL PRIMARY KEY,
    version    INTEGER NOT NULL,
    record     BLOB NOT NULL
);

CREATE TABLE "{ns}.checkpoints" (
    thread_id     TEXT NOT NULL,
    ns            TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    -- metadata.run_id when it is a string, for delete_for_runs.
    run_id        TEXT,
    -- channel_versions as a JSON object, so a read joins the blobs in the same statement.
    versions      TEXT NOT NULL,
    -- The checkpoint without its channel values (channel_versions and metadata inside).
    record        BLOB NOT NULL,
    PRIMARY KEY (thread_id, ns, checkpoint_id)
);
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
);

CREATE TABLE "{ns}.checkpoint_writes" (
    thread_id     TEXT NOT NULL,
    ns            TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    record        BLOB NOT NULL,
    PRIMARY KEY (thread_id, ns, checkpoint_id, task_id, idx)
);

-- The next version number per artifact name; exists exactly while the name has a version.
CREATE TABLE "{ns}.artifact_counters" (
    scope        TEXT NOT NULL,
    name         TEXT NOT NULL,
    next_version INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;

CREATE TABLE "{ns}.artifacts" (
    scope   TEXT NOT NULL,
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    meta    BLOB NOT NULL,
    data    BLOB NOT NULL,
    UNIQUE (scope, name, version)
);
