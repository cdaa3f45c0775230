-- Version 4: compaction keeps what a summary replaced (issue 18).
--
-- On a summary message, `compacted_from` is the lowest sequence its range covers (the
-- copy of `Message::compacted.from` inside its record, which the row's `sequence` ends):
-- removing the summary (pop, rewind) removes the kept messages of every summary sequence in
-- that range without decoding the removed records. NULL on every other message, which is
-- every message the previous release wrote: it never stored a summary. A column without a
-- default is added without rewriting the table.
ALTER TABLE messages ADD COLUMN compacted_from bigint;

-- The messages a summary replaced with `keep_replaced`, under the summary's sequence; the
-- row's `sequence` is authoritative over the record's, as in `messages`. No client id
-- column: a replaced message's client id is released.
CREATE TABLE replaced_messages (
    session_id       text COLLATE "C" NOT NULL,
    summary_sequence bigint NOT NULL,
    sequence         bigint NOT NULL,
    record           bytea NOT NULL,
    PRIMARY KEY (session_id, summary_sequence, sequence)
);
