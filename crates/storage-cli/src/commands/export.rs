//! `storectl export SESSION`: a session and everything it owns as JSON Lines.
//!
//! One object per line, `kind` first: `session` (the record), `message` (each, oldest
//! first), `task_context` (each kept version, oldest first), `checkpoint` (each tuple of the thread with the session's id, in
//! every checkpoint namespace, with its channel values and pending writes), `artifact`
//! (each version's metadata in the scope with the session's id; content is not exported),
//! and a last `summary` line with the counts, so a reader can tell a complete file from a
//! truncated one.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::json;
use storage::Storage;
use storage_core::prelude::*;

use crate::failure::{Failure, Outcome};
use crate::output::{Output, Table};

/// Messages read per call.
const PAGE: usize = 500;

#[derive(Debug, Default, Serialize)]
struct Counts {
    session: u64,
    messages: u64,
    task_context: u64,
    checkpoints: u64,
    pending_writes: u64,
    artifact_versions: u64,
}

fn line<T: Serialize>(sink: &mut dyn Write, kind: &str, value: &T) -> Outcome {
    let mut object = json!({"kind": kind});
    if let (Some(target), Ok(serde_json::Value::Object(fields))) =
        (object.as_object_mut(), serde_json::to_value(value))
    {
        target.extend(fields);
    }
    writeln!(sink, "{object}").map_err(|err| Failure::Failed(format!("cannot write: {err}")))
}

pub async fn run(storage: &Storage, session: &str, output: Option<&Path>, out: &Output) -> Outcome {
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|err| {
                Failure::BadInput(format!("cannot create {}: {err}", path.display()))
            })?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = crate::progress::spinner(out.json(), "{spinner} export {msg} {pos} records");
    let mut counts = Counts::default();

    bar.set_message("session");
    if let Some(record) = storage.get_session(session).await? {
        line(&mut *sink, "session", &record)?;
        counts.session = 1;
        bar.inc(1);
    }
    bar.set_message("messages");
    let mut after = 0;
    loop {
        let page = storage
            .get_messages(session, MessageRange::after(after, PAGE))
            .await?;
        for message in &page {
            line(&mut *sink, "message", message)?;
        }
        counts.messages += page.len() as u64;
        bar.inc(page.len() as u64);
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.sequence,
            _ => break,
        }
    }
    bar.set_message("task context");
    // Every kept version, oldest first (listed newest first, page by page).
    let scope = storage_core::ContextScope::session(session);
    let mut versions = Vec::new();
    let mut before = None;
    loop {
        let page = storage
            .list_context_versions(scope.clone(), before, PAGE)
            .await?;
        before = page.last().map(|context| context.version);
        let done = page.len() < PAGE;
        versions.extend(page);
        if done {
            break;
        }
    }
    for context in versions.iter().rev() {
        line(&mut *sink, "task_context", context)?;
        counts.task_context += 1;
        bar.inc(1);
    }
    bar.set_message("checkpoints");
    let tuples = storage
        .list_checkpoints(CheckpointQuery {
            thread_id: session.to_owned(),
            ..CheckpointQuery::default()
        })
        .await?;
    // Oldest first, like the messages: a reader can replay the file in order.
    for tuple in tuples.iter().rev() {
        line(&mut *sink, "checkpoint", tuple)?;
        counts.checkpoints += 1;
        counts.pending_writes += tuple.pending_writes.len() as u64;
        bar.inc(1);
    }
    bar.set_message("artifacts");
    for name in storage.list_artifacts(session).await? {
        for meta in storage.list_artifact_versions(session, &name).await? {
            line(&mut *sink, "artifact", &meta)?;
            counts.artifact_versions += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let total = counts.session
        + counts.messages
        + counts.task_context
        + counts.checkpoints
        + counts.artifact_versions;
    if total == 0 {
        drop(sink);
        if let Some(path) = output {
            let _ = std::fs::remove_file(path);
        }
        return Err(Failure::NotFound(format!(
            "nothing to export: no session, messages, task context, checkpoints or \
             artifacts for {session:?}"
        )));
    }
    line(
        &mut *sink,
        "summary",
        &json!({"session_id": session, "counts": counts}),
    )?;
    sink.flush()
        .map_err(|err| Failure::Failed(format!("cannot write: {err}")))?;
    drop(sink);
    if let Some(path) = output {
        let mut table = Table::new(["kind", "exported"]);
        table.row(["session".into(), counts.session.to_string()]);
        table.row(["messages".into(), counts.messages.to_string()]);
        table.row(["task_context".into(), counts.task_context.to_string()]);
        table.row(["checkpoints".into(), counts.checkpoints.to_string()]);
        table.row(["pending_writes".into(), counts.pending_writes.to_string()]);
        table.row([
            "artifact_versions".into(),
            counts.artifact_versions.to_string(),
        ]);
        table.footer(format!("written to {}", path.display()));
        out.emit(&json!({"file": path, "counts": counts}), &table);
    }
    Ok(())
}
