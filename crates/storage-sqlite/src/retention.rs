//! Retention sweeps (see `storage_core::retention`): one shape for the four kinds.
//!
//! A sweep walks the kind's series in key order, a page of series per write job (so it
//! holds no more than a page's keys in memory, and each job commits on its own). A write
//! job runs in the writer's transaction, which holds SQLite's write lock: no append,
//! store, put or save (of this or another process) runs between finding a series' expired
//! prefix and removing it, so the newest record is never removed and survivors are always
//! a contiguous run ending at the newest. Two sweeps at once take turns on the lock; the
//! second finds what the first left, so it removes only what is still expired.
//!
//! Per series, for `keep_last`: messages, artifact versions and checkpoints count their
//! stored records (messages and artifact versions: `stored` on the counter row, kept by
//! V4's triggers; checkpoints: V6's count of a series' indexed checkpoints plus its
//! unindexed ones, put since its last removal, through V5's partial index), so `stored -
//! keep_last` go and the first kept one is that many places above the oldest (`ORDER BY ..
//! LIMIT 1 OFFSET stored - keep_last`, stepping over the removed index entries only); a
//! message or artifact series storing no more than `keep_last` is not even listed without
//! an age limit. Context versions count by number. For an age limit the records from
//! there on (below the newest, one index probe),
//! oldest first, decoded one by one until the first one young enough (its cursor reads no
//! further; a record whose age cannot be read counts as young, with a warning naming the
//! series, so one bad record never fails the sweep nor loses what follows it). Then one
//! range removal, through the code the kind's own removals use.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, ToSql};
use storage_core::time::Timestamp;
use storage_core::{wire, ArtifactMeta, Checkpoint, Message, Retention, TaskContext};

use crate::backend::{to_i64, SqliteBackend};
use crate::engine::Db;
use crate::error::SqlResult;

/// Series visited per write job.
const PAGE: usize = 64;

/// One kind's series: where they are listed, where their records are, and how a prefix of
/// one goes.
pub(crate) struct Kind {
    /// The next series key after `:a` (and `:b`), in key order; with `skips_short`, it
    /// skips the series storing no more than `:least` records.
    next_series: &'static str,
    /// Whether `next_series` takes `:least` (the counted kinds whose counts are rows of the
    /// table listed).
    skips_short: bool,
    /// How many text columns name a series (`:a`, `:b`).
    key_columns: usize,
    /// The records' table, the position column that orders a series, the record column.
    table: &'static str,
    position: &'static str,
    record: &'static str,
    /// The condition naming one series by `:a` (and `:b`).
    series: &'static str,
    /// How `keep_last` counts the series' records.
    count: Count,
    /// A record's age.
    age: fn(&[u8]) -> SqlResult<Timestamp>,
    /// Removes the records of a series below a position; how many it removed.
    remove: fn(&Db<'_>, &[String], &Value) -> SqlResult<u64>,
}

pub(crate) const MESSAGES: Kind = Kind {
    // Every session that ever had a message has a counter row.
    next_series: "SELECT session_id FROM \"{ns}.message_counters\" WHERE session_id > :a \
         AND stored > :least ORDER BY session_id LIMIT 1",
    skips_short: true,
    key_columns: 1,
    table: "messages",
    position: "sequence",
    record: "record",
    series: "session_id = :a",
    count: Count::Stored("SELECT stored FROM \"{ns}.message_counters\" WHERE session_id = :a"),
    age: |record| Ok(wire::decode::<Message>(record)?.created_at),
    remove: |db, key, end| {
        crate::compaction::remove_range(db, &key[0], i64::MIN, integer(end).saturating_sub(1))
    },
};

pub(crate) const CONTEXT_VERSIONS: Kind = Kind {
    next_series: "SELECT scope FROM \"{ns}.context_heads\" WHERE scope > :a \
         ORDER BY scope LIMIT 1",
    skips_short: false,
    key_columns: 1,
    table: "context_versions",
    position: "version",
    record: "record",
    series: "scope = :a",
    count: Count::ByNumber,
    age: |record| Ok(wire::decode::<TaskContext>(record)?.updated_at),
    remove: |db, key, end| crate::task_context::trim(db, &key[0], integer(end)),
};

pub(crate) const CHECKPOINTS: Kind = Kind {
    // The next (thread, namespace) of the primary key: one index seek per series. Not
    // `(thread_id, ns) > (:a, :b)`: SQLite walks that row-value range through every
    // checkpoint of the series `(:a, :b)` (756 us at 10,000 against 2 us), while a range on
    // `ns` under an equal `thread_id`, then one on `thread_id`, are seeks.
    next_series: "SELECT thread_id, ns FROM (SELECT thread_id, ns FROM \"{ns}.checkpoints\" \
         WHERE thread_id = :a AND ns > :b ORDER BY ns LIMIT 1) \
         UNION ALL SELECT thread_id, ns FROM (SELECT thread_id, ns FROM \"{ns}.checkpoints\" \
         WHERE thread_id > :a ORDER BY thread_id, ns LIMIT 1) \
         ORDER BY thread_id, ns LIMIT 1",
    skips_short: false,
    key_columns: 2,
    table: "checkpoints",
    position: "checkpoint_id",
    record: "record",
    series: "thread_id = :a AND ns = :b",
    // The indexed checkpoints V6 counts, and the unindexed ones (put since the series' last
    // removal) through V5's partial index.
    count: Count::Stored(
        "SELECT coalesce((SELECT indexed FROM \"{ns}.checkpoint_series\" \
         WHERE thread_id = :a AND ns = :b), 0) + (SELECT count(*) FROM \"{ns}.checkpoints\" \
         WHERE thread_id = :a AND ns = :b AND indexed = 0)",
    ),
    age: |record| Ok(wire::decode::<Checkpoint>(record)?.created_at.to_utc()),
    remove: |db, key, end| {
        let Value::Text(end) = end else {
            return Ok(0);
        };
        crate::checkpoint_removal::remove_before(db, &key[0], &key[1], end)
    },
};

pub(crate) const ARTIFACT_VERSIONS: Kind = Kind {
    // A name has a counter row exactly while it has a version.
    next_series: "SELECT scope, name FROM \"{ns}.artifact_counters\" \
         WHERE (scope, name) > (:a, :b) AND stored > :least ORDER BY scope, name LIMIT 1",
    skips_short: true,
    key_columns: 2,
    table: "artifacts",
    position: "version",
    record: "meta",
    series: "scope = :a AND name = :b",
    count: Count::Stored(
        "SELECT stored FROM \"{ns}.artifact_counters\" WHERE scope = :a AND name = :b",
    ),
    age: |meta| Ok(wire::decode::<ArtifactMeta>(meta)?.created_at),
    remove: |db, key, end| {
        crate::artifacts::delete_versions(
            db,
            &key[0],
            &key[1],
            i64::MIN,
            integer(end).saturating_sub(1),
        )
    },
};

/// How a kind's `keep_last` finds the first record it keeps.
pub(crate) enum Count {
    /// By version number (context versions, as a store's `keep_versions` does): the
    /// newest number minus `keep_last`, with no read of the records.
    ByNumber,
    /// By the number of records the series named by `:a` (and `:b`) stores, which this
    /// statement reads, kept by the database (V4's and V6's triggers): the first kept one is
    /// `stored - keep_last` places above the oldest.
    Stored(&'static str),
}

fn integer(position: &Value) -> i64 {
    match position {
        Value::Integer(n) => *n,
        _ => i64::MIN,
    }
}

/// The statements of one kind, filled in once per sweep.
struct Statements {
    newest: String,
    nth_oldest: String,
    walk: String,
    walk_from: String,
}

impl Statements {
    fn of(kind: &Kind) -> Self {
        let fill = |sql: &str| {
            sql.replace("{table}", kind.table)
                .replace("{pos}", kind.position)
                .replace("{record}", kind.record)
                .replace("{series}", kind.series)
        };
        Statements {
            newest: fill(
                "SELECT {pos} FROM \"{ns}.{table}\" WHERE {series} ORDER BY {pos} DESC LIMIT 1",
            ),
            nth_oldest: fill(
                "SELECT {pos} FROM \"{ns}.{table}\" WHERE {series} \
                 ORDER BY {pos} LIMIT 1 OFFSET :skip",
            ),
            walk: fill(
                "SELECT {pos}, {record} FROM \"{ns}.{table}\" WHERE {series} \
                 AND {pos} < :newest ORDER BY {pos}",
            ),
            walk_from: fill(
                "SELECT {pos}, {record} FROM \"{ns}.{table}\" WHERE {series} \
                 AND {pos} >= :from AND {pos} < :newest ORDER BY {pos}",
            ),
        }
    }
}

/// The named parameters `:a`, `:b` of a series key, and `extra`.
fn params<'a>(
    key: &'a [String],
    extra: &[(&'static str, &'a dyn ToSql)],
) -> Vec<(&'static str, &'a dyn ToSql)> {
    let mut params: Vec<(&'static str, &dyn ToSql)> = [":a", ":b"]
        .into_iter()
        .zip(key.iter().map(|column| column as &dyn ToSql))
        .collect();
    params.extend_from_slice(extra);
    params
}

/// Whether a record is young enough to end the expired prefix. A record whose age cannot
/// be read counts as young, so it and everything after it stay and the sweep goes on with
/// the other series; the warning names the series, never a value.
fn young(kind: &Kind, record: &[u8], cutoff: Timestamp, key: &[String]) -> bool {
    match (kind.age)(record) {
        Ok(age) => age >= cutoff,
        Err(_) => {
            tracing::warn!(
                backend = "sqlite",
                table = kind.table,
                series = ?key,
                "retention keeps a record whose age cannot be decoded, and the rest of its \
                 series after it"
            );
            true
        }
    }
}

/// Where the series' expired prefix ends: every record below the returned position has
/// expired, the one there has not (or is the newest). `None` for an empty series.
fn prefix_end(
    db: &Db<'_>,
    kind: &Kind,
    sql: &Statements,
    key: &[String],
    retention: &Retention,
) -> SqlResult<Option<Value>> {
    // A counted series: the first record kept by count is `stored - keep_last` places
    // above the oldest, reached by stepping over the removed index entries only.
    let mut counted = None;
    if let (Some(keep), Count::Stored(stored)) = (retention.keep_last, &kind.count) {
        let stored: i64 = db
            .prepare(stored)?
            .query_row(params(key, &[]).as_slice(), |row| row.get(0))
            .optional()?
            .unwrap_or(0);
        let remove = stored.saturating_sub(to_i64(keep));
        counted = Some(if remove > 0 {
            db.prepare(&sql.nth_oldest)?
                .query_row(params(key, &[(":skip", &remove)]).as_slice(), |row| {
                    row.get::<_, Value>(0)
                })
                .optional()?
        } else {
            None
        });
        // Nothing to remove by count and no age limit: the records are not touched.
        if retention.created_before.is_none() {
            return Ok(counted.flatten());
        }
    }
    let Some(newest) = db
        .prepare(&sql.newest)?
        .query_row(params(key, &[]).as_slice(), |row| row.get::<_, Value>(0))
        .optional()?
    else {
        return Ok(None);
    };
    // The first record kept by count; every one below it has expired.
    let mut end = match (&kind.count, retention.keep_last) {
        (Count::Stored(_), _) => counted.flatten(),
        (Count::ByNumber, Some(_)) => {
            let newest = u64::try_from(integer(&newest)).unwrap_or(0);
            Some(Value::Integer(to_i64(retention.keep_from(newest))))
        }
        (Count::ByNumber, None) => None,
    };
    if let Some(cutoff) = retention.created_before {
        let mut statement;
        let mut rows = match &end {
            Some(from) => {
                statement = db.prepare(&sql.walk_from)?;
                statement.query(params(key, &[(":from", from), (":newest", &newest)]).as_slice())?
            }
            None => {
                statement = db.prepare(&sql.walk)?;
                statement.query(params(key, &[(":newest", &newest)]).as_slice())?
            }
        };
        let mut stop = None;
        while let Some(row) = rows.next()? {
            if young(kind, row.get_ref(1)?.as_blob()?, cutoff, key) {
                stop = Some(row.get::<_, Value>(0)?);
                break;
            }
        }
        end = Some(stop.unwrap_or(newest));
    }
    Ok(end)
}

/// Trims the next page of series after `after`, in the writer's transaction: how many
/// records it removed, and the last series visited (`None` when there are no more).
fn trim_page(
    db: &Db<'_>,
    kind: &Kind,
    mut key: Vec<String>,
    retention: &Retention,
) -> SqlResult<(u64, Option<Vec<String>>)> {
    let sql = Statements::of(kind);
    let mut removed = 0;
    // A counted series storing no more than `keep_last` records (none at all, with an age
    // limit) has nothing to remove: the listing steps over it.
    let least = match retention.created_before {
        None => to_i64(retention.keep_last.unwrap_or(0)),
        Some(_) => 0,
    };
    let extra: &[(&'static str, &dyn ToSql)] = match kind.skips_short {
        true => &[(":least", &least)],
        false => &[],
    };
    for _ in 0..PAGE {
        let next = db
            .prepare(kind.next_series)?
            .query_row(params(&key, extra).as_slice(), |row| {
                (0..kind.key_columns)
                    .map(|column| row.get::<_, String>(column))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .optional()?;
        let Some(next) = next else {
            return Ok((removed, None));
        };
        key = next;
        if let Some(end) = prefix_end(db, kind, &sql, &key, retention)? {
            removed += (kind.remove)(db, &key, &end)?;
        }
    }
    Ok((removed, Some(key)))
}

impl SqliteBackend {
    /// Applies `retention` to every series of `kind`; how many records it removed.
    pub(crate) async fn retain_op(
        &self,
        kind: &'static Kind,
        retention: Retention,
    ) -> SqlResult<u64> {
        retention.check()?;
        if retention.is_unbounded() {
            return Ok(0);
        }
        // Keys are never empty, so "" sorts before every one of them.
        let mut after = vec![String::new(); kind.key_columns];
        let mut removed = 0;
        loop {
            let (count, next) = self
                .engine
                .write(move |db| trim_page(db, kind, after, &retention))
                .await?;
            removed += count;
            match next {
                Some(key) => after = key,
                None => return Ok(removed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, StatementStatus};
    use storage_core::Retention;

    use super::{trim_page, Count, Statements, CHECKPOINTS};
    use crate::engine::Db;

    /// SQLite's virtual-machine steps run by the cached statement `sql`.
    fn steps(db: &Db<'_>, sql: &str) -> i32 {
        db.prepare(sql).unwrap().get_status(StatementStatus::VmStep)
    }

    /// The statements a checkpoint sweep runs to find its series and where a series'
    /// removal ends (listing, count, first kept) take about as many steps beside a series
    /// of 10,000 checkpoints as beside one of 100. Listing by `(thread_id, ns) > (:a, :b)`
    /// stepped through all 10,000 (89,973 listing steps against 873); before V6 the first
    /// kept one was found `keep_last - 1` places below the newest, over every kept one.
    #[test]
    fn a_checkpoint_sweep_finds_what_goes_without_stepping_over_what_stays() {
        let Count::Stored(count) = CHECKPOINTS.count else {
            panic!("checkpoints are counted");
        };
        let sql = Statements::of(&CHECKPOINTS);
        let mut used = Vec::new();
        for size in [100_u32, 10_000] {
            let conn = Connection::open_in_memory().unwrap();
            let db = Db::new(&conn, "cost");
            crate::schema::migrate(&db, "cost").unwrap();
            // Series ("t", "") of `size`, all but the newest 10 indexed by an earlier removal,
            // and series ("u", "") after it.
            let mut insert = conn
                .prepare(
                    "INSERT INTO \"cost.checkpoints\" (thread_id, ns, checkpoint_id, versions, \
                     record) VALUES (?1, '', ?2, '{}', x'')",
                )
                .unwrap();
            for n in 0..size {
                insert.execute(("t", format!("{n:08}"))).unwrap();
            }
            insert.execute(("u", "00000000")).unwrap();
            conn.execute(
                "UPDATE \"cost.checkpoints\" SET indexed = 1 \
                 WHERE thread_id = 't' AND checkpoint_id < ?1",
                [format!("{:08}", size - 10)],
            )
            .unwrap();
            let retention = Retention {
                created_before: None,
                keep_last: Some(u64::from(size) - 10),
            };
            let (removed, _) =
                trim_page(&db, &CHECKPOINTS, vec![String::new(); 2], &retention).unwrap();
            assert_eq!(removed, 10);
            used.push(
                [CHECKPOINTS.next_series, count, &sql.nth_oldest]
                    .map(|statement| steps(&db, statement)),
            );
        }
        let total = |steps: &[i32; 3]| steps.iter().sum::<i32>();
        assert!(
            total(&used[1]) <= 2 * total(&used[0]),
            "steps (listing, count, first kept) at 100: {:?}, at 10,000: {:?}",
            used[0],
            used[1]
        );
    }
}
