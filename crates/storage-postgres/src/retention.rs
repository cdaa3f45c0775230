//! Retention sweeps (see `storage_core::retention`): one shape for the four kinds.
//!
//! A sweep lists the kind's series in key order, a page at a time (bounded memory), and
//! trims each in a transaction of its own that first takes the lock the kind's writers
//! take: the session's `message_counters` row for messages (as pop, rewind and compaction
//! do; appends' counter upsert waits for it), the scope's `context_heads` row for context
//! versions (stores move it first), the name's `artifact_counters` row for artifact
//! versions (saves update it), and the thread's advisory lock for checkpoints (taken
//! exclusively, as `copy_thread`, prune and delete take it; every put holds it shared
//! until it commits, so no put commits between the sweep deciding which values no
//! checkpoint uses and removing them). Under READ COMMITTED every statement after the lock
//! sees what the series' previous writers committed, so the newest record is always
//! among the survivors and survivors stay a contiguous run ending at it. Two sweeps of
//! one series queue on the same lock; the second removes only what is still expired.
//!
//! Messages and artifact versions count their stored records (`stored` on the counter row,
//! raised by the counter upsert of every statement that stores them, lowered by V5's
//! statement triggers on every delete): the lock statement reads it
//! under the lock, so `stored - keep_last` records go, and a series with none to remove
//! and no age limit is committed without touching its records (without an age limit the
//! listing leaves out the series storing no more than `keep_last` in the first place).
//!
//! Checkpoint series count their rows too (V7), in the probe itself: the deltas of the
//! series' indexed rows (written by triggers only, so every writer, the previous release's
//! included, keeps them) plus its unindexed rows (stored since its last removal, counted
//! through the partial index). One statement reads both and steps to the first kept
//! checkpoint, so one snapshot: `delete_for_runs`, which takes no thread lock, cannot
//! commit between the count and the rows it counts. Racing the sweep it leaves what a
//! serial order would.
//!
//! Per series, after the lock: one statement probes the newest position, the first kept
//! by count (context versions: by number; the other kinds: `count - keep_last` places
//! above the oldest, `ORDER BY .. LIMIT 1 OFFSET count - keep_last`, which steps over the
//! removed index entries only) and the oldest; for an age limit the
//! records from there on are read oldest first in growing pages (8, 16, .. 256) and
//! decoded until the first one young enough (or undecodable: a record whose age cannot
//! be read counts as young, with a warning naming the series, so one bad record never
//! fails the sweep nor loses what follows it). Then one range removal through the code the
//! kind's own removals use. A series with nothing to remove costs the lock and the probe
//! (and, with an age limit, its oldest record); a counted one under `keep_last` alone
//! costs nothing.

use storage_core::time::Timestamp;
use storage_core::{wire, ArtifactMeta, Checkpoint, Message, Retention, TaskContext};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::backend::{to_i64, PostgresBackend};
use crate::error::PgResult;
use crate::sql::Sql;

/// Series listed per statement.
const PAGE: i64 = 100;

/// The first and the largest page of records an age walk reads.
const WALK_FIRST: i64 = 8;
const WALK_MAX: i64 = 256;

/// The four kinds of series.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Messages,
    ContextVersions,
    Checkpoints,
    ArtifactVersions,
}

/// A position in a series: a number, or a checkpoint id.
#[derive(Debug, Clone, PartialEq)]
enum Position {
    Number(i64),
    Id(String),
}

impl Position {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Position::Number(n) => n,
            Position::Id(id) => id,
        }
    }

    fn number(&self) -> i64 {
        match self {
            Position::Number(n) => *n,
            Position::Id(_) => i64::MIN,
        }
    }
}

impl Kind {
    /// The next page of series keys after `$1` (and `$2`), in key order; counted kinds
    /// list only the series storing more records than their last parameter.
    fn series_page(self) -> &'static str {
        match self {
            // Every session that ever had a message has a counter row.
            Kind::Messages => {
                "SELECT session_id FROM message_counters WHERE session_id > $1 \
                 AND stored > $3 ORDER BY session_id LIMIT $2"
            }
            Kind::ContextVersions => {
                "SELECT scope FROM context_heads WHERE scope > $1 ORDER BY scope LIMIT $2"
            }
            // The distinct (thread, namespace) pairs of the primary key, one index seek
            // each (a loose index scan).
            Kind::Checkpoints => {
                "WITH RECURSIVE pairs AS (
                    (SELECT thread_id, ns FROM checkpoints WHERE (thread_id, ns) > ($1, $2)
                     ORDER BY thread_id, ns LIMIT 1)
                    UNION ALL
                    SELECT n.thread_id, n.ns FROM pairs p CROSS JOIN LATERAL (
                        SELECT c.thread_id, c.ns FROM checkpoints c
                        WHERE (c.thread_id, c.ns) > (p.thread_id, p.ns)
                        ORDER BY c.thread_id, c.ns LIMIT 1) n
                 )
                 SELECT thread_id, ns FROM pairs LIMIT $3"
            }
            // A name has a counter row exactly while it has a version.
            Kind::ArtifactVersions => {
                "SELECT scope, name FROM artifact_counters WHERE (scope, name) > ($1, $2) \
                 AND stored > $4 ORDER BY scope, name LIMIT $3"
            }
        }
    }

    /// Whether the kind's series count their stored records (`stored`, V5).
    fn counted(self) -> bool {
        matches!(self, Kind::Messages | Kind::ArtifactVersions)
    }

    /// How many text columns name a series (`$1`, `$2`).
    fn key_columns(self) -> usize {
        match self {
            Kind::Messages | Kind::ContextVersions => 1,
            Kind::Checkpoints | Kind::ArtifactVersions => 2,
        }
    }

    /// The records' table, position column, record column, and the condition naming one
    /// series.
    fn columns(self) -> [&'static str; 4] {
        match self {
            Kind::Messages => ["messages", "sequence", "record", "session_id = $1"],
            Kind::ContextVersions => ["context_versions", "version", "record", "scope = $1"],
            Kind::Checkpoints => [
                "checkpoints",
                "checkpoint_id",
                "record",
                "thread_id = $1 AND ns = $2",
            ],
            Kind::ArtifactVersions => ["artifacts", "version", "meta", "scope = $1 AND name = $2"],
        }
    }

    fn position(self, row: &Row, column: usize) -> Option<Position> {
        match self {
            Kind::Checkpoints => row.get::<_, Option<String>>(column).map(Position::Id),
            _ => row.get::<_, Option<i64>>(column).map(Position::Number),
        }
    }

    /// A record's age.
    fn age(self, record: &[u8]) -> PgResult<Timestamp> {
        Ok(match self {
            Kind::Messages => wire::decode::<Message>(record)?.created_at,
            Kind::ContextVersions => wire::decode::<TaskContext>(record)?.updated_at,
            Kind::Checkpoints => wire::decode::<Checkpoint>(record)?.created_at.to_utc(),
            Kind::ArtifactVersions => wire::decode::<ArtifactMeta>(record)?.created_at,
        })
    }

    /// Whether a record is young enough to end the expired prefix. A record whose age
    /// cannot be read counts as young, so it and everything after it stay and the sweep
    /// goes on with the other series; the warning names the series, never a value.
    fn young(self, record: &[u8], cutoff: Timestamp, key: &[String]) -> bool {
        match self.age(record) {
            Ok(age) => age >= cutoff,
            Err(_) => {
                tracing::warn!(
                    backend = "postgres",
                    kind = ?self,
                    series = ?key,
                    "retention keeps a record whose age cannot be decoded, and the rest of \
                     its series after it"
                );
                true
            }
        }
    }

    /// Takes the lock the series' writers take: `None` when the series is gone, else the
    /// number of records it stores, read under that lock, for the kinds that count them.
    async fn lock(
        self,
        tx: &impl Sql,
        schema: &str,
        key: &[String],
    ) -> PgResult<Option<Option<i64>>> {
        // The counter row is the lock messages' and artifacts' writers take (see
        // `compaction::lock_session`, `artifacts::lock_name`); its count is exact under it.
        let stored = |sql| async move {
            let row = tx.opt(sql, &with_key(key, &[])).await?;
            PgResult::Ok(row.map(|row| Some(row.get::<_, i64>(0))))
        };
        match self {
            Kind::Messages => {
                stored("SELECT stored FROM message_counters WHERE session_id = $1 FOR UPDATE").await
            }
            Kind::ContextVersions => Ok(crate::task_context::lock_head(tx, &key[0])
                .await?
                .then_some(None)),
            Kind::Checkpoints => {
                crate::checkpoint_removal::lock_for_removal(tx, schema, &key[0]).await?;
                Ok(Some(None))
            }
            Kind::ArtifactVersions => {
                stored(
                    "SELECT stored FROM artifact_counters WHERE scope = $1 AND name = $2 \
                     FOR UPDATE",
                )
                .await
            }
        }
    }

    /// Removes the records of a series below `end`; how many it removed.
    async fn remove(self, tx: &impl Sql, key: &[String], end: &Position) -> PgResult<u64> {
        let below = end.number().saturating_sub(1);
        match (self, end) {
            (Kind::Messages, _) => {
                crate::compaction::remove_range(tx, &key[0], i64::MIN, below).await
            }
            (Kind::ContextVersions, _) => {
                crate::task_context::trim(tx, &key[0], end.number()).await
            }
            (Kind::Checkpoints, Position::Id(end)) => {
                crate::checkpoint_removal::remove_before(tx, &key[0], &key[1], end).await
            }
            (Kind::Checkpoints, Position::Number(_)) => Ok(0),
            (Kind::ArtifactVersions, _) => {
                crate::artifacts::delete_versions(tx, &key[0], &key[1], i64::MIN, below).await
            }
        }
    }
}

/// The statements of one kind, filled in once per sweep.
struct Statements {
    /// The newest position, the first one kept by count (if any goes by count), and the
    /// oldest.
    probe: String,
    /// Whether `probe` takes `{p1}` (how many go, or how many are kept).
    probe_takes_skip: bool,
    /// Records oldest first from a position (`>=`) or after one (`>`), below the newest.
    walk_from: String,
    walk_after: String,
}

impl Statements {
    fn of(kind: Kind, retention: &Retention) -> Self {
        let [table, position, record, series] = kind.columns();
        let n = kind.key_columns();
        let fill = |sql: &str| {
            sql.replace("{table}", table)
                .replace("{pos}", position)
                .replace("{record}", record)
                .replace("{series}", series)
                .replace("{p1}", &format!("${}", n + 1))
                .replace("{p2}", &format!("${}", n + 2))
                .replace("{p3}", &format!("${}", n + 3))
        };
        let walk = |op: &str| {
            fill(&format!(
                "SELECT {{pos}}, {{record}} FROM {{table}} WHERE {{series}} \
                 AND {{pos}} {op} {{p1}} AND {{pos}} < {{p2}} ORDER BY {{pos}} LIMIT {{p3}}"
            ))
        };
        let probe = match (kind, retention.keep_last) {
            // Context versions count by number: no walk at all (see `keep_from`).
            (Kind::ContextVersions, _) => {
                "SELECT (SELECT {pos} FROM {table} WHERE {series} ORDER BY {pos} DESC LIMIT 1), \
                 NULL::bigint, \
                 (SELECT {pos} FROM {table} WHERE {series} ORDER BY {pos} LIMIT 1)"
            }
            // An age limit alone: the walk starts at the oldest, and the count (every
            // unindexed row: all of a series never removed from) would be wasted.
            (Kind::Checkpoints, None) => {
                "SELECT (SELECT {pos} FROM {table} WHERE {series} ORDER BY {pos} DESC LIMIT 1), \
                 NULL::text, \
                 (SELECT {pos} FROM {table} WHERE {series} ORDER BY {pos} LIMIT 1)"
            }
            // `{p1}` is `keep_last`. The series' count (V7: the deltas of its indexed rows
            // plus its unindexed rows, through the partial index) is read in the same
            // statement, so the same snapshot as the rows it is stepped over: a
            // `delete_for_runs` committing meanwhile (it takes no thread lock) cannot make
            // them disagree. `OFFSET 0` keeps the planner from inlining the count into both
            // of its uses (counting twice).
            (Kind::Checkpoints, Some(_)) => {
                "SELECT (SELECT {pos} FROM {table} WHERE {series} ORDER BY {pos} DESC LIMIT 1), \
                 CASE WHEN n.stored > {p1}::bigint THEN (SELECT {pos} FROM {table} \
                  WHERE {series} ORDER BY {pos} LIMIT 1 OFFSET n.stored - {p1}::bigint) END, \
                 (SELECT {pos} FROM {table} WHERE {series} ORDER BY {pos} LIMIT 1) \
                 FROM (SELECT (SELECT coalesce(sum(delta), 0) FROM checkpoint_count_deltas \
                  WHERE {series})::bigint + (SELECT count(*) FROM {table} WHERE {series} \
                  AND NOT indexed) AS stored OFFSET 0) n"
            }
            // Counted series: `{p1}` is how many records go by count, so the first kept
            // one is `{p1}` places above the oldest, reached by stepping over the removed
            // index entries only.
            (Kind::Messages | Kind::ArtifactVersions, _) => {
                "SELECT (SELECT {pos} FROM {table} WHERE {series} ORDER BY {pos} DESC LIMIT 1), \
                 CASE WHEN {p1}::bigint > 0 THEN (SELECT {pos} FROM {table} WHERE {series} \
                  ORDER BY {pos} LIMIT 1 OFFSET {p1}) END, \
                 (SELECT {pos} FROM {table} WHERE {series} ORDER BY {pos} LIMIT 1)"
            }
        };
        Statements {
            probe_takes_skip: probe.contains("{p1}"),
            probe: fill(probe),
            walk_from: walk(">="),
            walk_after: walk(">"),
        }
    }
}

fn with_key<'a>(
    key: &'a [String],
    extra: &[&'a (dyn ToSql + Sync)],
) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut params: Vec<&(dyn ToSql + Sync)> = key
        .iter()
        .map(|column| column as &(dyn ToSql + Sync))
        .collect();
    params.extend_from_slice(extra);
    params
}

/// Where the series' expired prefix ends: every record below the returned position has
/// expired, the one there has not (or is the newest). `None` when nothing has expired.
async fn prefix_end(
    tx: &impl Sql,
    kind: Kind,
    sql: &Statements,
    key: &[String],
    retention: &Retention,
    stored: Option<i64>,
) -> PgResult<Option<Position>> {
    let skip = match stored {
        // How many go by count; none (and no age limit): the records are not touched.
        Some(stored) => {
            let keep = to_i64(retention.keep_last.unwrap_or(u64::MAX));
            let remove = stored.saturating_sub(keep).max(0);
            if remove == 0 && retention.created_before.is_none() {
                return Ok(None);
            }
            remove
        }
        // Checkpoints: how many to keep, the probe counting the series itself.
        None => to_i64(retention.keep_last.unwrap_or(u64::MAX)),
    };
    // The context probe (by number) and an uncounted checkpoint probe take no skip.
    let extra: &[&(dyn ToSql + Sync)] = match sql.probe_takes_skip {
        true => &[&skip],
        false => &[],
    };
    let probe = tx.one(&sql.probe, &with_key(key, extra)).await?;
    let (Some(newest), Some(oldest)) = (kind.position(&probe, 0), kind.position(&probe, 2)) else {
        return Ok(None);
    };
    // The first record kept by count; every one below it has expired.
    let mut end = match (kind, &newest, &oldest) {
        (Kind::ContextVersions, Position::Number(newest), Position::Number(oldest)) => {
            let keep_from = retention.keep_from(u64::try_from(*newest).unwrap_or(0));
            Position::Number(to_i64(keep_from).max(*oldest))
        }
        _ => retention
            .keep_last
            .and_then(|_| kind.position(&probe, 1))
            .unwrap_or_else(|| oldest.clone()),
    };
    if let Some(cutoff) = retention.created_before {
        let mut walk = &sql.walk_from;
        let mut page = WALK_FIRST;
        end = 'walk: loop {
            let rows = tx
                .rows(walk, &with_key(key, &[end.param(), newest.param(), &page]))
                .await?;
            let mut last = None;
            for row in &rows {
                let position = kind.position(row, 0);
                if kind.young(row.get(1), cutoff, key) {
                    break 'walk position.unwrap_or_else(|| newest.clone());
                }
                last = position;
            }
            match last {
                Some(last) if rows.len() as i64 == page => {
                    end = last;
                    walk = &sql.walk_after;
                    page = (page * 2).min(WALK_MAX);
                }
                // Every record below the newest has expired.
                _ => break newest.clone(),
            }
        };
    }
    Ok((end != oldest).then_some(end))
}

impl PostgresBackend {
    /// Applies `retention` to every series of `kind`; how many records it removed.
    pub(crate) async fn retain_op(&self, kind: Kind, retention: Retention) -> PgResult<u64> {
        retention.check()?;
        if retention.is_unbounded() {
            return Ok(0);
        }
        let sql = Statements::of(kind, &retention);
        let mut client = self.client().await?;
        // Keys are never empty, so "" sorts before every one of them.
        let mut after = vec![String::new(); kind.key_columns()];
        let mut removed = 0;
        // A counted series storing no more than `keep_last` records (none at all, with an
        // age limit) has nothing to remove: the listing leaves it out, so a sweep costs no
        // round trip per such series. The count is read again under the series' lock.
        let least = match retention.created_before {
            None => to_i64(retention.keep_last.unwrap_or(0)),
            Some(_) => 0,
        };
        let page: Vec<&(dyn ToSql + Sync)> = if kind.counted() {
            vec![&PAGE, &least]
        } else {
            vec![&PAGE]
        };
        loop {
            let rows = client
                .rows(kind.series_page(), &with_key(&after, &page))
                .await?;
            for row in &rows {
                let key: Vec<String> = (0..kind.key_columns()).map(|c| row.get(c)).collect();
                let tx = client.transaction().await?;
                if let Some(stored) = kind.lock(&tx, self.schema(), &key).await? {
                    let end = prefix_end(&tx, kind, &sql, &key, &retention, stored).await?;
                    if let Some(end) = end {
                        removed += kind.remove(&tx, &key, &end).await?;
                    }
                }
                tx.commit().await?;
                after = key;
            }
            if (rows.len() as i64) < PAGE {
                return Ok(removed);
            }
        }
    }
}
