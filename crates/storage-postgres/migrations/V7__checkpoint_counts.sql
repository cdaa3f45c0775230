-- Version 7: each checkpoint series counts its rows, so retention's `keep_last` finds the
-- first checkpoint it keeps by stepping over the removed ones only (issue 18: a sweep costs
-- what it removes). Until now it stepped over the kept ones, `keep_last - 1` places below
-- the newest, visiting the heap for each recently written one.
--
-- The count of a (thread, namespace) is the sum of its `checkpoint_count_deltas` rows,
-- which counts its INDEXED rows, plus its rows with `NOT indexed`, counted through the
-- partial index `checkpoints_unindexed` (V6): those are the checkpoints stored since the
-- series' last removal, which the removal indexes anyway. So puts, which insert unindexed
-- rows, count nothing and pay nothing (the insert trigger below only evaluates its WHEN
-- clause); only the paths that index, unindex or delete rows write deltas, through
-- triggers, so every writer keeps the count exact: this release, the previous release
-- beside it during a rolling upgrade, copies, imports.
--
-- Deltas are rows inserted, never a counter row updated: `delete_for_runs` deletes
-- checkpoints without the thread's lock, so a counter row updated by its trigger at the end
-- of its statement, after it locked the deleted rows, would deadlock against a sweep that
-- updated the same counter row when it indexed and then waits for one of those rows. An
-- insert into a table without a unique key never waits. The removals fold a series' deltas
-- into one row (under the thread's lock, deleting only committed rows, so a delta that
-- commits meanwhile stays and is counted); a reader sums a handful of rows.

-- Writers wait for the migration's transaction from here on, so the backfill below misses
-- no row and no change is counted twice.
LOCK TABLE checkpoints IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE checkpoint_count_deltas (
    thread_id text COLLATE "C" NOT NULL,
    ns        text COLLATE "C" NOT NULL,
    delta     bigint NOT NULL
);
CREATE INDEX checkpoint_count_deltas_series ON checkpoint_count_deltas (thread_id, ns);

INSERT INTO checkpoint_count_deltas (thread_id, ns, delta)
SELECT thread_id, ns, count(*) FROM checkpoints WHERE indexed GROUP BY thread_id, ns;

-- A row that becomes indexed counts +1 in its series, one that stops being indexed (a put
-- replacing its versions: V6's BEFORE UPDATE trigger) -1; a row moved to another series
-- (no code does) is counted in the series it moves to.
CREATE FUNCTION checkpoints_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.indexed THEN
        INSERT INTO checkpoint_count_deltas (thread_id, ns, delta)
        VALUES (OLD.thread_id, OLD.ns, -1);
    END IF;
    IF NEW.indexed THEN
        INSERT INTO checkpoint_count_deltas (thread_id, ns, delta)
        VALUES (NEW.thread_id, NEW.ns, 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER checkpoints_count_update AFTER UPDATE ON checkpoints
    FOR EACH ROW
    WHEN (OLD.indexed IS DISTINCT FROM NEW.indexed
          OR ((OLD.indexed OR NEW.indexed)
              AND (OLD.thread_id, OLD.ns) IS DISTINCT FROM (NEW.thread_id, NEW.ns)))
    EXECUTE FUNCTION checkpoints_count_update();

-- No writer inserts an indexed row (puts and copies leave the default); one that did would
-- still be counted. The WHEN clause is all an insert of an unindexed row evaluates.
CREATE FUNCTION checkpoints_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO checkpoint_count_deltas (thread_id, ns, delta)
    VALUES (NEW.thread_id, NEW.ns, 1);
    RETURN NULL;
END $$;

CREATE TRIGGER checkpoints_count_insert AFTER INSERT ON checkpoints
    FOR EACH ROW WHEN (NEW.indexed)
    EXECUTE FUNCTION checkpoints_count_insert();

-- Every statement deleting checkpoints (removals, deletes of threads or runs, of this
-- release or the previous one) counts its indexed rows once per series.
CREATE FUNCTION checkpoints_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO checkpoint_count_deltas (thread_id, ns, delta)
    SELECT thread_id, ns, -count(*) FROM old_rows WHERE indexed GROUP BY thread_id, ns;
    RETURN NULL;
END $$;

CREATE TRIGGER checkpoints_count_delete AFTER DELETE ON checkpoints
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION checkpoints_count_delete();
