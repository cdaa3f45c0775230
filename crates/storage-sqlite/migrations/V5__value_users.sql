-- Version 5: which checkpoints use each channel value, so a checkpoint removal (retention,
-- prune, delete_for_runs) finds whether a survivor still uses a value by key lookups instead
-- of reading every survivor's `versions`. `{ns}` is the namespace, as in version 1.
--
-- The index is built lazily, by the removals themselves, never by a put (a put that kept it
-- cost about 73 µs of CPU): a checkpoint row's `indexed` is 1 once its uses are in
-- `checkpoint_value_users`, 0 until then. Every row the previous release writes, every copy
-- (`copy_thread` names its columns) and every row stored before this version is therefore
-- unindexed, and a removal indexes the unindexed rows of its (thread, namespace) before it
-- trusts the index. Adding a column with a constant default rewrites no row.
ALTER TABLE "{ns}.checkpoints" ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;

-- The unindexed rows of one (thread, namespace): what a removal indexes first. Partial, so
-- it holds only the checkpoints put since the series' last removal.
CREATE INDEX "{ns}.checkpoints_unindexed" ON "{ns}.checkpoints" (thread_id, ns)
    WHERE indexed = 0;

-- One row per (channel, version) an indexed checkpoint names. Keyed by the value first, so
-- "does any checkpoint still use this value" is one seek. Tiny rows: WITHOUT ROWID.
CREATE TABLE "{ns}.checkpoint_value_users" (
    thread_id     TEXT NOT NULL,
    ns            TEXT NOT NULL,
    channel       TEXT NOT NULL,
    version       TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    PRIMARY KEY (thread_id, ns, channel, version, checkpoint_id)
) WITHOUT ROWID;

-- A put of an existing checkpoint id replaces its `versions` in place (an upsert, in this
-- release and the previous one): the row's users rows for the old map go and the row is
-- unindexed again, so a stale index is never trusted and never names a value the row no
-- longer uses. A put of a new id (the common case) runs nothing here.
CREATE TRIGGER "{ns}.checkpoints_versions_replaced"
AFTER UPDATE OF thread_id, ns, checkpoint_id, versions ON "{ns}.checkpoints"
WHEN OLD.indexed <> 0 AND (NEW.versions IS NOT OLD.versions
    OR NEW.thread_id IS NOT OLD.thread_id OR NEW.ns IS NOT OLD.ns
    OR NEW.checkpoint_id IS NOT OLD.checkpoint_id)
BEGIN
    DELETE FROM "{ns}.checkpoint_value_users"
    WHERE (thread_id, ns, channel, version, checkpoint_id) IN (
        SELECT OLD.thread_id, OLD.ns, j.key, j.value, OLD.checkpoint_id
        FROM json_each(OLD.versions) AS j);
    UPDATE "{ns}.checkpoints" SET indexed = 0 WHERE rowid = NEW.rowid;
END;
