-- Version 2: task contexts by scope, with kept versions (issue 18). `{ns}` is the
-- namespace, as in version 1.
--
-- A scope is named by its key (`app`, `session:<id>`, `user:<id>`; see
-- `storage_core::ContextScope::key`), compared bytewise, which is the order
-- `list_context_scopes` lists in.
--
-- `context_heads` holds each scope's current version: the compare-and-set token, and one
-- row per scope with a context. Its rows are tiny, so it is WITHOUT ROWID.
CREATE TABLE "{ns}.context_heads" (
    scope   TEXT NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;

-- Every kept version. A rowid table, as every table whose rows carry a record (see V1).
CREATE TABLE "{ns}.context_versions" (
    scope   TEXT NOT NULL,
    version INTEGER NOT NULL,
    record  BLOB NOT NULL,
    PRIMARY KEY (scope, version)
);

-- The previous release kept one context per session: it becomes the session scope's
-- current (and only) version, its record unchanged (records that name `session_id`
-- instead of `scope` still decode). The migration holds SQLite's write lock, so no process
-- of the previous release writes between the copy and the drop; one that writes after it
-- fails on the dropped table instead of writing where nothing reads.
INSERT INTO "{ns}.context_heads" (scope, version)
    SELECT 'session:' || session_id, version FROM "{ns}.task_contexts";
INSERT INTO "{ns}.context_versions" (scope, version, record)
    SELECT 'session:' || session_id, version, record FROM "{ns}.task_contexts";
DROP TABLE "{ns}.task_contexts";
