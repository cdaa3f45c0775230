-- Version 4: each series counts its stored records, so retention's `keep_last` finds how
-- many records go without walking the kept ones (issue 18: a sweep costs what it removes).
-- `{ns}` is the namespace, as in version 1.
--
-- `stored` is the number of the session's rows in `messages` (not `replaced_messages`:
-- what a summary replaced is not in the series) and of the name's rows in `artifacts`.
-- Row triggers keep it, so every path that inserts or deletes rows (append, import,
-- compaction, pop, rewind, clear, session removal, retention, save, delete, clear) counts
-- in one place, in the same transaction. An inserted row upserts its counter: import
-- stores messages before it raises the session's counter. A deleted row whose counter is
-- already gone (session removal, clear_artifacts) updates nothing.
ALTER TABLE "{ns}.message_counters" ADD COLUMN stored INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "{ns}.artifact_counters" ADD COLUMN stored INTEGER NOT NULL DEFAULT 0;

-- Backfill what the previous release stored; every stored row has its counter row (both
-- kinds create it before or with their first row).
UPDATE "{ns}.message_counters" AS c SET stored = (
    SELECT count(*) FROM "{ns}.messages" AS m WHERE m.session_id = c.session_id);
UPDATE "{ns}.artifact_counters" AS c SET stored = (
    SELECT count(*) FROM "{ns}.artifacts" AS a WHERE a.scope = c.scope AND a.name = c.name);

CREATE TRIGGER "{ns}.messages_stored_insert" AFTER INSERT ON "{ns}.messages"
BEGIN
    INSERT INTO "{ns}.message_counters" (session_id, last_sequence, stored)
    VALUES (NEW.session_id, NEW.sequence, 1)
    ON CONFLICT (session_id) DO UPDATE SET stored = stored + 1;
END;

CREATE TRIGGER "{ns}.messages_stored_delete" AFTER DELETE ON "{ns}.messages"
BEGIN
    UPDATE "{ns}.message_counters" SET stored = stored - 1 WHERE session_id = OLD.session_id;
END;

CREATE TRIGGER "{ns}.artifacts_stored_insert" AFTER INSERT ON "{ns}.artifacts"
BEGIN
    INSERT INTO "{ns}.artifact_counters" (scope, name, next_version, stored)
    VALUES (NEW.scope, NEW.name, NEW.version + 1, 1)
    ON CONFLICT (scope, name) DO UPDATE SET stored = stored + 1;
END;

CREATE TRIGGER "{ns}.artifacts_stored_delete" AFTER DELETE ON "{ns}.artifacts"
BEGIN
    UPDATE "{ns}.artifact_counters" SET stored = stored - 1
    WHERE scope = OLD.scope AND name = OLD.name;
END;
