-- Version 1 of the storage schema. Applied by `PostgresBackend::initialize` inside the
-- namespace's schema (the connection's search_path), under an advisory lock.
--
-- Conventions: every id column is `text COLLATE "C"` so ordering is bytewise, as in Rust;
-- `record` / `meta` / `value` columns hold `storage_core::wire`-encoded bytes, which round-trip
-- any JSON exactly (jsonb cannot hold U+0000); the key columns and the database-assigned
-- numbers (sequence, version) are authoritative over the copies inside the records.

CREATE TABLE sessions (
    id               text COLLATE "C" PRIMARY KEY,
    user_id          text COLLATE "C" NOT NULL,
    status           text COLLATE "C" NOT NULL,
    last_activity_us bigint NOT NULL,
    record           bytea NOT NULL
);
-- list_sessions without a user filter, and cleanup_expired_sessions (range on activity).
CREATE INDEX sessions_by_activity ON sessions (last_activity_us DESC, id);
-- list_sessions filtered by user (and optionally status).
CREATE INDEX sessions_by_user_activity ON sessions (user_id, last_activity_us DESC, id);
-- list_sessions filtered by status only.
CREATE INDEX sessions_by_status_activity ON sessions (status, last_activity_us DESC, id);

-- The highest sequence ever handed out per session; survives pop and clear.
CREATE TABLE message_counters (
    session_id    text COLLATE "C" PRIMARY KEY,
    last_sequence bigint NOT NULL
);

CREATE TABLE messages (
    session_id text COLLATE "C" NOT NULL,
    sequence   bigint NOT NULL,
    client_id  text COLLATE "C",
    record     bytea NOT NULL,
    PRIMARY KEY (session_id, sequence)
);
-- Idempotent appends: one message per (session, client id).
CREATE UNIQUE INDEX messages_by_client_id ON messages (session_id, client_id)
    WHERE client_id IS NOT NULL;

CREATE TABLE task_contexts (
    session_id text COLLATE "C" PRIMARY KEY,
    version    bigint NOT NULL,
    record     bytea NOT NULL
);

CREATE TABLE checkpoints (
    thread_id     text COLLATE "C" NOT NULL,
    ns            text COLLATE "C" NOT NULL,
    checkpoint_id text COLLATE "C" NOT NULL,
    -- metadata.run_id when it is a string, for delete_for_runs.
    run_id        text COLLATE "C",
    -- channel_versions as two parallel arrays, so blobs are joined by their full key.
    channels      text[] NOT NULL,
    versions      text[] NOT NULL,
    -- Metadata for list filters only (strings with U+0000 are escaped, see docs).
    metadata      jsonb NOT NULL,
    record        bytea NOT NULL,
    PRIMARY KEY (thread_id, ns, checkpoint_id)
);
-- list_checkpoints across every namespace of a thread, newest first.
CREATE INDEX checkpoints_by_thread ON checkpoints (thread_id, checkpoint_id DESC, ns);
-- delete_for_runs.
CREATE INDEX checkpoints_by_run ON checkpoints (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE checkpoint_blobs (
    thread_id text COLLATE "C" NOT NULL,
    ns        text COLLATE "C" NOT NULL,
    channel   text COLLATE "C" NOT NULL,
    version   text COLLATE "C" NOT NULL,
    value     bytea NOT NULL,
    PRIMARY KEY (thread_id, ns, channel, version)
);

CREATE TABLE checkpoint_writes (
    thread_id     text COLLATE "C" NOT NULL,
    ns            text COLLATE "C" NOT NULL,
    checkpoint_id text COLLATE "C" NOT NULL,
    task_id       text COLLATE "C" NOT NULL,
    idx           bigint NOT NULL,
    record        bytea NOT NULL,
    PRIMARY KEY (thread_id, ns, checkpoint_id, task_id, idx)
);

-- The next version number per artifact name; exists exactly while the name has a version.
CREATE TABLE artifact_counters (
    scope        text COLLATE "C" NOT NULL,
    name         text COLLATE "C" NOT NULL,
    next_version bigint NOT NULL,
    PRIMARY KEY (scope, name)
);

CREATE TABLE artifacts (
    scope   text COLLATE "C" NOT NULL,
    name    text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    meta    bytea NOT NULL,
    data    bytea NOT NULL,
    PRIMARY KEY (scope, name, version)
);
