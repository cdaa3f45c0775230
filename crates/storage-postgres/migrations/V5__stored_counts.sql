-- Version 5: each series counts its stored records, so retention's `keep_last` finds how
-- many records go without walking the kept ones (issue 18: a sweep costs what it removes).
--
-- `stored` is the number of the session's rows in `messages` (not `replaced_messages`:
-- what a summary replaced is not in the series) and of the name's rows in `artifacts`.
-- Inserts count where they take their counter row: every statement that stores messages
-- or versions (append, import, compaction's summary, save, import) upserts or updates the
-- counter row in the same statement, `stored` with it (measured: a statement trigger on
-- insert cost an append about 50 us, half its time, and a save 30 us). Deletions, which
-- many paths make (pop, rewind, compaction, clear, session removal, retention, delete,
-- clear_artifacts), count in one place: statement triggers with transition tables, one
-- counter update per statement and series, under the counter row lock those paths take
-- first. Deleted rows whose counter is already gone (session removal, clear_artifacts)
-- update nothing.
ALTER TABLE message_counters ADD COLUMN stored bigint NOT NULL DEFAULT 0;
ALTER TABLE artifact_counters ADD COLUMN stored bigint NOT NULL DEFAULT 0;

-- Backfill what the previous release stored (in the migration's transaction: the schema
-- is locked against writers until it commits).
UPDATE message_counters AS c SET stored = m.n
FROM (SELECT session_id, count(*) AS n FROM messages GROUP BY session_id) AS m
WHERE m.session_id = c.session_id;
UPDATE artifact_counters AS c SET stored = a.n
FROM (SELECT scope, name, count(*) AS n FROM artifacts GROUP BY scope, name) AS a
WHERE a.scope = c.scope AND a.name = c.name;

CREATE FUNCTION messages_stored_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE message_counters AS c SET stored = c.stored - d.n
    FROM (SELECT session_id, count(*) AS n FROM old_rows GROUP BY session_id) AS d
    WHERE c.session_id = d.session_id;
    RETURN NULL;
END $$;

CREATE FUNCTION artifacts_stored_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE artifact_counters AS c SET stored = c.stored - d.n
    FROM (SELECT scope, name, count(*) AS n FROM old_rows GROUP BY scope, name) AS d
    WHERE c.scope = d.scope AND c.name = d.name;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_stored_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION messages_stored_delete();
CREATE TRIGGER artifacts_stored_delete AFTER DELETE ON artifacts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION artifacts_stored_delete();
