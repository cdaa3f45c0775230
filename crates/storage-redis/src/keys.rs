//! The key layout, written once.
//!
//! Every key is `<prefix>{<tag>}:<suffix>`. The part between the braces is Redis Cluster's
//! hash tag: keys with the same tag live in the same slot, so a script may touch all of
//! them at once. Ids never appear raw in a key: they are hex-encoded, so `{`, `}`, `:` or
//! `*` in an id can neither move a key to another tag nor make two keys collide, and the
//! prefix allows no braces, so the first `{` of a key is always ours.
//!
//! | tag | keys | holds |
//! | --- | --- | --- |
//! | `{ns}` | `:activity` | zset: session id by last activity (µs), for listing and cleanup |
//! | `{ns}` | `:user:<hex user>` | zset: a user's session ids by last activity |
//! | `{ns}` | `:run:<hex run id>` | set of `<hex thread>:<hex cp ns>:<hex cp id>` with that `run_id` |
//! | `{ns:s:<hex session>}` | `:session` | hash: the session record's fields, `m:<key>` metadata |
//! | `{ns:s:<hex session>}` | `:msgs` | zset: wire-encoded messages scored by sequence |
//! | `{ns:s:<hex session>}` | `:seq` | integer: the highest sequence ever handed out |
//! | `{ns:s:<hex session>}` | `:cids` | hash: `c:<client id>` → sequence, `s:<sequence>` → client id |
//! | `{ns:s:<hex session>}` | `:kept` | hash: `n:<summary seq>` → count, `<summary seq>:<i>` → the i-th kept message |
//! | `{ns:s:<hex session>}` | `:kidx` | zset: summary sequences with kept messages, each scored by itself |
//! | `{ns:s:<hex session>}` | `:ctxv` | zset: the session scope's kept task context versions, by number |
//! | `{ns:s:<hex session>}` | `:ctxr` | hash: `u:<version>` → updated µs, `d:<version>` → value JSON |
//! | `{ns:s:<hex session>}` | `:ctx` | hash: a context as releases before scopes wrote it, `version`, `updated`, `value` |
//! | `{ns:c:<hex scope key>}` | `:ctxv`, `:ctxr` | the same for a user's or the application's scope |
//! | `{ns:t:<hex thread>}` | `:nss` | set of hex checkpoint namespaces with checkpoints or pending writes |
//! | `{ns:t:<hex thread>}` | `:ids:<hex cp ns>` | zset (all scores 0): checkpoint ids, lexicographic |
//! | `{ns:t:<hex thread>}` | `:cp:<hex cp ns>` | hash: checkpoint id → wire-encoded checkpoint without values |
//! | `{ns:t:<hex thread>}` | `:blobs:<hex cp ns>` | hash: `<hex channel>:<hex version>` → wire-encoded value |
//! | `{ns:t:<hex thread>}` | `:wids:<hex cp ns>` | set of hex checkpoint ids that have writes |
//! | `{ns:t:<hex thread>}` | `:chg:<hex cp ns>` | integer: bumped by every script that adds or removes checkpoints of the namespace |
//! | `{ns:t:<hex thread>}` | `:users:<hex cp ns>` | hash: blob field → how many indexed checkpoints name that value |
//! | `{ns:t:<hex thread>}` | `:unidx:<hex cp ns>` | set: ids put since `users` was last brought up to date |
//! | `{ns:t:<hex thread>}` | `:idx:<hex cp ns>` | the `chg` value at which `users` and `unidx` described every checkpoint |
//! | `{ns:t:<hex thread>}` | `:w:<hex cp ns>:<hex cp id>` | hash: `<hex task>:<index>` → wire-encoded write |
//! | `{ns:a:<hex scope>}` | `:names` | zset (all scores 0): artifact names, lexicographic |
//! | `{ns:a:<hex scope>}` | `:next` | hash: name → next version number |
//! | `{ns:a:<hex scope>}` | `:vers:<hex name>` | zset: versions by number |
//! | `{ns:a:<hex scope>}` | `:meta:<hex name>` | hash: version → wire-encoded metadata |
//! | `{ns:a:<hex scope>}` | `:data:<hex name>` | hash: version → content |
//!
//! Scripts that walk a whole thread or scope build the suffixed keys themselves from the
//! tag's base (passed as their first key), so they stay inside one slot.

use storage_core::ContextScope;

/// Builds every key of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    namespace: String,
}

/// Hex of an id's bytes: what an id becomes inside a key.
pub(crate) fn encode_id(id: &str) -> String {
    hex::encode(id.as_bytes())
}

/// The inverse of [`encode_id`] for the hex members this layout stores.
pub(crate) fn decode_id(hex_id: &str) -> Option<String> {
    hex::decode(hex_id)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

impl Keys {
    pub(crate) fn new(prefix: &str, namespace: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    fn namespace_key(&self, suffix: &str) -> String {
        format!("{}{{{}}}:{suffix}", self.prefix, self.namespace)
    }

    fn base(&self, kind: &str, id: &str) -> String {
        format!(
            "{}{{{}:{kind}:{}}}",
            self.prefix,
            self.namespace,
            encode_id(id)
        )
    }

    /// The namespace-wide activity index.
    pub(crate) fn activity(&self) -> String {
        self.namespace_key("activity")
    }

    /// One user's activity index.
    pub(crate) fn user_activity(&self, user_id: &str) -> String {
        self.namespace_key(&format!("user:{}", encode_id(user_id)))
    }

    /// The index of checkpoints by `run_id`.
    pub(crate) fn run_index(&self, run_id: &str) -> String {
        self.namespace_key(&format!("run:{}", encode_id(run_id)))
    }

    pub(crate) fn session(&self, session_id: &str) -> SessionKeys {
        let base = self.base("s", session_id);
        SessionKeys {
            session: format!("{base}:session"),
            messages: format!("{base}:msgs"),
            sequence: format!("{base}:seq"),
            client_ids: format!("{base}:cids"),
            kept: format!("{base}:kept"),
            kept_index: format!("{base}:kidx"),
            context: ContextKeys::at(&base, true),
        }
    }

    /// The keys of a scope's task context: a session's live in the session's slot, so the
    /// session's delete script removes them with the rest of the session.
    pub(crate) fn context(&self, scope: &ContextScope) -> ContextKeys {
        match scope {
            ContextScope::Session(id) => self.session(id).context,
            shared => ContextKeys::at(&self.base("c", &shared.key()), false),
        }
    }

    /// A `SCAN ... MATCH` pattern for every task context key (and the `ctxr` hashes, which
    /// [`Keys::context_scope_in_key`] skips).
    pub(crate) fn context_scan_pattern(&self) -> String {
        self.scan_pattern("[sc]", "ctx*")
    }

    /// The scope whose context a key that [`Keys::context_scan_pattern`] matched holds, for
    /// a versions key or an old release's context hash; `None` for anything else.
    pub(crate) fn context_scope_in_key(&self, key: &str) -> Option<ContextScope> {
        let start = format!("{}{{{}:", self.prefix, self.namespace);
        let rest = key.strip_prefix(&start)?;
        let (kind, rest) = rest.split_at_checked(2)?;
        let close = rest.find('}')?;
        let id = decode_id(&rest[..close])?;
        match (kind, &rest[close..]) {
            ("s:", "}:ctxv" | "}:ctx") => Some(ContextScope::session(id)),
            ("c:", "}:ctxv") => ContextScope::from_key(&id).ok(),
            _ => None,
        }
    }

    /// A `SCAN ... MATCH` pattern for the `suffix` key of every record of `kind`
    /// (`t` threads, `a` scopes, `s` sessions), with the prefix's glob characters escaped.
    pub(crate) fn scan_pattern(&self, kind: &str, suffix: &str) -> String {
        let mut escaped = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        format!("{escaped}{{{}:{kind}:*}}:{suffix}", self.namespace)
    }

    /// The id inside a key that [`Keys::scan_pattern`] matched.
    pub(crate) fn id_in_key(&self, kind: &str, key: &str) -> Option<String> {
        let start = format!("{}{{{}:{kind}:", self.prefix, self.namespace);
        let rest = key.strip_prefix(&start)?;
        decode_id(&rest[..rest.find('}')?])
    }

    /// What follows `marker` right after the tag of a key that [`Keys::scan_pattern`]
    /// matched: the hex namespace of a `:ids:` key, the hex name of a `:vers:` key.
    pub(crate) fn suffix_in_key<'a>(&self, key: &'a str, marker: &str) -> Option<&'a str> {
        // The prefix has no braces: the first `}` closes the tag.
        let close = key.find('}')?;
        key[close + 1..].strip_prefix(marker)
    }

    pub(crate) fn thread(&self, thread_id: &str) -> ThreadKeys {
        ThreadKeys {
            base: self.base("t", thread_id),
        }
    }

    pub(crate) fn scope(&self, scope: &str) -> ScopeKeys {
        ScopeKeys {
            base: self.base("a", scope),
        }
    }
}

/// The keys of one session: all in one slot.
#[derive(Debug, Clone)]
pub(crate) struct SessionKeys {
    pub(crate) session: String,
    pub(crate) messages: String,
    pub(crate) sequence: String,
    pub(crate) client_ids: String,
    /// Hash: the messages compactions kept, by summary sequence and position.
    pub(crate) kept: String,
    /// Zset: the summary sequences that kept messages.
    pub(crate) kept_index: String,
    pub(crate) context: ContextKeys,
}

impl SessionKeys {
    /// Every key, in the order the delete script takes them.
    pub(crate) fn all(&self) -> [&str; 9] {
        [
            &self.session,
            &self.messages,
            &self.sequence,
            &self.client_ids,
            &self.kept,
            &self.kept_index,
            &self.context.versions,
            &self.context.records,
            self.context.legacy.as_deref().unwrap_or_default(),
        ]
    }

    /// The keys every script that removes messages takes: messages, client ids, kept,
    /// kept index.
    pub(crate) fn removal(&self) -> [&str; 4] {
        [
            &self.messages,
            &self.client_ids,
            &self.kept,
            &self.kept_index,
        ]
    }

    /// The keys the compaction script takes: [`removal`](Self::removal)'s, then the
    /// sequence, whose expiry it refreshes with the others' (a counter that expired before
    /// the messages would hand its numbers out again).
    pub(crate) fn compaction(&self) -> [&str; 5] {
        [
            &self.messages,
            &self.client_ids,
            &self.kept,
            &self.kept_index,
            &self.sequence,
        ]
    }

    /// The keys the append and import scripts take: sequence, messages, client ids, then
    /// the kept keys, whose expiry they refresh.
    pub(crate) fn append(&self) -> [&str; 5] {
        [
            &self.sequence,
            &self.messages,
            &self.client_ids,
            &self.kept,
            &self.kept_index,
        ]
    }
}

/// The keys of one scope's task context: all in one slot.
#[derive(Debug, Clone)]
pub(crate) struct ContextKeys {
    /// Zset: the kept version numbers, each scored by itself.
    pub(crate) versions: String,
    /// Hash: `u:<version>` and `d:<version>` of every kept version.
    pub(crate) records: String,
    /// A session's context as releases before scopes stored it (one hash, one version).
    pub(crate) legacy: Option<String>,
}

impl ContextKeys {
    fn at(base: &str, session: bool) -> Self {
        ContextKeys {
            versions: format!("{base}:ctxv"),
            records: format!("{base}:ctxr"),
            legacy: session.then(|| format!("{base}:ctx")),
        }
    }

    /// The keys a context script takes: versions, records, then the old release's hash
    /// when the scope is a session's.
    pub(crate) fn script_keys(&self) -> Vec<&str> {
        let mut keys = vec![self.versions.as_str(), self.records.as_str()];
        keys.extend(self.legacy.as_deref());
        keys
    }
}

/// The keys of one thread's checkpoints: all in one slot.
#[derive(Debug, Clone)]
pub(crate) struct ThreadKeys {
    pub(crate) base: String,
}

impl ThreadKeys {
    pub(crate) fn namespaces(&self) -> String {
        format!("{}:nss", self.base)
    }
    pub(crate) fn ids(&self, hex_ns: &str) -> String {
        format!("{}:ids:{hex_ns}", self.base)
    }
    pub(crate) fn records(&self, hex_ns: &str) -> String {
        format!("{}:cp:{hex_ns}", self.base)
    }
    pub(crate) fn blobs(&self, hex_ns: &str) -> String {
        format!("{}:blobs:{hex_ns}", self.base)
    }
    pub(crate) fn write_ids(&self, hex_ns: &str) -> String {
        format!("{}:wids:{hex_ns}", self.base)
    }
    /// The namespace's change counter, which a prune compares with the value it read.
    pub(crate) fn changes(&self, hex_ns: &str) -> String {
        format!("{}:chg:{hex_ns}", self.base)
    }
    /// How many indexed checkpoints name each blob field (see `backend/prune.rs`).
    pub(crate) fn users(&self, hex_ns: &str) -> String {
        format!("{}:users:{hex_ns}", self.base)
    }
    /// The ids put since `users` was last brought up to date.
    pub(crate) fn unindexed(&self, hex_ns: &str) -> String {
        format!("{}:unidx:{hex_ns}", self.base)
    }
    /// The change counter's value at which the index described the namespace: the index
    /// is trusted only while the counter still holds it.
    pub(crate) fn indexed_at(&self, hex_ns: &str) -> String {
        format!("{}:idx:{hex_ns}", self.base)
    }
    pub(crate) fn writes(&self, hex_ns: &str, checkpoint_id: &str) -> String {
        format!("{}:w:{hex_ns}:{}", self.base, encode_id(checkpoint_id))
    }
}

/// The field of a channel value in a thread's blob hash.
pub(crate) fn blob_field(channel: &str, version: &str) -> String {
    format!("{}:{}", encode_id(channel), encode_id(version))
}

/// The field of a pending write in its checkpoint's write hash.
pub(crate) fn write_field(task_id: &str, index: i64) -> String {
    format!("{}:{index}", encode_id(task_id))
}

/// The keys of one artifact scope: all in one slot.
#[derive(Debug, Clone)]
pub(crate) struct ScopeKeys {
    pub(crate) base: String,
}

impl ScopeKeys {
    pub(crate) fn names(&self) -> String {
        format!("{}:names", self.base)
    }
    pub(crate) fn next_versions(&self) -> String {
        format!("{}:next", self.base)
    }
    pub(crate) fn versions(&self, name: &str) -> String {
        format!("{}:vers:{}", self.base, encode_id(name))
    }
    pub(crate) fn metas(&self, name: &str) -> String {
        format!("{}:meta:{}", self.base, encode_id(name))
    }
    pub(crate) fn contents(&self, name: &str) -> String {
        format!("{}:data:{}", self.base, encode_id(name))
    }
}

/// The hash tag of a key: what Redis Cluster hashes.
#[cfg(test)]
fn hash_tag(key: &str) -> &str {
    let open = key.find('{').unwrap();
    let close = open + 1 + key[open + 1..].find('}').unwrap();
    &key[open + 1..close]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_keep_their_own_tag() {
        let keys = Keys::new("storage", "ns1");
        let hostile = keys.session("a}{ns2:s:61}*:x");
        let plain = keys.session("a");
        for key in hostile.all() {
            assert_eq!(
                hash_tag(key),
                "ns1:s:617d7b6e73323a733a36317d2a3a78",
                "{key}"
            );
        }
        assert_ne!(hash_tag(&hostile.session), hash_tag(&plain.session));
        let thread = keys.thread("t{x}");
        for key in [
            thread.namespaces(),
            thread.ids(&encode_id("n}")),
            thread.changes(&encode_id("n}")),
            thread.users(&encode_id("n}")),
            thread.unindexed(&encode_id("n}")),
            thread.indexed_at(&encode_id("n}")),
            thread.writes("", "c{1}"),
        ] {
            assert_eq!(hash_tag(&key), "ns1:t:747b787d");
        }
        assert_eq!(hash_tag(&keys.activity()), "ns1");
        let user = keys.context(&ContextScope::user("u}{"));
        for key in user.script_keys() {
            assert_eq!(hash_tag(key), "ns1:c:757365723a757d7b", "{key}");
        }
        let session = keys.context(&ContextScope::session("a}{ns2:s:61}*:x"));
        assert_eq!(session.script_keys().len(), 3);
        for key in session.script_keys() {
            assert_eq!(hash_tag(key), "ns1:s:617d7b6e73323a733a36317d2a3a78");
        }
        assert_eq!(hash_tag(&keys.user_activity("u}{")), "ns1");
    }

    #[test]
    fn context_keys_name_their_scope() {
        let keys = Keys::new("p*", "ns1");
        for scope in [
            ContextScope::App,
            ContextScope::user("u:1}"),
            ContextScope::session("s{1"),
        ] {
            let context = keys.context(&scope);
            assert_eq!(
                keys.context_scope_in_key(&context.versions),
                Some(scope.clone())
            );
            assert_eq!(keys.context_scope_in_key(&context.records), None);
            if let Some(legacy) = &context.legacy {
                assert_eq!(keys.context_scope_in_key(legacy), Some(scope));
            }
        }
        assert_eq!(keys.context_scope_in_key("p*{ns1:s:61}:msgs"), None);
        assert_eq!(keys.context_scope_in_key("p*{ns1:c:6170}:ctxv"), None);
        assert_eq!(keys.context_scan_pattern(), "p\\*{ns1:[sc]:*}:ctx*");
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(decode_id(&encode_id("é:{*}")).unwrap(), "é:{*}");
        assert!(decode_id("zz").is_none());
    }
}
