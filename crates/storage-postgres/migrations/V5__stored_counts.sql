-- Version 5: each series counts its stored records, so retention's `keep_last` finds how
-- many records go without walking the kept ones (issue 18: a sweep costs what it removes).
--
-- `stored` is the number of the session's rows in `messages` (not `replaced_messages`:
-- what a summary replaced is not in the series) and of the name's rows in `artifacts`.
-- Statement triggers with transition tables keep it, once per statement and series, so
-- every path that inserts or deletes rows (append, import, compaction, pop, rewind, clear,
-- session removal, retention, save, delete, clear) counts in one place, in the writer's
-- transaction, under the counter row lock that path's writers already take (appends and
-- saves upsert it first; pop, rewind, compaction, clear, delete and retention lock it
-- first). Inserted rows upsert their counter: an import stores messages in the same
-- statement that raises the session's counter. Deleted rows whose counter is already gone
-- (session removal, clear_artifacts) update nothing.
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

CREATE FUNCTION messages_stored_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_counters AS c (session_id, last_sequence, stored)
    SELECT session_id, max(sequence), count(*) FROM new_rows GROUP BY session_id
    ON CONFLICT (session_id) DO UPDATE SET stored = c.stored + EXCLUDED.stored;
    RETURN NULL;
END $$;

CREATE FUNCTION messages_stored_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE message_counters AS c SET stored = c.stored - d.n
    FROM (SELECT session_id, count(*) AS n FROM old_rows GROUP BY session_id) AS d
    WHERE c.session_id = d.session_id;
    RETURN NULL;
END $$;

CREATE FUNCTION artifacts_stored_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO artifact_counters AS c (scope, name, next_version, stored)
    SELECT scope, name, max(version) + 1, count(*) FROM new_rows GROUP BY scope, name
    ON CONFLICT (scope, name) DO UPDATE SET stored = c.stored + EXCLUDED.stored;
    RETURN NULL;
END $$;

CREATE FUNCTION artifacts_stored_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE artifact_counters AS c SET stored = c.stored - d.n
    FROM (SELECT scope, name, count(*) AS n FROM old_rows GROUP BY scope, name) AS d
    WHERE c.scope = d.scope AND c.name = d.name;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_stored_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION messages_stored_insert();
CREATE TRIGGER messages_stored_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION messages_stored_delete();
CREATE TRIGGER artifacts_stored_insert AFTER INSERT ON artifacts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION artifacts_stored_insert();
CREATE TRIGGER artifacts_stored_delete AFTER DELETE ON artifacts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION artifacts_stored_delete();
