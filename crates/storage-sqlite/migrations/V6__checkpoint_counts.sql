-- Version 6: each checkpoint series (thread, namespace) counts its indexed checkpoints, so
-- retention's `keep_last` finds how many checkpoints go without stepping over the kept ones
-- (issue 18: a sweep costs what it removes). `{ns}` is the namespace, as in version 1.
--
-- The count is lazy like version 5's index, and for the same reason: puts pay nothing. A
-- series' checkpoints are its indexed rows, counted here, plus its unindexed rows (those
-- put since its last removal), counted through version 5's partial index. Row triggers
-- keep the count, so every path counts in one place whoever runs it (this release, the
-- previous release during a rolling upgrade, copies, imports): a row becoming indexed (a
-- removal's index step) adds one, a row becoming unindexed again (version 5's trigger, on
-- a put that replaces a checkpoint's versions) or an indexed row deleted takes one away. An
-- insert fires nothing.
CREATE TABLE "{ns}.checkpoint_series" (
    thread_id TEXT NOT NULL,
    ns        TEXT NOT NULL,
    indexed   INTEGER NOT NULL,
    PRIMARY KEY (thread_id, ns)
) WITHOUT ROWID;

-- Backfill from the rows version 5's removals indexed (in the migration's write
-- transaction: no writer runs in between).
INSERT INTO "{ns}.checkpoint_series" (thread_id, ns, indexed)
SELECT thread_id, ns, count(*) FROM "{ns}.checkpoints" WHERE indexed <> 0
GROUP BY thread_id, ns;

CREATE TRIGGER "{ns}.checkpoints_indexed_counted" AFTER UPDATE OF indexed ON "{ns}.checkpoints"
WHEN (OLD.indexed <> 0) <> (NEW.indexed <> 0)
BEGIN
    INSERT INTO "{ns}.checkpoint_series" (thread_id, ns, indexed)
    VALUES (NEW.thread_id, NEW.ns, CASE WHEN NEW.indexed <> 0 THEN 1 ELSE -1 END)
    ON CONFLICT (thread_id, ns) DO UPDATE SET indexed = indexed + excluded.indexed;
END;

CREATE TRIGGER "{ns}.checkpoints_indexed_deleted" AFTER DELETE ON "{ns}.checkpoints"
WHEN OLD.indexed <> 0
BEGIN
    UPDATE "{ns}.checkpoint_series" SET indexed = indexed - 1
    WHERE thread_id = OLD.thread_id AND ns = OLD.ns;
END;
