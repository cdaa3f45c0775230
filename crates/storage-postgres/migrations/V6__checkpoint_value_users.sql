-- Version 6: removing checkpoints costs what it removes (issue 18), not what survives.
--
-- A removal (prune, retention, delete) deletes the channel values that no surviving
-- checkpoint of the same (thread, namespace) names. Until now it read every survivor's
-- version arrays to find out; now it looks each candidate value up in
-- `checkpoint_value_users`, one row per (value, checkpoint naming it). Puts do not write
-- that table (a put would pay for every checkpoint, removed or not): a removal first
-- indexes the series' checkpoints stored since its last removal (`NOT indexed`, found
-- through a partial index), under the thread's exclusive lock, so no put of the thread
-- commits in between. Its cost is proportional to the checkpoints added since the
-- series' last removal plus those it removes.
--
-- Rows written by code that does not set `indexed` (the previous release's puts during a
-- rolling upgrade, copies) are unindexed: the default. A constant default is added
-- without rewriting the table (PostgreSQL 11+).
ALTER TABLE checkpoints ADD COLUMN indexed boolean NOT NULL DEFAULT false;
CREATE INDEX checkpoints_unindexed ON checkpoints (thread_id, ns) WHERE NOT indexed;

-- Exact for every indexed checkpoint: its (channel, version) pairs. A checkpoint whose
-- row is gone may leave rows behind (the previous release deleted checkpoints without
-- knowing this table); readers join to `checkpoints`, so such a row never keeps a value.
CREATE TABLE checkpoint_value_users (
    thread_id     text COLLATE "C" NOT NULL,
    ns            text COLLATE "C" NOT NULL,
    channel       text COLLATE "C" NOT NULL,
    version       text COLLATE "C" NOT NULL,
    checkpoint_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (thread_id, ns, channel, version, checkpoint_id)
);

-- A put replacing a stored checkpoint id with other versions (this release's or the
-- previous release's `ON CONFLICT DO UPDATE`) makes the row unindexed again and drops the
-- users rows of the versions it had, so the table stays exact for indexed rows. A row
-- trigger with a WHEN clause costs inserts nothing and updates that keep the versions
-- (a removal setting `indexed`, a put repeating a checkpoint) only the comparison.
CREATE FUNCTION checkpoints_versions_replaced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.indexed THEN
        DELETE FROM checkpoint_value_users AS u
        USING unnest(OLD.channels, OLD.versions) AS v(channel, version)
        WHERE u.thread_id = OLD.thread_id AND u.ns = OLD.ns AND u.channel = v.channel
          AND u.version = v.version AND u.checkpoint_id = OLD.checkpoint_id;
    END IF;
    NEW.indexed := false;
    RETURN NEW;
END $$;

CREATE TRIGGER checkpoints_versions_replaced BEFORE UPDATE ON checkpoints
    FOR EACH ROW
    WHEN (OLD.channels IS DISTINCT FROM NEW.channels OR OLD.versions IS DISTINCT FROM NEW.versions)
    EXECUTE FUNCTION checkpoints_versions_replaced();
