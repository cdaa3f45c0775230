//! Checkpoint removal, and the index of which checkpoints use each channel value.
//!
//! A channel value (a row of `checkpoint_blobs`) is shared by every checkpoint of its
//! (thread, namespace) whose `versions` names it, so removing checkpoints removes a value
//! only when no remaining checkpoint names it. `checkpoint_value_users` (V5) answers that
//! with one seek per value, instead of reading every survivor's `versions`.
//!
//! The index is built by removals, never by puts (a put that kept it cost about 73 µs of
//! CPU): a checkpoint row's `indexed` is 0 until a removal writes its users rows and sets
//! it, and every removal first brings the series it touches up to date (its unindexed rows,
//! found through a partial index: the checkpoints put since the series' last removal), in
//! its own write transaction. So a removal costs what was put since the series' last
//! removal plus what it removes, not what survives.
//!
//! Why the index can be trusted: a row with `indexed = 1` has a users row for every
//! (channel, version) of its `versions`. Only [`index_series`] sets the flag, in the
//! statement after the one writing those rows; a put that replaces a stored row's
//! `versions` (in this release or the previous one: both upsert) fires V5's trigger, which
//! deletes the row's users rows for its old map and clears the flag; a row written without
//! naming the flag (the previous release's puts, copies) is unindexed. A users row whose
//! checkpoint is gone (a previous-release process removed it, knowing nothing of the
//! index) is ignored by the in-use check: such rows can keep a value, never lose one.
//! A previous-release process that deletes a checkpoint and puts the same id again leaves
//! the old incarnation's users rows beside the new one's: again a value kept, not lost.

use std::collections::{BTreeMap, BTreeSet};

use storage_core::{ChannelVersions, StorageError};

use crate::engine::Db;
use crate::error::SqlResult;

/// Writes the users rows of every unindexed checkpoint of `(?1, ?2)`, through the partial
/// index on unindexed rows. `OR IGNORE`: a previous-release process may have removed and
/// re-put a checkpoint whose users rows are still there.
const INDEX_USERS: &str = "INSERT OR IGNORE INTO \"{ns}.checkpoint_value_users\" \
     (thread_id, ns, channel, version, checkpoint_id) \
     SELECT c.thread_id, c.ns, j.key, j.value, c.checkpoint_id \
     FROM \"{ns}.checkpoints\" AS c CROSS JOIN json_each(c.versions) AS j \
     WHERE c.thread_id = ?1 AND c.ns = ?2 AND c.indexed = 0";
/// Marks what [`INDEX_USERS`] indexed (the same rows: one write transaction).
const MARK_INDEXED: &str = "UPDATE \"{ns}.checkpoints\" SET indexed = 1 \
     WHERE thread_id = ?1 AND ns = ?2 AND indexed = 0";

/// The users rows of checkpoint `?3` of `(?1, ?2)` whose versions are `?4`, each by key.
const DELETE_USERS_OF: &str = "DELETE FROM \"{ns}.checkpoint_value_users\" \
     WHERE (thread_id, ns, channel, version, checkpoint_id) IN (\
     SELECT ?1, ?2, j.key, j.value, ?3 FROM json_each(?4) AS j)";
const DELETE_THREAD_USERS: &str =
    "DELETE FROM \"{ns}.checkpoint_value_users\" WHERE thread_id = ?1";
const DELETE_THREAD_SERIES: &str = "DELETE FROM \"{ns}.checkpoint_series\" WHERE thread_id = ?1";

/// Deletes the value `(?1, ?2, ?3, ?4)` unless a checkpoint that still exists uses it: one
/// seek to the value's first users row, and a primary-key probe of its checkpoint (users
/// rows of removed checkpoints are skipped).
const DELETE_UNUSED_BLOB: &str = "DELETE FROM \"{ns}.checkpoint_blobs\" \
     WHERE thread_id = ?1 AND ns = ?2 AND channel = ?3 AND version = ?4 AND NOT EXISTS (\
     SELECT 1 FROM \"{ns}.checkpoint_value_users\" AS u CROSS JOIN \"{ns}.checkpoints\" AS c \
     ON c.thread_id = u.thread_id AND c.ns = u.ns AND c.checkpoint_id = u.checkpoint_id \
     WHERE u.thread_id = ?1 AND u.ns = ?2 AND u.channel = ?3 AND u.version = ?4)";

const DELETE_ONE: &str = "DELETE FROM \"{ns}.checkpoints\" \
     WHERE thread_id = ?1 AND ns = ?2 AND checkpoint_id = ?3";
const DELETE_ONES_WRITES: &str = "DELETE FROM \"{ns}.checkpoint_writes\" \
     WHERE thread_id = ?1 AND ns = ?2 AND checkpoint_id = ?3";

/// The checkpoints of one namespace below an id, with their channel versions.
const BELOW: &str = "SELECT checkpoint_id, versions FROM \"{ns}.checkpoints\" \
     WHERE thread_id = ?1 AND ns = ?2 AND checkpoint_id < ?3";
/// The namespaces of a thread.
const THREAD_NAMESPACES: &str = "SELECT DISTINCT ns FROM \"{ns}.checkpoints\" WHERE thread_id = ?1";
/// The checkpoints of one namespace after the newest `?3`, with their channel versions.
const BEYOND_NEWEST: &str = "SELECT checkpoint_id, versions FROM \"{ns}.checkpoints\" \
     WHERE thread_id = ?1 AND ns = ?2 ORDER BY checkpoint_id DESC LIMIT -1 OFFSET ?3";
const THREAD_BLOB_KEYS: &str = "SELECT ns, channel, version FROM \"{ns}.checkpoint_blobs\" \
     WHERE thread_id = ?1";
const RUN_ROWS: &str = "SELECT thread_id, ns, checkpoint_id, versions FROM \"{ns}.checkpoints\" \
     WHERE run_id = ?1";

/// Checkpoint ids with their `versions` column, of one (thread, namespace).
type Doomed = Vec<(String, String)>;

/// The (id, `versions`) rows `sql` (one of [`BELOW`], [`BEYOND_NEWEST`]) selects.
fn select_doomed(db: &Db<'_>, sql: &str, params: impl rusqlite::Params) -> SqlResult<Doomed> {
    Ok(db
        .prepare(sql)?
        .query_map(params, |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Indexes the unindexed checkpoints of `(thread_id, namespace)`.
fn index_series(db: &Db<'_>, thread_id: &str, namespace: &str) -> SqlResult<()> {
    db.prepare(INDEX_USERS)?.execute((thread_id, namespace))?;
    db.prepare(MARK_INDEXED)?.execute((thread_id, namespace))?;
    Ok(())
}

/// Removes `doomed` checkpoints of `(thread_id, namespace)` with their pending writes and
/// users rows, then indexes what remains of the series; the (channel, version) pairs the
/// removed checkpoints named (the values that may now be unused), and how many it removed.
fn remove(
    db: &Db<'_>,
    thread_id: &str,
    namespace: &str,
    doomed: &Doomed,
) -> SqlResult<(BTreeSet<(String, String)>, u64)> {
    let mut named = BTreeSet::new();
    let mut removed = 0;
    {
        let mut writes = db.prepare(DELETE_ONES_WRITES)?;
        let mut row = db.prepare(DELETE_ONE)?;
        let mut users = db.prepare(DELETE_USERS_OF)?;
        for (id, versions) in doomed {
            named.extend(parse_versions(versions)?);
            writes.execute((thread_id, namespace, id))?;
            removed += row.execute((thread_id, namespace, id))? as u64;
            users.execute((thread_id, namespace, id, versions))?;
        }
    }
    // After the removal: the removed rows need no users rows.
    index_series(db, thread_id, namespace)?;
    Ok((named, removed))
}

/// Deletes each value of `(thread_id, namespace)` among `candidates` that no remaining
/// checkpoint uses; the series must be indexed.
fn drop_unused_values<'a>(
    db: &Db<'_>,
    thread_id: &str,
    namespace: &str,
    candidates: impl IntoIterator<Item = &'a (String, String)>,
) -> SqlResult<()> {
    let mut delete = db.prepare(DELETE_UNUSED_BLOB)?;
    for (channel, version) in candidates {
        delete.execute((thread_id, namespace, channel, version))?;
    }
    Ok(())
}

/// Removes `doomed` of one series and the values only they used; how many it removed.
fn remove_with_values(
    db: &Db<'_>,
    thread_id: &str,
    namespace: &str,
    doomed: &Doomed,
) -> SqlResult<u64> {
    if doomed.is_empty() {
        return Ok(0);
    }
    let (named, removed) = remove(db, thread_id, namespace, doomed)?;
    drop_unused_values(db, thread_id, namespace, &named)?;
    Ok(removed)
}

/// Removes the checkpoints of `(thread, namespace)` below `end` with their pending writes,
/// and every value they named that no checkpoint from `end` on names (retention's removal
/// of one namespace's oldest-first prefix). How many checkpoints it removed.
pub(crate) fn remove_before(
    db: &Db<'_>,
    thread_id: &str,
    namespace: &str,
    end: &str,
) -> SqlResult<u64> {
    let doomed = select_doomed(db, BELOW, (thread_id, namespace, end))?;
    remove_with_values(db, thread_id, namespace, &doomed)
}

/// Keeps the newest `keep_last` checkpoints of each namespace of a thread, and removes
/// every value of the thread that no survivor uses: not only those the removed
/// checkpoints named but also values no checkpoint names any more (a put that replaced a
/// checkpoint's map, `delete_for_runs` of the previous release), so this costs the
/// thread's values, one seek each. How many checkpoints it removed.
pub(crate) fn prune(db: &Db<'_>, thread_id: &str, keep_last: usize) -> SqlResult<u64> {
    let namespaces: Vec<String> = db
        .prepare(THREAD_NAMESPACES)?
        .query_map([thread_id], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let keep = i64::try_from(keep_last).unwrap_or(i64::MAX);
    let mut removed = 0;
    for namespace in &namespaces {
        let doomed = select_doomed(db, BEYOND_NEWEST, (thread_id, namespace, keep))?;
        // Every namespace is indexed, also one with nothing to remove: the sweep below
        // asks about all the thread's values.
        removed += remove(db, thread_id, namespace, &doomed)?.1;
    }
    let values: Vec<(String, String, String)> = db
        .prepare(THREAD_BLOB_KEYS)?
        .query_map([thread_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut delete = db.prepare(DELETE_UNUSED_BLOB)?;
    for (namespace, channel, version) in &values {
        delete.execute((thread_id, namespace, channel, version))?;
    }
    Ok(removed)
}

/// Removes the checkpoints whose metadata names one of `run_ids`, with their pending
/// writes and the values only they used; how many it removed.
pub(crate) fn delete_for_runs(db: &Db<'_>, run_ids: &[String]) -> SqlResult<u64> {
    // Per series, each checkpoint once (a run id may be listed twice).
    let mut series: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    let mut statement = db.prepare(RUN_ROWS)?;
    for run_id in run_ids {
        let mut rows = statement.query([run_id])?;
        while let Some(row) = rows.next()? {
            series
                .entry((row.get(0)?, row.get(1)?))
                .or_default()
                .insert(row.get(2)?, row.get(3)?);
        }
    }
    drop(statement);
    let mut removed = 0;
    for ((thread_id, namespace), doomed) in series {
        let doomed: Doomed = doomed.into_iter().collect();
        removed += remove_with_values(db, &thread_id, &namespace, &doomed)?;
    }
    Ok(removed)
}

/// Deletes a thread's users rows and checkpoint counts (`delete_thread`, before its
/// checkpoints, whose deletion then finds no count row to lower).
pub(crate) fn delete_thread_index(db: &Db<'_>, thread_id: &str) -> SqlResult<()> {
    db.prepare(DELETE_THREAD_USERS)?.execute([thread_id])?;
    db.prepare(DELETE_THREAD_SERIES)?.execute([thread_id])?;
    Ok(())
}

/// A row's `versions` column back as its (channel, version) pairs.
fn parse_versions(versions: &str) -> SqlResult<ChannelVersions> {
    serde_json::from_str(versions).map_err(|err| {
        StorageError::serialization(format!("stored channel versions are unreadable: {err}")).into()
    })
}
