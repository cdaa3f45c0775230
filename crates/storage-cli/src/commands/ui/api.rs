//! The JSON endpoints the page fetches, each a read operation of the facade.
//!
//! Parameters come in the query string (`/api/session?id=...`), never in the path: an id
//! may hold any character, `/` included. JSON bodies have `<`, `>`, `&` and the line
//! separators escaped as `\u` sequences, so that no stored text appears as markup even in
//! a response that something renders as HTML.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use storage::Kind;
use storage_core::prelude::*;
use storage_core::{ErrorKind, StorageError};

use super::Inspector;
use crate::commands::inspect::sessions_namespace;
use crate::failure::Failure;
use crate::output::ESCAPED_RANGES;

/// The most sessions, messages or checkpoints one response carries.
const MAX_PAGE: usize = 500;
/// The most checkpoints drawn for one thread (newest first; older ones are left out, which
/// the page says).
pub(super) const MAX_CHECKPOINTS: usize = 200;
/// The most artifact scopes listed on one page.
const SCOPES_PAGE: usize = 100;
/// The most artifact names of a scope on one page, each with its versions' metadata (one
/// `list_artifact_versions` call per name).
pub(super) const ARTIFACTS_PAGE: usize = 50;

/// An error answer: `{"error": {"kind", "message"}}` with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    /// An answer of `status` with `{"error": {"kind": kind, "message": message}}`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn not_found(message: String) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        let status = match &failure {
            Failure::BadInput(_) => StatusCode::BAD_REQUEST,
            Failure::NotFound(_) => StatusCode::NOT_FOUND,
            Failure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, failure.kind(), failure.message())
    }
}

impl From<StorageError> for ApiError {
    /// As the CLI maps it ([`Failure`]), except that what the backend cannot do at all is
    /// `501 unsupported` (listing artifact scopes, on some backends), not a server error.
    fn from(err: StorageError) -> Self {
        if err.kind() == ErrorKind::Unsupported {
            return ApiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported", err.to_string());
        }
        Failure::from(err).into()
    }
}

/// The query string decoded into `T`, or a JSON `400 bad_input` (axum's own `Query`
/// answers plain text).
pub(super) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_input",
                rejection.body_text(),
            )),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(&json!({"error": {
            "kind": self.kind,
            "message": self.message,
        }}));
        *response.status_mut() = self.status;
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

/// `value` as JSON text that holds no `<`, `>` or `&` and no raw U+2028/U+2029.
///
/// Replacing them in the encoded text is exact: outside strings JSON has none of these
/// characters, and inside strings `\u003c` means `<`.
pub fn safe_json<T: Serialize>(value: &T) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|err| {
        json!({"error": {"kind": "backend", "message": format!("cannot encode: {err}")}})
            .to_string()
    });
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => safe.push_str("\\u003c"),
            '>' => safe.push_str("\\u003e"),
            '&' => safe.push_str("\\u0026"),
            '\u{2028}' => safe.push_str("\\u2028"),
            '\u{2029}' => safe.push_str("\\u2029"),
            c => safe.push(c),
        }
    }
    safe
}

fn json_response<T: Serialize>(value: &T) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        safe_json(value),
    )
        .into_response()
}

fn page_size(asked: Option<usize>, default: usize) -> usize {
    asked.unwrap_or(default).clamp(1, MAX_PAGE)
}

/// Any path that is neither the page nor an endpoint.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such page or endpoint".into())
}

/// What the page needs before it shows anything: the namespace, the backend of each kind,
/// and the rule by which it escapes invisible characters (the CLI's, [`ESCAPED_RANGES`]).
pub async fn info(State(inspector): State<Arc<Inspector>>) -> ApiResult {
    let storage = &inspector.storage;
    let backends: serde_json::Map<String, serde_json::Value> = Kind::ALL
        .iter()
        .map(|kind| {
            (
                kind.as_str().to_owned(),
                json!(storage.backend_name_of(*kind)),
            )
        })
        .collect();
    Ok(json_response(&json!({
        "version": env!("CARGO_PKG_VERSION"),
        "namespace": sessions_namespace(storage),
        "backends": backends,
        "escaped_ranges": ESCAPED_RANGES,
        "read_only": true,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct SessionsParams {
    user: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A page of sessions by most recent activity, with the cursor of the next page.
pub async fn sessions(
    State(inspector): State<Arc<Inspector>>,
    ApiQuery(params): ApiQuery<SessionsParams>,
) -> ApiResult {
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    let status = non_empty(params.status)
        .as_deref()
        .map(SessionStatus::parse)
        .transpose()?;
    let page = inspector
        .storage
        .list_sessions(SessionQuery {
            user_id: non_empty(params.user),
            status,
            limit: page_size(params.limit, 25),
            cursor: non_empty(params.cursor),
        })
        .await?;
    Ok(json_response(&page))
}

#[derive(Debug, Deserialize)]
pub(super) struct IdParam {
    id: String,
}

/// One session record.
pub async fn session(
    State(inspector): State<Arc<Inspector>>,
    ApiQuery(IdParam { id }): ApiQuery<IdParam>,
) -> ApiResult {
    match inspector.storage.get_session(&id).await? {
        Some(session) => Ok(json_response(&session)),
        None => Err(ApiError::not_found(format!("no session {id:?}"))),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct MessagesParams {
    session: String,
    after: Option<u64>,
    before: Option<u64>,
    limit: Option<usize>,
}

/// The last messages of a conversation, or the page after or before a sequence number,
/// oldest first.
pub async fn messages(
    State(inspector): State<Arc<Inspector>>,
    ApiQuery(params): ApiQuery<MessagesParams>,
) -> ApiResult {
    let messages = inspector
        .storage
        .get_messages(
            &params.session,
            MessageRange {
                after: params.after,
                before: params.before,
                limit: page_size(params.limit, 50),
            },
        )
        .await?;
    Ok(json_response(&json!({ "messages": messages })))
}

#[derive(Debug, Deserialize)]
pub(super) struct SessionParam {
    session: String,
}

/// The versions of the session's own context the page lists below the current one.
const CONTEXT_VERSIONS_LISTED: usize = 20;

/// The session's own task context (`null` when there is none) and its newest kept versions.
pub async fn context(
    State(inspector): State<Arc<Inspector>>,
    ApiQuery(SessionParam { session }): ApiQuery<SessionParam>,
) -> ApiResult {
    let scope = storage_core::ContextScope::session(&session);
    let context = inspector.storage.get_context(scope.clone(), None).await?;
    let versions = inspector
        .storage
        .list_context_versions(scope, None, CONTEXT_VERSIONS_LISTED)
        .await?;
    Ok(json_response(&json!({
        "context": context,
        "versions": versions,
        "versions_kept": format!(
            "every store keeps the versions before it, as many as it asks \
             ({} for the session shortcuts); the newest {CONTEXT_VERSIONS_LISTED} are listed",
            storage_core::task_context::DEFAULT_KEEP_VERSIONS
        ),
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct ThreadParams {
    thread: String,
    /// The checkpoint namespace; absent: every namespace.
    ns: Option<String>,
}

/// One node of the drawn chain: no values, which `/api/checkpoint` gives per node.
#[derive(Debug, Serialize)]
struct Node {
    namespace: String,
    id: String,
    parent_id: Option<String>,
    created_at: String,
    metadata: serde_json::Value,
    channels: usize,
    pending_writes: usize,
}

/// A thread's checkpoints (at most [`MAX_CHECKPOINTS`], the newest) as nodes with parent
/// links, for the graph.
pub async fn checkpoints(
    State(inspector): State<Arc<Inspector>>,
    ApiQuery(params): ApiQuery<ThreadParams>,
) -> ApiResult {
    let tuples = inspector
        .storage
        .list_checkpoints(CheckpointQuery {
            thread_id: params.thread.clone(),
            namespace: params.ns,
            limit: Some(MAX_CHECKPOINTS + 1),
            ..CheckpointQuery::default()
        })
        .await?;
    let truncated = tuples.len() > MAX_CHECKPOINTS;
    let nodes: Vec<Node> = tuples
        .into_iter()
        .take(MAX_CHECKPOINTS)
        .map(|tuple| {
            let c = tuple.checkpoint;
            Node {
                channels: c.channel_values.len(),
                pending_writes: tuple.pending_writes.len(),
                namespace: c.namespace,
                id: c.id,
                parent_id: c.parent_id,
                created_at: c.created_at.to_rfc3339(),
                metadata: serde_json::Value::Object(c.metadata),
            }
        })
        .collect();
    Ok(json_response(&json!({
        "thread": params.thread,
        "checkpoints": nodes,
        "truncated": truncated,
        "limit": MAX_CHECKPOINTS,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct CheckpointParams {
    thread: String,
    #[serde(default)]
    ns: String,
    id: String,
}

/// One checkpoint with its channel values and pending writes.
pub async fn checkpoint(
    State(inspector): State<Arc<Inspector>>,
    ApiQuery(params): ApiQuery<CheckpointParams>,
) -> ApiResult {
    let tuple = inspector
        .storage
        .get_checkpoint(&params.thread, &params.ns, Some(&params.id))
        .await?;
    match tuple {
        Some(tuple) => Ok(json_response(&tuple)),
        None => Err(ApiError::not_found(format!(
            "no checkpoint {:?} in thread {:?}, checkpoint namespace {:?}",
            params.id, params.thread, params.ns
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ScopeParams {
    /// A scope: a page of its artifacts with every version. Absent: a page of scopes.
    scope: Option<String>,
    /// The last scope, or with `scope` the last artifact name, of the previous page.
    after: Option<String>,
}

/// A page of a scope's artifacts (at most [`ARTIFACTS_PAGE`] names, by name), each with
/// the metadata of every version; or, without a scope, a page of the scopes that hold
/// artifacts. `next_after` is the `after` of the next page, `null` on the last.
pub async fn artifacts(
    State(inspector): State<Arc<Inspector>>,
    ApiQuery(params): ApiQuery<ScopeParams>,
) -> ApiResult {
    let storage = &inspector.storage;
    let Some(scope) = params.scope else {
        let scopes = storage
            .list_artifact_scopes(params.after.as_deref(), SCOPES_PAGE)
            .await?;
        let next_after = (scopes.len() == SCOPES_PAGE)
            .then(|| scopes.last().cloned())
            .flatten();
        return Ok(json_response(
            &json!({"scopes": scopes, "next_after": next_after}),
        ));
    };
    let mut names = storage.list_artifacts(&scope).await?;
    names.sort_unstable();
    names.retain(|name| params.after.as_ref().is_none_or(|after| name > after));
    let more = names.len() > ARTIFACTS_PAGE;
    names.truncate(ARTIFACTS_PAGE);
    let next_after = more.then(|| names.last().cloned()).flatten();
    let mut artifacts = Vec::new();
    for name in names {
        let versions = storage.list_artifact_versions(&scope, &name).await?;
        artifacts.push(json!({"name": name, "versions": versions}));
    }
    Ok(json_response(&json!({
        "scope": scope,
        "artifacts": artifacts,
        "next_after": next_after,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct ArtifactParams {
    scope: String,
    name: String,
    version: Option<u64>,
}

/// One version's content as a download, streamed from the backend chunk by chunk (an
/// artifact is never held whole in memory): always `attachment` and
/// `application/octet-stream`, whatever content type was stored, so that a stored HTML
/// file is saved, never rendered in the inspector's origin.
pub async fn artifact_content(
    State(inspector): State<Arc<Inspector>>,
    ApiQuery(params): ApiQuery<ArtifactParams>,
) -> ApiResult {
    let (meta, chunks) = inspector
        .storage
        .open_artifact_stream(&params.scope, &params.name, params.version)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no artifact {:?} in scope {:?}",
                params.name, params.scope
            ))
        })?;
    let disposition = content_disposition(&meta.name, meta.version);
    // A backend error after the first chunk ends the response early: the client sees a
    // body shorter than Content-Length, never a truncated file taken as whole.
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `attachment` with an ASCII file name (every other character `_`) and the exact name in
/// UTF-8 (RFC 6266 `filename*`), with the version before the extension: `report.v2.json`.
fn content_disposition(name: &str, version: u64) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let file = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.v{version}.{ext}"),
        _ => format!("{base}.v{version}"),
    };
    let ascii: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in file.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Every backend's health (the quick check: the deep one writes).
pub async fn health(State(inspector): State<Arc<Inspector>>) -> ApiResult {
    Ok(json_response(&inspector.storage.health(false).await))
}

/// The metrics layer's figures per operation and backend (this process's requests), and
/// the read cache's.
pub async fn metrics(State(inspector): State<Arc<Inspector>>) -> ApiResult {
    let storage = &inspector.storage;
    Ok(json_response(&json!({
        "operations": storage.operation_stats(),
        "cache": storage.cache_stats(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_holds_no_markup_and_decodes_to_the_same_value() {
        let value = json!({"<script>": "a</script>&<img onerror=x>\u{2028}\u{202E}"});
        let text = safe_json(&value);
        for markup in ['<', '>', '&', '\u{2028}'] {
            assert!(!text.contains(markup), "{text}");
        }
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn what_a_backend_cannot_do_is_501_unsupported() {
        let error = ApiError::from(StorageError::unsupported("no scope listing"));
        assert_eq!(error.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(error.kind, "unsupported");
        let missing = ApiError::from(StorageError::new(ErrorKind::NotFound, "gone"));
        assert_eq!(
            (missing.status, missing.kind),
            (StatusCode::NOT_FOUND, "not_found")
        );
    }

    #[test]
    fn downloads_are_named_safely_with_their_version() {
        assert_eq!(
            content_disposition("report.json", 2),
            "attachment; filename=\"report.v2.json\"; filename*=UTF-8''report.v2.json"
        );
        let hostile = content_disposition("a\"b;\r\n<x>.txt", 1);
        assert!(
            hostile.starts_with("attachment; filename=\"a_b____x_.v1.txt\""),
            "{hostile}"
        );
        assert!(HeaderValue::from_str(&hostile).is_ok());
        assert!(content_disposition("dir/ünï", 3).ends_with("filename*=UTF-8''%C3%BCn%C3%AF.v3"));
    }
}
