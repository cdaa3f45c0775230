//! A thread's checkpoints: the list, one checkpoint with its values and writes, the chain.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use storage::Storage;
use storage_core::prelude::*;
use storage_core::CheckpointTuple;

use crate::cli::{CheckpointListArgs, CheckpointsCommand};
use crate::failure::{Failure, Outcome};
use crate::output::{clip, escape, Output, Table};

pub async fn run(
    storage: &Storage,
    command: Option<&CheckpointsCommand>,
    list: &CheckpointListArgs,
    out: &Output,
) -> Outcome {
    match command {
        None => self::list(storage, list, out).await,
        Some(CheckpointsCommand::List { args }) => self::list(storage, args, out).await,
        Some(CheckpointsCommand::Show {
            thread,
            checkpoint,
            checkpoint_ns,
        }) => show(storage, thread, checkpoint.as_deref(), checkpoint_ns, out).await,
        Some(CheckpointsCommand::Chain {
            thread,
            checkpoint_ns,
        }) => chain(storage, thread, checkpoint_ns.clone(), out).await,
    }
}

fn no_checkpoints(thread: &str, namespace: Option<&str>) -> Failure {
    match namespace {
        Some(ns) => Failure::NotFound(format!(
            "no checkpoints for thread {thread:?} in checkpoint namespace {ns:?}"
        )),
        None => Failure::NotFound(format!("no checkpoints for thread {thread:?}")),
    }
}

async fn list(storage: &Storage, args: &CheckpointListArgs, out: &Output) -> Outcome {
    let thread = args
        .thread
        .clone()
        .ok_or_else(|| Failure::BadInput("a thread id is required".into()))?;
    let tuples = storage
        .list_checkpoints(CheckpointQuery {
            thread_id: thread.clone(),
            namespace: args.checkpoint_ns.clone(),
            limit: Some(args.limit),
            ..CheckpointQuery::default()
        })
        .await?;
    if tuples.is_empty() {
        return Err(no_checkpoints(&thread, args.checkpoint_ns.as_deref()));
    }
    let mut table = Table::new([
        "namespace",
        "id",
        "parent",
        "channels",
        "writes",
        "metadata",
    ]);
    for t in &tuples {
        let c = &t.checkpoint;
        table.row([
            c.namespace.clone(),
            c.id.clone(),
            c.parent_id.clone().unwrap_or_default(),
            c.channel_values.len().to_string(),
            t.pending_writes.len().to_string(),
            clip(&serde_json::Value::Object(c.metadata.clone()).to_string()),
        ]);
    }
    out.emit(&tuples, &table);
    Ok(())
}

async fn show(
    storage: &Storage,
    thread: &str,
    checkpoint: Option<&str>,
    namespace: &str,
    out: &Output,
) -> Outcome {
    let tuple = storage
        .get_checkpoint(thread, namespace, checkpoint)
        .await?
        .ok_or_else(|| match checkpoint {
            Some(id) => Failure::NotFound(format!(
                "no checkpoint {id:?} in thread {thread:?}, checkpoint namespace {namespace:?}"
            )),
            None => no_checkpoints(thread, Some(namespace)),
        })?;
    let c = &tuple.checkpoint;
    let mut table = Table::new(["item", "key", "detail", "value"]);
    let mut field = |key: &str, value: String| {
        table.row(["checkpoint".into(), key.into(), String::new(), value]);
    };
    field("thread", c.thread_id.clone());
    field("namespace", c.namespace.clone());
    field("id", c.id.clone());
    field("parent", c.parent_id.clone().unwrap_or_default());
    field("created", c.created_at.to_rfc3339());
    field(
        "metadata",
        clip(&serde_json::Value::Object(c.metadata.clone()).to_string()),
    );
    for (channel, value) in &c.channel_values {
        let version = c
            .channel_versions
            .get(channel)
            .map_or_else(String::new, |v| format!("version {v}"));
        table.row([
            "channel".into(),
            channel.clone(),
            version,
            clip(&value.to_string()),
        ]);
    }
    for write in &tuple.pending_writes {
        table.row([
            "write".into(),
            write.task_id.clone(),
            format!(
                "channel {} index {} path {}",
                write.channel, write.index, write.task_path
            ),
            clip(&write.value.to_string()),
        ]);
    }
    table.footer(format!(
        "{} channel value(s), {} pending write(s)",
        c.channel_values.len(),
        tuple.pending_writes.len()
    ));
    out.emit(&tuple, &table);
    Ok(())
}

/// One checkpoint of a chain, for `--json`.
#[derive(Debug, Serialize)]
struct Link {
    namespace: String,
    id: String,
    parent_id: Option<String>,
    /// The parent is named but not stored (pruned, or another namespace's).
    parent_missing: bool,
    pending_writes: usize,
    metadata: serde_json::Value,
}

async fn chain(
    storage: &Storage,
    thread: &str,
    namespace: Option<String>,
    out: &Output,
) -> Outcome {
    let tuples = storage
        .list_checkpoints(CheckpointQuery {
            thread_id: thread.to_owned(),
            namespace: namespace.clone(),
            ..CheckpointQuery::default()
        })
        .await?;
    if tuples.is_empty() {
        return Err(no_checkpoints(thread, namespace.as_deref()));
    }
    let mut by_namespace: BTreeMap<String, Vec<CheckpointTuple>> = BTreeMap::new();
    for tuple in tuples {
        by_namespace
            .entry(tuple.checkpoint.namespace.clone())
            .or_default()
            .push(tuple);
    }
    let mut text = String::new();
    let mut links = Vec::new();
    for (ns, tuples) in &by_namespace {
        text.push_str(&format!("checkpoint namespace {:?}\n", escape(ns)));
        let ids: BTreeSet<&str> = tuples.iter().map(|t| t.checkpoint.id.as_str()).collect();
        let mut children: BTreeMap<&str, Vec<&CheckpointTuple>> = BTreeMap::new();
        let mut roots = Vec::new();
        for tuple in tuples {
            match tuple.checkpoint.parent_id.as_deref() {
                Some(parent) if ids.contains(parent) => {
                    children.entry(parent).or_default().push(tuple)
                }
                _ => roots.push(tuple),
            }
            links.push(Link {
                namespace: ns.clone(),
                id: tuple.checkpoint.id.clone(),
                parent_id: tuple.checkpoint.parent_id.clone(),
                parent_missing: tuple
                    .checkpoint
                    .parent_id
                    .as_deref()
                    .is_some_and(|p| !ids.contains(p)),
                pending_writes: tuple.pending_writes.len(),
                metadata: serde_json::Value::Object(tuple.checkpoint.metadata.clone()),
            });
        }
        // Oldest first, as the chain grew (ids sort in creation order).
        roots.sort_by(|a, b| a.checkpoint.id.cmp(&b.checkpoint.id));
        for list in children.values_mut() {
            list.sort_by(|a, b| a.checkpoint.id.cmp(&b.checkpoint.id));
        }
        // Depth-first with an explicit stack (a chain can be thousands long). A checkpoint
        // with one child continues on the same column; forks branch with ├── / └──.
        let mut stack: Vec<(&CheckpointTuple, String, String)> = roots
            .iter()
            .rev()
            .map(|root| (*root, String::new(), String::new()))
            .collect();
        while let Some((tuple, first, rest)) = stack.pop() {
            text.push_str(&first);
            text.push_str(&label(tuple, &ids));
            text.push('\n');
            let kids = children
                .get(tuple.checkpoint.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            if let [only] = kids {
                stack.push((only, rest.clone(), rest));
                continue;
            }
            for (i, kid) in kids.iter().enumerate().rev() {
                let last = i + 1 == kids.len();
                let (branch, under) = if last {
                    ("└── ", "    ")
                } else {
                    ("├── ", "│   ")
                };
                stack.push((kid, format!("{rest}{branch}"), format!("{rest}{under}")));
            }
        }
    }
    if out.json() {
        out.emit(&links, &Table::new([]));
    } else {
        print!("{text}");
    }
    Ok(())
}

/// `<id>  step 3 loop, 2 writes` (and where the parent is, when it is not drawn).
fn label(tuple: &CheckpointTuple, ids: &BTreeSet<&str>) -> String {
    let c = &tuple.checkpoint;
    let mut parts = Vec::new();
    if let Some(step) = c.metadata.get("step") {
        parts.push(format!("step {step}"));
    }
    if let Some(source) = c.metadata.get("source").and_then(|s| s.as_str()) {
        parts.push(escape(source));
    }
    if !tuple.pending_writes.is_empty() {
        parts.push(format!("{} write(s)", tuple.pending_writes.len()));
    }
    if let Some(parent) = c.parent_id.as_deref().filter(|p| !ids.contains(p)) {
        parts.push(format!("parent {} not stored", escape(parent)));
    }
    if parts.is_empty() {
        escape(&c.id)
    } else {
        format!("{}  ({})", escape(&c.id), parts.join(", "))
    }
}
