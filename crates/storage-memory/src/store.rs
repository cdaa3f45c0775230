use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crossbeam_skiplist::SkipSet;
use dashmap::DashMap;
use storage_core::{
    Artifact, ChannelValue, Checkpoint, ContextScope, Message, PendingWrite, Session, TaskContext,
};

/// The in-process "server": every namespace's data. Cheap to clone.
///
/// ```
/// use storage_memory::MemoryStore;
///
/// let store = MemoryStore::new();
/// let a = store.backend("app").unwrap();
/// let b = store.backend("app").unwrap(); // sees what `a` writes
/// let other = store.backend("other").unwrap(); // sees nothing of `a`
/// # let _ = (a, b, other);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    namespaces: Arc<DashMap<String, Arc<Namespace>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend on `namespace` of this store.
    pub fn backend(&self, namespace: &str) -> storage_core::Result<crate::MemoryBackend> {
        crate::MemoryBackend::with_store(self, crate::MemoryConfig::new(namespace))
    }

    pub(crate) fn namespace(&self, name: &str) -> Arc<Namespace> {
        self.namespaces.entry(name.to_owned()).or_default().clone()
    }
}

/// Position in the activity index: most recent first, then id ascending.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ActivityKey {
    pub newest_first: Reverse<i64>,
    pub id: String,
}

impl ActivityKey {
    pub fn of(session: &Session) -> Self {
        ActivityKey {
            newest_first: Reverse(storage_core::time::to_micros(session.last_activity)),
            id: session.id.clone(),
        }
    }
}

/// One namespace's data.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    pub sessions: DashMap<String, Session>,
    /// Every session by last activity: listing walks it from the front, cleanup from the back.
    pub activity: SkipSet<ActivityKey>,
    /// Each user's sessions by last activity.
    pub activity_by_user: DashMap<String, Arc<SkipSet<ActivityKey>>>,
    pub conversations: DashMap<String, Conversation>,
    /// Each scope's kept versions by version number; the last is the current one.
    pub contexts: DashMap<ContextScope, BTreeMap<u64, TaskContext>>,
    pub threads: DashMap<String, Thread>,
    pub scopes: DashMap<String, Scope>,
}

#[derive(Debug, Default)]
pub(crate) struct Conversation {
    /// The highest sequence ever handed out; never decreases.
    pub last_sequence: u64,
    /// Sorted by sequence; a deque so that compaction and retention take the front in
    /// time proportional to what they remove.
    pub messages: VecDeque<Message>,
    pub client_ids: HashMap<String, u64>,
    /// What each kept compaction replaced, by its summary's sequence.
    pub replaced: BTreeMap<u64, Vec<Message>>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Thread {
    pub namespaces: BTreeMap<String, Chain>,
}

/// One (thread, checkpoint namespace): its checkpoints, channel values and writes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Chain {
    /// Stored checkpoints by id.
    pub checkpoints: BTreeMap<String, Record>,
    /// channel -> version -> value, shared with the records that name it.
    pub blobs: HashMap<String, HashMap<String, Arc<ChannelValue>>>,
    /// (channel, version) -> how many stored checkpoints use it: a value goes when its
    /// last user does, without reading the survivors.
    pub uses: HashMap<(String, String), usize>,
    /// checkpoint id -> (task id, index) -> write.
    pub writes: HashMap<String, BTreeMap<(String, i64), PendingWrite>>,
}

/// A stored checkpoint: the checkpoint without its channel values, and those values
/// resolved when it was stored, so that a read clones them without looking each one up.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The checkpoint, `channel_values` empty.
    pub checkpoint: Checkpoint,
    /// One entry per entry of `checkpoint.channel_versions`, in its order: the chain's
    /// value for that (channel, version) when the record was stored, `None` if it had none.
    /// A value cannot change while a record names it (the first stored for a version
    /// stays until no record names it), so only `None` needs looking up again on a read.
    pub values: Vec<Option<Arc<ChannelValue>>>,
}

#[derive(Debug, Default)]
pub(crate) struct Scope {
    pub names: BTreeMap<String, ArtifactVersions>,
}

#[derive(Debug, Default)]
pub(crate) struct ArtifactVersions {
    pub next_version: u64,
    pub versions: BTreeMap<u64, Artifact>,
}
