//! The object layout, in one place (documented in `docs/backends/object.md`).
//!
//! Every object of a namespace lives under `<url prefix>/<namespace>/`. Ids are data, never
//! syntax: each id becomes path segments of lowercase hex (`i` + up to 126 hex digits, then
//! `j` + 126 more per further segment), so `/`, `..`, `*` or `%` in an id can never reach
//! another record, and an id of 256 bytes still fits the 255-byte file-name limit of local
//! disks. Hex keeps byte order, so encoded ids sort like the ids. Numbers (sequences,
//! versions) are 20 zero-padded digits, so keys sort in numeric order.
//!
//! ```text
//! sessions/<sid>/<cell>                       session record (a conditional-write cell)
//! contexts/<scope>/<cell>                     task context head: current version (cell)
//! context_versions/<scope>/<lineage>/<ver>    an earlier, kept version of a task context
//! conversations/<sid>/head/<cell>             which sequences are live; compactions
//! conversations/<sid>/messages/<seq>          one append: the messages from <seq> on
//! conversations/<sid>/client_ids/<cid>        client message id -> sequence
//! compactions/<sid>/<seq>/<id>/summary        a compaction's summary message at <seq>
//! compactions/<sid>/<seq>/<id>/replaced       the messages it replaced, when kept
//! threads/<thread>/<ns>/checkpoints/<id>      checkpoint record, without values
//! threads/<thread>/<ns>/blobs/<channel>/<ver> one channel value
//! threads/<thread>/<ns>/writes/<cid>/<task>/<index>  one pending write
//! runs/<run>/<thread>/<ns>/<id>               run_id marker for delete_for_runs
//! unused_values/<thread>/<ns>/<uuid>          values a prune left unused, to collect
//! artifacts/<scope>/<name>/versions/<ver>     artifact version record (the commit point)
//! artifacts/<scope>/<name>/latest             hint: a recent highest version number
//! artifacts/<scope>/<name>/floor              hint: versions below are tombstones
//! artifacts/<scope>/<name>/data/<uuid>        artifact content
//! ```
//!
//! A context `<scope>` is `app`, `<sid>` (a session's, where the release before scopes kept
//! its one context) or `user/<uid>`; `a` < `i` < `u`, so heads list in the order of
//! [`ContextScope::key`] (`app` < `session:…` < `user:…`).

use object_store::path::Path;
use storage_core::ContextScope;

const FIRST: char = 'i';
const MORE: char = 'j';
const HEX_PER_SEGMENT: usize = 126;

/// Builds paths of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    root: String,
}

/// Appends the segments of an encoded id to `out`.
pub(crate) fn push_id(out: &mut String, id: &str) {
    let hex = hex::encode(id.as_bytes());
    out.push('/');
    out.push(FIRST);
    let mut rest = hex.as_str();
    let first = rest.len().min(HEX_PER_SEGMENT);
    out.push_str(&rest[..first]);
    rest = &rest[first..];
    while !rest.is_empty() {
        let take = rest.len().min(HEX_PER_SEGMENT);
        out.push('/');
        out.push(MORE);
        out.push_str(&rest[..take]);
        rest = &rest[take..];
    }
}

/// Appends the segments of an id that ends its key (a checkpoint id, a channel version, a
/// client message id). When its hex fills its last segment (63, 126, 189 or 252 bytes),
/// an empty continuation `j` follows, so that the key ends in a segment of its own: on a
/// local disk a longer id that starts with this one needs that full segment as a folder,
/// which a file there would block. [`legacy_terminal`] gives the key the release before
/// this one wrote instead.
pub(crate) fn push_last_id(out: &mut String, id: &str) {
    push_id(out, id);
    if !id.is_empty() && (2 * id.len()) % HEX_PER_SEGMENT == 0 {
        out.push('/');
        out.push(MORE);
    }
}

/// The key the previous release wrote for a key of [`push_last_id`] whose id fills its
/// last segment: the same without the empty continuation. `None` for any other key.
pub(crate) fn legacy_terminal(path: &Path) -> Option<Path> {
    let text = path.as_ref();
    let parent = text.strip_suffix(MORE)?.strip_suffix('/')?;
    let last = parent.rsplit('/').next()?;
    let is_id = last.starts_with(FIRST) || last.starts_with(MORE);
    (is_id && is_full_segment(last)).then(|| Path::from(parent))
}

/// Whether `segment` is an id segment (`i…` or `j…`) holding all the hex digits a
/// segment can: only after such a segment can an id continue with a `j` segment.
pub(crate) fn is_full_segment(segment: &str) -> bool {
    segment.len() == 1 + HEX_PER_SEGMENT
}

/// Whether `segment` continues an id begun in the segment before it.
pub(crate) fn is_continuation(segment: &str) -> bool {
    segment.starts_with(MORE)
}

/// Decodes the id starting at `parts[0]`; returns it and how many segments it used.
pub(crate) fn take_id(parts: &[String]) -> Option<(String, usize)> {
    let first = parts.first()?.strip_prefix(FIRST)?;
    let mut hex = first.to_owned();
    let mut used = 1;
    for part in &parts[1..] {
        match part.strip_prefix(MORE) {
            Some(more) => {
                hex.push_str(more);
                used += 1;
            }
            None => break,
        }
    }
    let bytes = hex::decode(hex).ok()?;
    Some((String::from_utf8(bytes).ok()?, used))
}

/// A sequence or version number as a key segment that sorts numerically.
pub(crate) fn number(n: u64) -> String {
    format!("{n:020}")
}

/// Parses [`number`]'s output.
pub(crate) fn parse_number(segment: &str) -> Option<u64> {
    (segment.len() == 20)
        .then(|| segment.parse().ok())
        .flatten()
}

/// Appends the segments of a context scope: `app`, `<sid>` or `user/<uid>`.
fn push_scope(out: &mut String, scope: &ContextScope) {
    match scope {
        ContextScope::App => out.push_str("/app"),
        ContextScope::Session(id) => push_id(out, id),
        ContextScope::User(id) => {
            out.push_str("/user");
            push_id(out, id);
        }
    }
}

/// Decodes the context scope starting at `parts[0]` (the segments after [`Keys::contexts`]
/// or [`Keys::context_versions`]); returns it and how many segments it used.
pub(crate) fn take_context_scope(parts: &[String]) -> Option<(ContextScope, usize)> {
    let (scope, used) = match parts.first()?.as_str() {
        "app" => (ContextScope::App, 1),
        "user" => {
            let (id, used) = take_id(&parts[1..])?;
            (ContextScope::User(id), used + 1)
        }
        _ => {
            let (id, used) = take_id(parts)?;
            (ContextScope::Session(id), used)
        }
    };
    Some((scope, used))
}

/// A pending-write index as a segment that sorts numerically, negatives first.
fn write_index(index: i64) -> String {
    format!("{:020}", (index as i128 - i64::MIN as i128) as u64)
}

/// The segments of `path` after `prefix`.
pub(crate) fn parts_after(path: &Path, prefix: &Path) -> Vec<String> {
    path.prefix_match(prefix)
        .map(|parts| parts.map(|part| part.as_ref().to_owned()).collect())
        .unwrap_or_default()
}

impl Keys {
    /// Keys under `prefix` (the URL's path, may be empty) and `namespace`.
    pub(crate) fn new(prefix: &str, namespace: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        let root = if prefix.is_empty() {
            namespace.to_owned()
        } else {
            format!("{prefix}/{namespace}")
        };
        Keys { root }
    }

    fn path(&self, kind: &str, ids: &[&str], tail: &[&str]) -> Path {
        let mut out = format!("{}/{kind}", self.root);
        for id in ids {
            push_id(&mut out, id);
        }
        for segment in tail {
            out.push('/');
            out.push_str(segment);
        }
        Path::from(out)
    }

    /// Everything of the namespace.
    pub(crate) fn namespace_root(&self) -> Path {
        Path::from(self.root.clone())
    }

    /// Every thread's objects.
    pub(crate) fn threads(&self) -> Path {
        self.path("threads", &[], &[])
    }

    /// Every artifact scope's objects.
    pub(crate) fn artifacts(&self) -> Path {
        self.path("artifacts", &[], &[])
    }

    /// Every conversation's objects.
    pub(crate) fn conversations(&self) -> Path {
        self.path("conversations", &[], &[])
    }

    /// Every compaction's objects.
    pub(crate) fn compactions(&self) -> Path {
        self.path("compactions", &[], &[])
    }

    /// Every task context head.
    pub(crate) fn contexts(&self) -> Path {
        self.path("contexts", &[], &[])
    }

    /// Every kept earlier task context version.
    pub(crate) fn context_versions(&self) -> Path {
        self.path("context_versions", &[], &[])
    }

    /// The head cell of a context scope.
    pub(crate) fn context_head(&self, scope: &ContextScope) -> Path {
        let mut path = self.contexts().to_string();
        push_scope(&mut path, scope);
        Path::from(path)
    }

    /// Every earlier version of a context scope, of every lineage.
    pub(crate) fn context_archives(&self, scope: &ContextScope) -> Path {
        let mut path = self.context_versions().to_string();
        push_scope(&mut path, scope);
        Path::from(path)
    }

    /// One earlier version of a context scope's lineage.
    pub(crate) fn context_archive(
        &self,
        scope: &ContextScope,
        lineage: &str,
        version: u64,
    ) -> Path {
        self.context_archives(scope)
            .join(lineage)
            .join(number(version))
    }

    pub(crate) fn sessions(&self) -> Path {
        self.path("sessions", &[], &[])
    }
    pub(crate) fn session(&self, id: &str) -> Path {
        self.path("sessions", &[id], &[])
    }

    pub(crate) fn conversation(&self, session_id: &str) -> Path {
        self.path("conversations", &[session_id], &[])
    }
    pub(crate) fn conversation_head(&self, session_id: &str) -> Path {
        self.path("conversations", &[session_id], &["head"])
    }
    pub(crate) fn message_slot(&self, session_id: &str, sequence: u64) -> Path {
        self.path(
            "conversations",
            &[session_id],
            &["messages", &number(sequence)],
        )
    }
    /// Every compaction object of a conversation.
    pub(crate) fn session_compactions(&self, session_id: &str) -> Path {
        self.path("compactions", &[session_id], &[])
    }
    /// An object of the compaction `id` whose summary is at `sequence`: `summary` or
    /// `replaced`.
    pub(crate) fn compaction_object(
        &self,
        session_id: &str,
        sequence: u64,
        id: &str,
        kind: &str,
    ) -> Path {
        self.path("compactions", &[session_id], &[&number(sequence), id, kind])
    }
    pub(crate) fn client_id(&self, session_id: &str, client_id: &str) -> Path {
        let mut path = self
            .path("conversations", &[session_id], &["client_ids"])
            .to_string();
        push_last_id(&mut path, client_id);
        Path::from(path)
    }

    pub(crate) fn thread(&self, thread_id: &str) -> Path {
        self.path("threads", &[thread_id], &[])
    }
    pub(crate) fn chain(&self, thread_id: &str, namespace: &str) -> Path {
        self.path("threads", &[thread_id, namespace], &[])
    }
    pub(crate) fn checkpoints(&self, thread_id: &str, namespace: &str) -> Path {
        self.path("threads", &[thread_id, namespace], &["checkpoints"])
    }
    pub(crate) fn checkpoint(&self, thread_id: &str, namespace: &str, id: &str) -> Path {
        let mut path = self.checkpoints(thread_id, namespace).to_string();
        push_last_id(&mut path, id);
        Path::from(path)
    }
    pub(crate) fn blobs(&self, thread_id: &str, namespace: &str) -> Path {
        self.path("threads", &[thread_id, namespace], &["blobs"])
    }
    pub(crate) fn blob(
        &self,
        thread_id: &str,
        namespace: &str,
        channel: &str,
        version: &str,
    ) -> Path {
        let mut path = self.blobs(thread_id, namespace).to_string();
        push_id(&mut path, channel);
        push_last_id(&mut path, version);
        Path::from(path)
    }
    pub(crate) fn writes(&self, thread_id: &str, namespace: &str, checkpoint_id: &str) -> Path {
        let mut path = self
            .path("threads", &[thread_id, namespace], &["writes"])
            .to_string();
        push_id(&mut path, checkpoint_id);
        Path::from(path)
    }
    pub(crate) fn write(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: &str,
        task_id: &str,
        index: i64,
    ) -> Path {
        let mut path = self.writes(thread_id, namespace, checkpoint_id).to_string();
        push_id(&mut path, task_id);
        path.push('/');
        path.push_str(&write_index(index));
        Path::from(path)
    }
    pub(crate) fn run_marker(
        &self,
        run_id: &str,
        thread_id: &str,
        namespace: &str,
        id: &str,
    ) -> Path {
        let mut path = self
            .path("runs", &[run_id, thread_id, namespace], &[])
            .to_string();
        push_last_id(&mut path, id);
        Path::from(path)
    }
    pub(crate) fn run(&self, run_id: &str) -> Path {
        self.path("runs", &[run_id], &[])
    }
    /// Every marker of checkpoint values left unused (see `backend::unused_values`).
    pub(crate) fn unused_values(&self) -> Path {
        self.path("unused_values", &[], &[])
    }
    pub(crate) fn thread_unused_values(&self, thread_id: &str) -> Path {
        self.path("unused_values", &[thread_id], &[])
    }
    /// Every marker of (thread, namespace).
    pub(crate) fn chain_unused_values(&self, thread_id: &str, namespace: &str) -> Path {
        self.path("unused_values", &[thread_id, namespace], &[])
    }
    /// A new, unique marker of (thread, namespace).
    pub(crate) fn unused_values_marker(&self, thread_id: &str, namespace: &str) -> Path {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        self.path("unused_values", &[thread_id, namespace], &[&unique])
    }

    pub(crate) fn scope(&self, scope: &str) -> Path {
        self.path("artifacts", &[scope], &[])
    }
    pub(crate) fn artifact(&self, scope: &str, name: &str) -> Path {
        self.path("artifacts", &[scope, name], &[])
    }
    pub(crate) fn artifact_versions(&self, scope: &str, name: &str) -> Path {
        self.path("artifacts", &[scope, name], &["versions"])
    }
    pub(crate) fn artifact_version(&self, scope: &str, name: &str, version: u64) -> Path {
        self.path("artifacts", &[scope, name], &["versions", &number(version)])
    }
    pub(crate) fn artifact_latest(&self, scope: &str, name: &str) -> Path {
        self.path("artifacts", &[scope, name], &["latest"])
    }
    /// Hint: where a retention sweep of the name starts (every version below is a
    /// tombstone).
    pub(crate) fn artifact_floor(&self, scope: &str, name: &str) -> Path {
        self.path("artifacts", &[scope, name], &["floor"])
    }
    pub(crate) fn artifact_data(&self, scope: &str, name: &str) -> Path {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        self.path("artifacts", &[scope, name], &["data", &unique])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_stay_inside_their_segment() {
        for id in ["", "a", "../..", "x/y*{z}%", &"é".repeat(128)] {
            let mut path = String::new();
            push_id(&mut path, id);
            let parts: Vec<String> = path[1..].split('/').map(str::to_owned).collect();
            assert!(parts.iter().all(|p| p.len() <= 127));
            let (decoded, used) = take_id(&parts).unwrap();
            assert_eq!((decoded.as_str(), used), (id, parts.len()));
        }
    }

    #[test]
    fn context_heads_sort_like_scope_keys_and_parse_back() {
        let keys = Keys::new("", "ns");
        let mut scopes = vec![
            ContextScope::user("a"),
            ContextScope::session("ab"),
            ContextScope::App,
            ContextScope::session("a"),
            ContextScope::session("x".repeat(200)),
            ContextScope::session("x".repeat(64)),
            ContextScope::user(""),
        ];
        let mut heads: Vec<(String, ContextScope)> = scopes
            .iter()
            .map(|scope| {
                (
                    keys.context_head(scope).join("cell").to_string(),
                    scope.clone(),
                )
            })
            .collect();
        heads.sort();
        scopes.sort_by_key(ContextScope::key);
        assert_eq!(
            heads.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
            scopes
        );
        for (path, scope) in heads {
            let parts = parts_after(&Path::from(path), &keys.contexts());
            assert_eq!(take_context_scope(&parts), Some((scope, parts.len() - 1)));
        }
    }

    #[test]
    fn an_id_filling_its_last_segment_ends_in_a_segment_of_its_own() {
        let keys = Keys::new("", "ns");
        for len in [1, 62, 63, 64, 125, 126, 127, 189, 252, 256] {
            let id = "a".repeat(len);
            let key = keys.checkpoint("t", "", &id);
            let parts = parts_after(&key, &keys.checkpoints("t", ""));
            let fills = len % 63 == 0;
            assert_eq!(
                parts.last().map(String::as_str) == Some("j"),
                fills,
                "{len}"
            );
            assert_eq!(take_id(&parts), Some((id.clone(), parts.len())), "{len}");
            // The previous release's key: the same without the empty continuation.
            let mut old = keys.checkpoints("t", "").to_string();
            push_id(&mut old, &id);
            let expected = fills.then(|| Path::from(old));
            assert_eq!(legacy_terminal(&key), expected, "{len}");
        }
        // A key that only looks alike: its `j` segment does not follow a full id segment.
        assert_eq!(legacy_terminal(&Path::from("ns/threads/i74/j")), None);
        assert_eq!(legacy_terminal(&Path::from("j")), None);
        // Encoded ids that extend one another still sort as the ids do.
        let ids = [
            "a".repeat(63),
            format!("{}\u{1}", "a".repeat(63)),
            "a".repeat(64),
        ];
        let encoded: Vec<String> = ids
            .iter()
            .map(|id| keys.checkpoint("t", "", id).to_string())
            .collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
    }

    #[test]
    fn numbers_sort() {
        assert!(number(9) < number(10));
        assert!(write_index(-4) < write_index(-1) && write_index(-1) < write_index(0));
        assert_eq!(parse_number(&number(42)), Some(42));
    }
}
