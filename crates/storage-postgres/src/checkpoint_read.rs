//! Reading checkpoints: one statement returns the selected checkpoint rows and, once each,
//! the channel values they name.
//!
//! Consecutive checkpoints of a thread share most of their values (a step changes one
//! channel), so a page of ten names about 19 distinct values, not 100. The statement looks
//! each distinct (thread, namespace, channel, version) up once and the client decodes it
//! once, handing it to every checkpoint that names it.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;
use storage_core::{wire, ChannelValue, Checkpoint, CheckpointTuple};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::backend::PostgresBackend;
use crate::error::PgResult;
use crate::sql::Sql;

/// The checkpoint rows and the values they name, in one statement (one snapshot).
///
/// `{from}` is the selection of checkpoint rows, already limited; naming it twice makes
/// PostgreSQL compute it once. A checkpoint row has a NULL `version`; a value row has the
/// channel in `checkpoint_id`, its version in `version` and the value in `record`. Each
/// value is a scalar subquery on the blob table's full primary key, so the plan is one
/// index lookup per distinct value whatever the statistics say, never a scan of the
/// thread's blobs; a version with no stored value comes back as NULL and is left out.
///
/// A read of at most one checkpoint (a get) skips the DISTINCT: a checkpoint names each
/// channel once, so there is nothing to merge and the aggregation would only cost time.
///
/// There is no outer ORDER BY: the rows are ordered on the client (a sort here would copy
/// every value once more), by the same key the selection's ORDER BY uses.
const READ: &str = "\
WITH c AS ({from}),
keys AS (
    SELECT {distinct} c.thread_id, c.ns, v.channel, v.version
    FROM c, unnest(c.channels, c.versions) AS v(channel, version)
)
SELECT c.thread_id, c.ns, c.checkpoint_id, NULL::text AS version, c.record,
       c.channels, c.versions,
       (SELECT array_agg(w.record) FROM checkpoint_writes w
        WHERE w.thread_id = c.thread_id AND w.ns = c.ns
          AND w.checkpoint_id = c.checkpoint_id) AS writes
FROM c
UNION ALL
SELECT k.thread_id, k.ns, k.channel, k.version,
       (SELECT b.value FROM checkpoint_blobs b
        WHERE b.thread_id = k.thread_id AND b.ns = k.ns
          AND b.channel = k.channel AND b.version = k.version),
       NULL, NULL, NULL
FROM keys k";

/// Which checkpoint rows a read selects, in the order and amount it returns them.
#[derive(Default)]
pub(crate) struct Selection<'a> {
    /// `None` selects across every thread.
    pub(crate) thread_id: Option<&'a str>,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) checkpoint_id: Option<&'a str>,
    pub(crate) before: Option<&'a str>,
    pub(crate) filter_keys: Vec<String>,
    pub(crate) filter_values: Vec<Value>,
    pub(crate) limit: Option<i64>,
}

impl Selection<'_> {
    /// Which parts are set: the statement's text depends on nothing else.
    fn shape(&self) -> usize {
        [
            self.thread_id.is_some(),
            self.namespace.is_some(),
            self.checkpoint_id.is_some(),
            self.before.is_some(),
            !self.filter_keys.is_empty(),
            self.limit.is_some(),
            self.thread_id.is_some() && self.limit == Some(1),
        ]
        .iter()
        .enumerate()
        .map(|(bit, set)| usize::from(*set) << bit)
        .sum()
    }

    /// The parameters, in the order [`statement_text`] numbers them.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for part in [
            &self.thread_id,
            &self.namespace,
            &self.checkpoint_id,
            &self.before,
        ]
        .into_iter()
        .flatten()
        {
            params.push(part);
        }
        if !self.filter_keys.is_empty() {
            params.push(&self.filter_keys);
            params.push(&self.filter_values);
        }
        if let Some(limit) = &self.limit {
            params.push(limit);
        }
        params
    }
}

/// The text of the read for a [`Selection::shape`], built once per shape.
fn statement_text(shape: usize) -> &'static str {
    static TEXTS: [OnceLock<String>; 128] = [const { OnceLock::new() }; 128];
    TEXTS[shape].get_or_init(|| {
        let set = |bit: usize| shape & (1 << bit) != 0;
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let mut from = String::from(
            "SELECT thread_id, ns, checkpoint_id, channels, versions, record \
             FROM checkpoints WHERE true",
        );
        for (bit, condition) in [
            (0, "thread_id ="),
            (1, "ns ="),
            (2, "checkpoint_id ="),
            (3, "checkpoint_id <"),
        ] {
            if set(bit) {
                from.push_str(&format!(" AND {condition} ${}", next()));
            }
        }
        if set(4) {
            let (keys, values) = (next(), next());
            // Per-key equality, not containment: `@>` would match sub-arrays and
            // sub-objects. `jsonb` equality is type-strict and compares numbers by value.
            from.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM unnest(${keys}::text[], ${values}::jsonb[]) \
                 AS f(key, value) WHERE (metadata -> f.key) IS DISTINCT FROM f.value)"
            ));
        }
        if set(0) {
            from.push_str(" ORDER BY checkpoint_id DESC, ns");
            if set(5) {
                from.push_str(&format!(" LIMIT ${}", next()));
            }
        } else {
            // Across threads a page keeps every row sharing its last id: WITH TIES.
            from.push_str(" ORDER BY checkpoint_id DESC");
            if set(5) {
                from.push_str(&format!(" FETCH FIRST ${} ROWS WITH TIES", next()));
            }
        }
        let distinct = if set(6) { "" } else { "DISTINCT" };
        READ.replace("{from}", &from)
            .replace("{distinct}", distinct)
    })
}

impl PostgresBackend {
    /// Runs a selection: one statement, whose text depends only on which parts are set, so
    /// each shape is prepared once per connection and planned for its index.
    pub(crate) async fn read_checkpoints(
        &self,
        selection: Selection<'_>,
    ) -> PgResult<Vec<CheckpointTuple>> {
        let sql = statement_text(selection.shape());
        let client = self.client().await?;
        let rows = client.rows(sql, &selection.params()).await?;
        decode_rows(&rows)
    }
}

/// A value's key: (thread, namespace, channel, version).
type ValueKey<'a> = (&'a str, &'a str, &'a str, &'a str);

/// A checkpoint row of a read, borrowed from the row.
struct Named<'a> {
    thread: &'a str,
    ns: &'a str,
    id: &'a str,
    record: &'a [u8],
    channels: Vec<&'a str>,
    versions: Vec<&'a str>,
    writes: Option<Vec<&'a [u8]>>,
}

/// The checkpoints of a read's rows, newest first, each with the values it names.
fn decode_rows(rows: &[Row]) -> PgResult<Vec<CheckpointTuple>> {
    let mut named = Vec::new();
    // Every value a checkpoint names, decoded once, with how many checkpoints still need
    // it: the last one takes it, the others get a copy.
    let mut decoded: HashMap<ValueKey<'_>, (ChannelValue, usize)> = HashMap::new();
    for row in rows {
        match row.get::<_, Option<&str>>(3) {
            None => named.push(Named {
                thread: row.get(0),
                ns: row.get(1),
                id: row.get(2),
                record: row.get(4),
                channels: row.get(5),
                versions: row.get(6),
                writes: row.get(7),
            }),
            Some(version) => {
                if let Some(bytes) = row.get::<_, Option<&[u8]>>(4) {
                    let key = (row.get(0), row.get(1), row.get(2), version);
                    decoded.insert(key, (wire::decode_value(bytes)?, 0));
                }
            }
        }
    }
    // The order of the selection's ORDER BY (and of every earlier release's reads):
    // newest id first, then thread and namespace; byte order is the columns' "C" collation.
    named.sort_by(|a, b| {
        b.id.cmp(a.id)
            .then_with(|| a.thread.cmp(b.thread))
            .then_with(|| a.ns.cmp(b.ns))
    });
    for row in &named {
        for (channel, version) in row.channels.iter().zip(&row.versions) {
            if let Some((_, uses)) = decoded.get_mut(&(row.thread, row.ns, channel, version)) {
                *uses += 1;
            }
        }
    }
    named
        .into_iter()
        .map(|row| {
            let mut checkpoint: Checkpoint = wire::decode(row.record)?;
            // The stored record has no values; the blobs are the only source.
            checkpoint.channel_values.clear();
            for (channel, version) in row.channels.into_iter().zip(row.versions) {
                let key = (row.thread, row.ns, channel, version);
                let value = match decoded.get_mut(&key) {
                    None => continue,
                    Some((value, uses)) if *uses > 1 => {
                        *uses -= 1;
                        value.clone()
                    }
                    Some(_) => match decoded.remove(&key) {
                        Some((value, _)) => value,
                        None => continue,
                    },
                };
                checkpoint.channel_values.insert(channel.to_owned(), value);
            }
            // The row's key columns are authoritative.
            checkpoint.thread_id = row.thread.to_owned();
            checkpoint.namespace = row.ns.to_owned();
            checkpoint.id = row.id.to_owned();
            let pending_writes = wire::decode_writes(row.writes.unwrap_or_default())?;
            Ok(CheckpointTuple {
                checkpoint,
                pending_writes,
            })
        })
        .collect()
}
