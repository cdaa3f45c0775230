-- Version 3: task contexts by scope, with kept versions (issue 18).
--
-- A scope is named by its key (`app`, `session:<id>`, `user:<id>`; see
-- `storage_core::ContextScope::key`), `COLLATE "C"` so keys order bytewise, which is the
-- order `list_context_scopes` lists in.
--
-- `context_heads` holds each scope's current version: the compare-and-set token, the row
-- lock that orders a scope's writers, and one row per scope with a context.
CREATE TABLE context_heads (
    scope   text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL
);

-- Every kept version.
CREATE TABLE context_versions (
    scope   text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    record  bytea NOT NULL,
    PRIMARY KEY (scope, version)
);

-- The previous release kept one context per session: it becomes the session scope's
-- current (and only) version, its record unchanged (records that name `session_id`
-- instead of `scope` still decode). The lock, held until the migration's transaction
-- commits, makes a process of the previous release still writing either commit before the
-- rows are read (and be moved) or wait and then fail on the dropped table: no write lands
-- between the copy and the drop.
LOCK TABLE task_contexts IN ACCESS EXCLUSIVE MODE;
INSERT INTO context_heads (scope, version)
    SELECT 'session:' || session_id, version FROM task_contexts;
INSERT INTO context_versions (scope, version, record)
    SELECT 'session:' || session_id, version, record FROM task_contexts;
DROP TABLE task_contexts;
