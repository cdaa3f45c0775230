-- Version 3: compaction keeps what a summary replaced (issue 18). `{ns}` is the namespace,
-- as in version 1.
--
-- On a summary message, `compacted_from` is the lowest sequence its range covers (the
-- copy of `Message::compacted.from` inside its record, which the row's `sequence` ends):
-- removing the summary (pop, rewind) removes the kept messages of every summary sequence in
-- that range without decoding the removed records. NULL on every other message, which is
-- every message the previous release wrote: it never stored a summary. Adding a column
-- without a default rewrites no row.
ALTER TABLE "{ns}.messages" ADD COLUMN compacted_from INTEGER;

-- The messages a summary replaced with `keep_replaced`, under the summary's sequence; the
-- row's `sequence` is authoritative over the record's, as in `messages`. No client id
-- column: a replaced message's client id is released. A rowid table, as every table whose
-- rows carry a record (see V1).
CREATE TABLE "{ns}.replaced_messages" (
    session_id       TEXT NOT NULL,
    summary_sequence INTEGER NOT NULL,
    sequence         INTEGER NOT NULL,
    record           BLOB NOT NULL,
    PRIMARY KEY (session_id, summary_sequence, sequence)
);
