//! Looking into (and deleting) stored data: sessions, history, task context, artifacts.

use std::io::Write;

use serde_json::json;
use storage::Storage;
use storage_core::prelude::*;
use storage_core::{ArtifactMeta, Message, TaskContext};

use crate::cli::{
    ArtifactsCommand, ContextCommand, ContextScopeArgs, HistoryArgs, SessionsCommand,
};
use crate::failure::{Failure, Outcome};
use crate::output::{clip, Output, Table};

/// Free text of a JSON value: strings as they are, anything else as compact JSON.
pub fn text_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub async fn sessions(storage: &Storage, command: &SessionsCommand, out: &Output) -> Outcome {
    match command {
        SessionsCommand::List {
            user,
            status,
            limit,
            cursor,
        } => {
            let status = status.as_deref().map(SessionStatus::parse).transpose()?;
            let page = storage
                .list_sessions(SessionQuery {
                    user_id: user.clone(),
                    status,
                    limit: *limit,
                    cursor: cursor.clone(),
                })
                .await?;
            let mut table = Table::new([
                "id",
                "user",
                "status",
                "requests",
                "errors",
                "last activity",
            ]);
            for s in &page.items {
                table.row([
                    s.id.clone(),
                    s.user_id.clone(),
                    s.status.to_string(),
                    s.metrics.request_count.to_string(),
                    s.metrics.error_count.to_string(),
                    s.last_activity.to_rfc3339(),
                ]);
            }
            if let Some(next) = &page.next_cursor {
                table.footer(format!("next page: --cursor {next}"));
            }
            // The usual cause of an empty list is the wrong namespace: name the one read.
            if page.items.is_empty() && cursor.is_none() {
                if let Some(namespace) = sessions_namespace(storage) {
                    table.footer(format!(
                        "no sessions in namespace {namespace:?}; another one: --namespace NAME"
                    ));
                }
            }
            out.emit(&page, &table);
            Ok(())
        }
        SessionsCommand::Show { id } => {
            let session = storage
                .get_session(id)
                .await?
                .ok_or_else(|| Failure::NotFound(format!("no session {id:?}")))?;
            let mut table = Table::new(["field", "value"]);
            table.row(["id".into(), session.id.clone()]);
            table.row(["user".into(), session.user_id.clone()]);
            table.row(["status".into(), session.status.to_string()]);
            table.row(["created".into(), session.created_at.to_rfc3339()]);
            table.row(["last activity".into(), session.last_activity.to_rfc3339()]);
            table.row([
                "ended".into(),
                session.ended_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            ]);
            table.row(["requests".into(), session.metrics.request_count.to_string()]);
            table.row([
                "processing ms".into(),
                session.metrics.total_processing_ms.to_string(),
            ]);
            table.row(["errors".into(), session.metrics.error_count.to_string()]);
            table.row([
                "metadata".into(),
                clip(&serde_json::Value::Object(session.metadata.clone()).to_string()),
            ]);
            out.emit(&session, &table);
            Ok(())
        }
        SessionsCommand::Delete { id } => {
            if !storage.delete_session(id).await? {
                return Err(Failure::NotFound(format!("no session {id:?}")));
            }
            let mut table = Table::new(["deleted session"]);
            table.row([id.clone()]);
            table.footer("its conversation and task context were deleted with it".into());
            out.emit(&json!({"deleted": id}), &table);
            Ok(())
        }
    }
}

/// The namespace of the backend serving sessions, from the configuration.
pub(crate) fn sessions_namespace(storage: &Storage) -> Option<String> {
    let config = storage.config()?;
    let backend = config.backend_of(storage::Kind::Sessions);
    let value = serde_json::to_value(config).ok()?;
    value
        .get(backend.as_str())?
        .get("namespace")?
        .as_str()
        .map(str::to_owned)
}

/// `NotFound` unless `session` has a session record or at least one message: an unknown
/// id is an error on every command, not an empty table.
async fn known_conversation(storage: &Storage, session: &str) -> Outcome {
    if storage.get_session(session).await?.is_some()
        || !storage
            .get_conversation_history(session, 1)
            .await?
            .is_empty()
    {
        Ok(())
    } else {
        Err(Failure::NotFound(format!(
            "no session or conversation {session:?}"
        )))
    }
}

fn message_table(messages: &[Message]) -> Table {
    let mut table = Table::new(["seq", "role", "content", "client id", "created"]);
    for m in messages {
        table.row([
            m.sequence.to_string(),
            m.role.clone(),
            clip(&text_of(&m.content)),
            m.client_id.clone().unwrap_or_default(),
            m.created_at.to_rfc3339(),
        ]);
    }
    table
}

/// Writes to stdout; a closed pipe (`storectl history --follow | head`) ends the command.
fn write_stdout(text: &str) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| Failure::Failed(format!("cannot write stdout: {err}")))
}

fn json_lines(messages: &[Message]) -> String {
    messages.iter().map(|m| format!("{}\n", json!(m))).collect()
}

pub async fn history(storage: &Storage, args: &HistoryArgs, out: &Output) -> Outcome {
    if args.follow && args.before.is_some() {
        return Err(Failure::BadInput(
            "--follow prints what comes after the page: it cannot be combined with --before".into(),
        ));
    }
    let range = MessageRange {
        after: args.after,
        before: args.before,
        limit: args.limit,
    };
    let messages = storage.get_messages(&args.session, range).await?;
    if messages.is_empty() {
        known_conversation(storage, &args.session).await?;
    }
    if !args.follow {
        let mut table = message_table(&messages);
        if let (Some(first), Some(last)) = (messages.first(), messages.last()) {
            let mut pages = Vec::new();
            if first.sequence > 1 {
                pages.push(format!("older: --before {}", first.sequence));
            }
            pages.push(format!("newer: --after {}", last.sequence));
            table.footer(pages.join("; "));
        }
        out.emit(&messages, &table);
        return Ok(());
    }
    // Following: JSON Lines under --json (a stream has no closing bracket), else the table
    // once and then new rows under it.
    if out.json() {
        write_stdout(&json_lines(&messages))?;
    } else {
        let mut table = message_table(&messages);
        table.footer("following: new messages appear below; Ctrl-C stops".into());
        write_stdout(&table.render())?;
    }
    let mut last = messages
        .last()
        .map(|m| m.sequence)
        .or(args.after)
        .unwrap_or(0);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(args.interval) => {}
        }
        let fetched = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            fetched = storage.get_messages(&args.session, MessageRange::after(last, 500)) => fetched?,
        };
        let Some(newest) = fetched.last() else {
            continue;
        };
        last = newest.sequence;
        if out.json() {
            write_stdout(&json_lines(&fetched))?;
        } else {
            write_stdout(&message_table(&fetched).render_rows())?;
        }
    }
}

pub async fn context(storage: &Storage, command: &ContextCommand, out: &Output) -> Outcome {
    let row = |c: &TaskContext| {
        [
            c.scope.key(),
            c.version.to_string(),
            c.updated_at.to_rfc3339(),
            clip(&c.value.to_string()),
        ]
    };
    let header = ["scope", "version", "updated", "value"];
    match command {
        ContextCommand::Get { scope, version } => {
            let scope = scope_of(scope)?;
            let context = storage
                .get_context(scope.clone(), *version)
                .await?
                .ok_or_else(|| match version {
                    None => Failure::NotFound(format!("no task context for {scope}")),
                    Some(v) => Failure::NotFound(format!(
                        "no version {v} of the task context of {scope} is kept"
                    )),
                })?;
            let mut table = Table::new(header);
            table.row(row(&context));
            out.emit(&context, &table);
        }
        ContextCommand::History {
            scope,
            limit,
            before,
        } => {
            let scope = scope_of(scope)?;
            let versions = storage
                .list_context_versions(scope.clone(), *before, *limit)
                .await?;
            if versions.is_empty() && before.is_none() {
                return Err(Failure::NotFound(format!("no task context for {scope}")));
            }
            let mut table = Table::new(header);
            for context in &versions {
                table.row(row(context));
            }
            if let Some(oldest) = versions.last().filter(|_| versions.len() == *limit) {
                table.footer(format!("older versions: --before {}", oldest.version));
            }
            out.emit(&json!({ "versions": versions }), &table);
        }
        ContextCommand::Scopes { limit, after } => {
            let after = after
                .as_deref()
                .map(ContextScope::from_key)
                .transpose()
                .map_err(|err| Failure::BadInput(err.message().to_owned()))?;
            let scopes = storage.list_context_scopes(after, *limit).await?;
            let mut table = Table::new(["scope"]);
            for scope in &scopes {
                table.row([scope.key()]);
            }
            let keys: Vec<String> = scopes.iter().map(ContextScope::key).collect();
            out.emit(&json!({ "scopes": keys }), &table);
        }
    }
    Ok(())
}

/// The scope `storectl context` addresses: the positional session id or `--scope`.
fn scope_of(args: &ContextScopeArgs) -> Result<ContextScope, Failure> {
    match (&args.session, &args.scope) {
        (_, Some(key)) => {
            ContextScope::from_key(key).map_err(|err| Failure::BadInput(err.message().to_owned()))
        }
        (Some(session), None) => Ok(ContextScope::session(session)),
        (None, None) => Err(Failure::BadInput("name a session or --scope".into())),
    }
}

pub async fn artifacts(storage: &Storage, command: &ArtifactsCommand, out: &Output) -> Outcome {
    let meta_row = |m: &ArtifactMeta| {
        [
            m.name.clone(),
            m.version.to_string(),
            m.content_type.clone(),
            m.size.to_string(),
            m.sha256.clone(),
            m.created_at.to_rfc3339(),
        ]
    };
    let header = [
        "name",
        "version",
        "content type",
        "bytes",
        "sha256",
        "created",
    ];
    match command {
        ArtifactsCommand::List { scope, name: None } => {
            let names = storage.list_artifacts(scope).await?;
            if names.is_empty() {
                return Err(Failure::NotFound(format!(
                    "no artifacts in scope {scope:?}"
                )));
            }
            let mut table = Table::new(["name"]);
            for name in &names {
                table.row([name.clone()]);
            }
            out.emit(&names, &table);
        }
        ArtifactsCommand::List {
            scope,
            name: Some(name),
        } => {
            let versions = storage.list_artifact_versions(scope, name).await?;
            if versions.is_empty() {
                return Err(Failure::NotFound(format!("no artifact {scope}/{name}")));
            }
            let mut table = Table::new(header);
            for meta in &versions {
                table.row(meta_row(meta));
            }
            out.emit(&versions, &table);
        }
        ArtifactsCommand::Get {
            scope,
            name,
            version,
            output,
        } => {
            let not_found = || {
                let which = version.map_or("latest".to_owned(), |v| format!("v{v}"));
                Failure::NotFound(format!("no artifact {scope}/{name} ({which})"))
            };
            match output {
                None => {
                    let meta = storage
                        .get_artifact_meta(scope, name, *version)
                        .await?
                        .ok_or_else(not_found)?;
                    let mut table = Table::new(header);
                    table.row(meta_row(&meta));
                    out.emit(&meta, &table);
                }
                Some(path) => {
                    let artifact = storage
                        .get_artifact(scope, name, *version)
                        .await?
                        .ok_or_else(not_found)?;
                    if path.as_os_str() == "-" {
                        std::io::stdout().write_all(&artifact.data).map_err(|err| {
                            Failure::Failed(format!("cannot write stdout: {err}"))
                        })?;
                    } else {
                        std::fs::write(path, &artifact.data).map_err(|err| {
                            Failure::BadInput(format!("cannot write {}: {err}", path.display()))
                        })?;
                        let mut table = Table::new(header);
                        table.row(meta_row(&artifact.meta));
                        out.emit(&artifact.meta, &table);
                    }
                }
            }
        }
        ArtifactsCommand::Delete {
            scope,
            name,
            version,
        } => {
            let deleted = storage.delete_artifact(scope, name, *version).await?;
            let which = version.map_or("every version".to_owned(), |v| format!("v{v}"));
            if deleted == 0 {
                return Err(Failure::NotFound(format!(
                    "no artifact {scope}/{name} ({which})"
                )));
            }
            let mut table = Table::new(["scope", "name", "deleted", "versions"]);
            table.row([scope.clone(), name.clone(), which, deleted.to_string()]);
            out.emit(
                &json!({"scope": scope, "name": name, "version": version, "deleted": deleted}),
                &table,
            );
        }
    }
    Ok(())
}
