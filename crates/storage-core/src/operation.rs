//! Every operation of the contract as data, described once.
//!
//! Each method of the store traits and of [`StorageBackend`] has one [`Call`] variant (its
//! arguments, owned) and one [`Reply`] variant (its result). The table at the bottom of this
//! file is the only place an operation is described: its name, the [`Kind`] it addresses,
//! whether it reads or writes, whether repeating it is harmless, the id it addresses and
//! what it means for a read cache. From that table come:
//!
//! - [`Call::describe`] and [`Call::apply`] (perform the call on any backend);
//! - a blanket implementation of every store trait and of [`StorageBackend`] for each type
//!   that implements [`Dispatch`], which turns every method into one `dispatch(Call)`.
//!
//! A wrapper of the contract (the facade, failover, a fault injector) therefore implements
//! one method, [`Dispatch::dispatch`]: it writes only what it changes and hands the rest
//! to [`Call::apply`]. It cannot forget an operation or inherit a trait's default body:
//! the blanket implementations cover every method, and `clippy::missing_trait_methods`
//! (denied on them) fails the lint run if a method ever joins a trait without joining the
//! table.
//!
//! Adding an operation means three places: the trait method, its line in the table, and
//! each backend's implementation.
//!
//! ```
//! use storage_core::operation::{Call, Dispatch, Reply};
//! use storage_core::{async_trait, Result, StorageBackend};
//!
//! /// Counts the writes that pass through it; everything else is the inner backend's.
//! #[derive(Debug)]
//! struct CountWrites<B> {
//!     inner: B,
//!     writes: std::sync::atomic::AtomicU64,
//! }
//!
//! #[async_trait]
//! impl<B: StorageBackend> Dispatch for CountWrites<B> {
//!     fn label(&self) -> &'static str {
//!         self.inner.name()
//!     }
//!     async fn dispatch(&self, call: Call) -> Result<Reply> {
//!         if call.describe().is_write() {
//!             self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         }
//!         call.apply(&self.inner).await
//!     }
//! }
//!
//! // Every trait method is there, each one a `dispatch`.
//! fn as_backend<B: StorageBackend>(wrapper: CountWrites<B>) -> impl StorageBackend {
//!     wrapper
//! }
//! ```

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::{Artifact, ArtifactMeta, ArtifactStore, ByteStream, NewArtifact};
use crate::backend::{BackendMetrics, HealthStatus, StorageBackend};
use crate::carried::{Carried, REFUSED_BEFORE_COPY_DEPTH};
use crate::checkpoint::{
    ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointStore, CheckpointTuple,
    PendingWrite,
};
use crate::conversation::{ConversationStore, Message, MessageRange, NewMessage};
use crate::error::{Result, StorageError};
use crate::json::Metadata;
use crate::kind::Kind;
use crate::page::Page;
use crate::retention::Retention;
use crate::session::{
    BatchCreate, NewSession, Session, SessionQuery, SessionStatus, SessionStore, SessionUpdate,
};
use crate::task_context::{ContextScope, ExpectedVersion, TaskContext, TaskContextStore};

/// Whether an operation reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Changes nothing.
    Read,
    /// May change stored data.
    Write,
}

/// A group of cached entries invalidated together: one session's records, one thread's
/// checkpoints, one artifact scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheTag {
    /// The kind the entries belong to.
    pub kind: Kind,
    /// The session id, thread id or artifact scope.
    pub group: String,
}

impl CacheTag {
    /// The tag of `group` within `kind`.
    pub fn new(kind: Kind, group: impl Into<String>) -> Self {
        CacheTag {
            kind,
            group: group.into(),
        }
    }
}

/// What an operation means for a read cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEffect {
    /// Neither cached nor invalidating.
    None,
    /// A cacheable read of the entry `item` within `tag`.
    Read {
        /// The group the entry belongs to.
        tag: CacheTag,
        /// The entry within the group (a checkpoint namespace, an artifact version, ...).
        item: String,
    },
    /// A write that invalidates every entry of these groups.
    Invalidate(Vec<CacheTag>),
    /// A write that may touch any group of these kinds.
    InvalidateKinds(Vec<Kind>),
    /// The end of the store's life: drop everything and cache nothing more.
    Close,
}

/// What the table says of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description<'a> {
    /// The contract method, e.g. `get_session`.
    pub name: &'static str,
    /// The kind it addresses; `None` for lifecycle operations over a whole backend.
    pub kind: Option<Kind>,
    /// Read or write.
    pub access: Access,
    /// Whether running it twice has the effect of running it once, so that a temporary
    /// failure of unknown outcome may be retried (and a journaled write replayed).
    pub idempotent: bool,
    /// The session id, thread id or artifact scope it addresses.
    pub subject: Option<&'a str>,
    /// What it means for a read cache.
    pub cache: CacheEffect,
}

impl Description<'_> {
    /// Whether the call may change stored data.
    pub fn is_write(&self) -> bool {
        self.access == Access::Write
    }
}

/// Keeps a method's parameter inside a [`Call`]: borrowed strings and slices become owned.
pub trait OwnArg<Owned> {
    /// The owned form.
    fn own(self) -> Owned;
}

impl<T> OwnArg<T> for T {
    fn own(self) -> T {
        self
    }
}

impl OwnArg<String> for &str {
    fn own(self) -> String {
        self.to_owned()
    }
}

impl OwnArg<Option<String>> for Option<&str> {
    fn own(self) -> Option<String> {
        self.map(str::to_owned)
    }
}

impl OwnArg<Vec<String>> for &[String] {
    fn own(self) -> Vec<String> {
        self.to_vec()
    }
}

impl OwnArg<StreamSlot> for ByteStream {
    fn own(self) -> StreamSlot {
        StreamSlot::new(self)
    }
}

/// Passes an argument kept in a [`Call`] back to a method; owned values are cloned, so a
/// call can be applied more than once (a retry, a mirror to a second backend).
pub trait ViewArg<'a, Param> {
    /// The parameter form.
    fn view(&'a self) -> Param;
}

impl<'a, T: Clone> ViewArg<'a, T> for T {
    fn view(&'a self) -> T {
        self.clone()
    }
}

impl<'a> ViewArg<'a, &'a str> for String {
    fn view(&'a self) -> &'a str {
        self
    }
}

impl<'a> ViewArg<'a, Option<&'a str>> for Option<String> {
    fn view(&'a self) -> Option<&'a str> {
        self.as_deref()
    }
}

impl<'a> ViewArg<'a, &'a [String]> for Vec<String> {
    fn view(&'a self) -> &'a [String] {
        self
    }
}

impl<'a> ViewArg<'a, ByteStream> for StreamSlot {
    fn view(&'a self) -> ByteStream {
        self.take().unwrap_or_else(|| {
            stream::once(async {
                Err(StorageError::invalid_input(
                    "the artifact stream was already consumed by an earlier attempt",
                ))
            })
            .boxed()
        })
    }
}

/// A stream argument: consumed by the first attempt that reads it. A second attempt
/// (a retry, a mirror) gets a stream that fails with `InvalidInput`; wrappers that need
/// the content twice take it with [`StreamSlot::take`] and decide themselves.
pub struct StreamSlot(Mutex<Option<ByteStream>>);

impl StreamSlot {
    /// A slot holding `stream`.
    pub fn new(stream: ByteStream) -> Self {
        StreamSlot(Mutex::new(Some(stream)))
    }

    /// The stream, if no attempt took it yet.
    pub fn take(&self) -> Option<ByteStream> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl Carried for StreamSlot {
    fn depth(&self, _limit: usize) -> usize {
        0
    }
    fn take_values(&mut self, _out: &mut Vec<Value>) {}
}

impl fmt::Debug for StreamSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamSlot")
    }
}

/// A wrapper of the contract: sees every operation as one [`Call`].
///
/// Implementing it gives the type every store trait and [`StorageBackend`] (see the module
/// docs); there is nothing else to implement and no default to fall back to.
#[async_trait]
pub trait Dispatch: fmt::Debug + Send + Sync {
    /// The name [`StorageBackend::name`] reports.
    fn label(&self) -> &'static str;

    /// Performs `call`; [`Call::apply`] performs it on a backend unchanged.
    async fn dispatch(&self, call: Call) -> Result<Reply>;
}

fn invalidate(kind: Kind, group: &str) -> CacheEffect {
    CacheEffect::Invalidate(vec![CacheTag::new(kind, group)])
}

fn read_of(kind: Kind, group: &str, item: impl Into<String>) -> CacheEffect {
    CacheEffect::Read {
        tag: CacheTag::new(kind, group),
        item: item.into(),
    }
}

fn artifact_item(name: &str, version: Option<u64>) -> String {
    match version {
        Some(version) => format!("{name}\u{0}{version}"),
        None => format!("{name}\u{0}latest"),
    }
}

fn session_tags<'a>(ids: impl Iterator<Item = &'a str>) -> CacheEffect {
    CacheEffect::Invalidate(ids.map(|id| CacheTag::new(Kind::Sessions, id)).collect())
}

fn thread_tags(puts: &[(Checkpoint, ChannelVersions)]) -> CacheEffect {
    let threads: std::collections::BTreeSet<&str> =
        puts.iter().map(|(c, _)| c.thread_id.as_str()).collect();
    CacheEffect::Invalidate(
        threads
            .into_iter()
            .map(|thread| CacheTag::new(Kind::Checkpoints, thread))
            .collect(),
    )
}

impl Reply {
    /// The error for a reply that is not the one its call asked for (a wrapper's bug).
    pub fn mismatch(&self, expected: &'static str) -> StorageError {
        StorageError::backend(format!(
            "a wrapper answered {expected} with the reply of {}",
            self.name()
        ))
        .with_operation(expected)
    }
}

macro_rules! contract {
    (
        $(
            store $store:ident {
                $(
                    $(#[$attr:meta])*
                    $variant:ident = $method:ident($($arg:ident: $param:ty => $owned:ty),* $(,)?)
                        -> $out:ty {
                        kind: $kind:expr,
                        $access:ident,
                        idempotent: $idempotent:expr,
                        subject: $subject:expr,
                        cache: $cache:expr $(,)?
                    }
                )*
            }
        )*
    ) => {
        /// One operation of the contract with its arguments; see the module docs.
        ///
        /// Writes serialize (tagged by `op`, the method's name), which is what the failover
        /// journal stores; a call holding a stream does not.
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Call {
            $($(
                $(#[$attr])*
                $variant { $(
                    #[allow(missing_docs)]
                    $arg: $owned
                ),* },
            )*)*
        }

        /// The result of one [`Call`], in the variant of the same name.
        #[allow(missing_docs)]
        pub enum Reply {
            $($( $variant($out), )*)*
        }

        impl Reply {
            /// The method whose result this is.
            pub fn name(&self) -> &'static str {
                match self {
                    $($( Reply::$variant(_) => stringify!($method), )*)*
                }
            }
        }

        impl fmt::Debug for Reply {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "Reply::{}", self.name())
            }
        }

        impl Call {
            /// The contract method, e.g. `get_session`.
            pub fn name(&self) -> &'static str {
                match self {
                    $($( Call::$variant { .. } => stringify!($method), )*)*
                }
            }

            /// What the table says of this call.
            #[allow(unused_variables)]
            pub fn describe(&self) -> Description<'_> {
                match self {
                    $($(
                        Call::$variant { $($arg),* } => Description {
                            name: stringify!($method),
                            kind: $kind,
                            access: Access::$access,
                            idempotent: $idempotent,
                            subject: $subject,
                            cache: $cache,
                        },
                    )*)*
                }
            }

            /// Refuses a call that carries JSON nested deeper than
            /// [`REFUSED_BEFORE_COPY_DEPTH`] (far past the backends' limit) before anything
            /// copies it, and takes its values apart without recursion: copying or dropping
            /// such a value recursively would overflow the stack.
            #[allow(unused_variables)]
            pub fn refuse_if_too_deep(&mut self) -> Result<()> {
                let limit = REFUSED_BEFORE_COPY_DEPTH;
                let too_deep = match &*self {
                    $($(
                        Call::$variant { $($arg),* } => false $(|| $arg.depth(limit) > limit)*,
                    )*)*
                };
                if !too_deep {
                    return Ok(());
                }
                let mut values = Vec::new();
                match self {
                    $($(
                        Call::$variant { $($arg),* } => { $($arg.take_values(&mut values);)* }
                    )*)*
                }
                values.into_iter().for_each(crate::policy::dismantle);
                Err(crate::carried::too_deep(self.name()))
            }

            /// Performs the call on `backend`, unchanged. Arguments are cloned, so the same
            /// call can be applied again (a stream only once).
            pub async fn apply(&self, backend: &dyn StorageBackend) -> Result<Reply> {
                match self {
                    $($(
                        Call::$variant { $($arg),* } => Ok(Reply::$variant(
                            backend.$method($(ViewArg::view($arg)),*).await?,
                        )),
                    )*)*
                }
            }
        }

        contract!(@impls $( $store { $( $variant = $method($($arg: $param),*) -> $out; )* } )*);
    };

    (@impls $( $store:ident { $( $variant:ident = $method:ident($($arg:ident: $param:ty),*) -> $out:ty; )* } )*) => {
        $(
            contract!(@impl $store { $( $variant = $method($($arg: $param),*) -> $out; )* });
        )*
    };

    (@impl StorageBackend { $($methods:tt)* }) => {
        contract!(@impl StorageBackend [
            fn name(&self) -> &'static str {
                self.label()
            }
        ] { $($methods)* });
    };

    (@impl $store:ident { $($methods:tt)* }) => {
        contract!(@impl $store [] { $($methods)* });
    };

    (@impl $store:ident [$($extra:tt)*] {
        $( $variant:ident = $method:ident($($arg:ident: $param:ty),*) -> $out:ty; )*
    }) => {
        // Every method of the trait, each one `dispatch` of its call: no default body is
        // ever inherited (the lint fails the build if the table misses a method).
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<D: Dispatch> $store for D {
            $($extra)*
            $(
                async fn $method(&self, $($arg: $param),*) -> Result<$out> {
                    let mut call = Call::$variant { $($arg: OwnArg::own($arg)),* };
                    call.refuse_if_too_deep()?;
                    match self.dispatch(call).await? {
                        Reply::$variant(value) => Ok(value),
                        other => Err(other.mismatch(stringify!($method))),
                    }
                }
            )*
        }
    };
}

contract! {
    store SessionStore {
        /// [`SessionStore::create_session`]
        CreateSession = create_session(session: NewSession => NewSession) -> Session {
            kind: Some(Kind::Sessions), Write, idempotent: false,
            subject: Some(&session.id),
            cache: invalidate(Kind::Sessions, &session.id),
        }
        /// [`SessionStore::create_sessions`]
        CreateSessions = create_sessions(sessions: Vec<NewSession> => Vec<NewSession>)
            -> BatchCreate {
            kind: Some(Kind::Sessions), Write, idempotent: false,
            subject: None,
            cache: session_tags(sessions.iter().map(|s| s.id.as_str())),
        }
        /// [`SessionStore::get_session`]
        GetSession = get_session(id: &str => String) -> Option<Session> {
            kind: Some(Kind::Sessions), Read, idempotent: true,
            subject: Some(id),
            cache: read_of(Kind::Sessions, id, ""),
        }
        /// [`SessionStore::get_sessions`]
        GetSessions = get_sessions(ids: &[String] => Vec<String>) -> Vec<Option<Session>> {
            kind: Some(Kind::Sessions), Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
        /// [`SessionStore::update_session`]
        UpdateSession = update_session(id: &str => String, update: SessionUpdate => SessionUpdate)
            -> Session {
            kind: Some(Kind::Sessions), Write, idempotent: false,
            subject: Some(id),
            cache: invalidate(Kind::Sessions, id),
        }
        /// [`SessionStore::end_session`]
        EndSession = end_session(id: &str => String, status: SessionStatus => SessionStatus)
            -> Session {
            kind: Some(Kind::Sessions), Write, idempotent: true,
            subject: Some(id),
            cache: invalidate(Kind::Sessions, id),
        }
        /// [`SessionStore::delete_session`]
        DeleteSession = delete_session(id: &str => String) -> bool {
            kind: Some(Kind::Sessions), Write, idempotent: true,
            subject: Some(id),
            cache: CacheEffect::Invalidate(vec![
                CacheTag::new(Kind::Sessions, id.as_str()),
                CacheTag::new(Kind::TaskContext, ContextScope::session(id.as_str()).key()),
            ]),
        }
        /// [`SessionStore::list_sessions`]
        ListSessions = list_sessions(query: SessionQuery => SessionQuery) -> Page<Session> {
            kind: Some(Kind::Sessions), Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
        /// [`SessionStore::import_session`]
        ImportSession = import_session(session: Session => Session) -> () {
            kind: Some(Kind::Sessions), Write, idempotent: true,
            subject: Some(&session.id),
            cache: invalidate(Kind::Sessions, &session.id),
        }
    }

    store ConversationStore {
        /// [`ConversationStore::append_message`]
        AppendMessage = append_message(session_id: &str => String, message: NewMessage => NewMessage)
            -> Message {
            kind: Some(Kind::Conversations), Write, idempotent: message.client_id.is_some(),
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::append_messages`]
        AppendMessages = append_messages(
            session_id: &str => String,
            messages: Vec<NewMessage> => Vec<NewMessage>,
        ) -> Vec<Message> {
            kind: Some(Kind::Conversations), Write,
            idempotent: messages.iter().all(|m| m.client_id.is_some()),
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::get_conversation_history`]
        GetConversationHistory = get_conversation_history(session_id: &str => String, limit: usize => usize)
            -> Vec<Message> {
            kind: Some(Kind::Conversations), Read, idempotent: true,
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::get_messages`]
        GetMessages = get_messages(session_id: &str => String, range: MessageRange => MessageRange)
            -> Vec<Message> {
            kind: Some(Kind::Conversations), Read, idempotent: true,
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::pop_last_message`]
        PopLastMessage = pop_last_message(session_id: &str => String) -> Option<Message> {
            kind: Some(Kind::Conversations), Write, idempotent: false,
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::clear_conversation`]
        ClearConversation = clear_conversation(session_id: &str => String) -> u64 {
            kind: Some(Kind::Conversations), Write, idempotent: true,
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::compact_conversation`]
        CompactConversation = compact_conversation(
            session_id: &str => String,
            up_to: u64 => u64,
            summary: NewMessage => NewMessage,
            keep_replaced: bool => bool,
        ) -> Message {
            // A failed attempt of unknown outcome may have compacted: repeating it is then
            // a `Conflict`, unless the summary's client id makes it idempotent.
            kind: Some(Kind::Conversations), Write, idempotent: summary.client_id.is_some(),
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::get_replaced_messages`]
        GetReplacedMessages = get_replaced_messages(
            session_id: &str => String,
            summary_sequence: u64 => u64,
        ) -> Vec<Message> {
            kind: Some(Kind::Conversations), Read, idempotent: true,
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::rewind_conversation`]
        RewindConversation = rewind_conversation(session_id: &str => String, sequence: u64 => u64)
            -> u64 {
            kind: Some(Kind::Conversations), Write, idempotent: true,
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::retain_messages`]
        RetainMessages = retain_messages(retention: Retention => Retention) -> u64 {
            kind: Some(Kind::Conversations), Write, idempotent: true,
            subject: None,
            cache: CacheEffect::InvalidateKinds(vec![Kind::Conversations]),
        }
        /// [`ConversationStore::import_messages`]
        ImportMessages = import_messages(session_id: &str => String, messages: Vec<Message> => Vec<Message>)
            -> u64 {
            kind: Some(Kind::Conversations), Write, idempotent: true,
            subject: Some(session_id),
            cache: CacheEffect::None,
        }
        /// [`ConversationStore::list_conversation_ids`]
        ListConversationIds = list_conversation_ids(
            after: Option<&str> => Option<String>,
            limit: usize => usize,
        ) -> Vec<String> {
            kind: Some(Kind::Conversations), Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
    }

    store CheckpointStore {
        /// [`CheckpointStore::put_checkpoint`]
        PutCheckpoint = put_checkpoint(
            checkpoint: Checkpoint => Checkpoint,
            new_versions: ChannelVersions => ChannelVersions,
        ) -> () {
            kind: Some(Kind::Checkpoints), Write, idempotent: true,
            subject: Some(&checkpoint.thread_id),
            cache: invalidate(Kind::Checkpoints, &checkpoint.thread_id),
        }
        /// [`CheckpointStore::put_checkpoints`]
        PutCheckpoints = put_checkpoints(
            puts: Vec<(Checkpoint, ChannelVersions)> => Vec<(Checkpoint, ChannelVersions)>,
        ) -> () {
            kind: Some(Kind::Checkpoints), Write, idempotent: true,
            subject: puts.first().map(|(c, _)| c.thread_id.as_str()),
            cache: thread_tags(puts),
        }
        /// [`CheckpointStore::get_checkpoint`]
        GetCheckpoint = get_checkpoint(
            thread_id: &str => String,
            namespace: &str => String,
            checkpoint_id: Option<&str> => Option<String>,
        ) -> Option<CheckpointTuple> {
            kind: Some(Kind::Checkpoints), Read, idempotent: true,
            subject: Some(thread_id),
            // Only the latest checkpoint of a namespace is cached.
            cache: match checkpoint_id {
                None => read_of(Kind::Checkpoints, thread_id, namespace.as_str()),
                Some(_) => CacheEffect::None,
            },
        }
        /// [`CheckpointStore::list_checkpoints`]
        ListCheckpoints = list_checkpoints(query: CheckpointQuery => CheckpointQuery)
            -> Vec<CheckpointTuple> {
            kind: Some(Kind::Checkpoints), Read, idempotent: true,
            subject: Some(&query.thread_id),
            cache: CacheEffect::None,
        }
        /// [`CheckpointStore::put_writes`]
        PutWrites = put_writes(
            key: CheckpointKey => CheckpointKey,
            task_id: &str => String,
            task_path: &str => String,
            writes: Vec<(String, crate::ChannelValue)> => Vec<(String, crate::ChannelValue)>,
        ) -> () {
            kind: Some(Kind::Checkpoints), Write, idempotent: true,
            subject: Some(&key.thread_id),
            cache: invalidate(Kind::Checkpoints, &key.thread_id),
        }
        /// [`CheckpointStore::get_writes`]
        GetWrites = get_writes(key: CheckpointKey => CheckpointKey) -> Vec<PendingWrite> {
            kind: Some(Kind::Checkpoints), Read, idempotent: true,
            subject: Some(&key.thread_id),
            cache: CacheEffect::None,
        }
        /// [`CheckpointStore::search_checkpoints`]
        SearchCheckpoints = search_checkpoints(search: crate::CheckpointSearch => crate::CheckpointSearch)
            -> Page<CheckpointTuple> {
            kind: Some(Kind::Checkpoints), Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
        /// [`CheckpointStore::delta_channel_history`]
        DeltaChannelHistory = delta_channel_history(
            key: CheckpointKey => CheckpointKey,
            channels: Vec<String> => Vec<String>,
        ) -> Option<std::collections::BTreeMap<String, crate::ChannelHistory>> {
            kind: Some(Kind::Checkpoints), Read, idempotent: true,
            subject: Some(&key.thread_id),
            cache: CacheEffect::None,
        }
        /// [`CheckpointStore::delete_thread`]
        DeleteThread = delete_thread(thread_id: &str => String) -> u64 {
            kind: Some(Kind::Checkpoints), Write, idempotent: true,
            subject: Some(thread_id),
            cache: invalidate(Kind::Checkpoints, thread_id),
        }
        /// [`CheckpointStore::prune_checkpoints`]
        PruneCheckpoints = prune_checkpoints(thread_id: &str => String, keep_last: usize => usize)
            -> u64 {
            kind: Some(Kind::Checkpoints), Write, idempotent: true,
            subject: Some(thread_id),
            cache: invalidate(Kind::Checkpoints, thread_id),
        }
        /// [`CheckpointStore::retain_checkpoints`]
        RetainCheckpoints = retain_checkpoints(retention: Retention => Retention) -> u64 {
            kind: Some(Kind::Checkpoints), Write, idempotent: true,
            subject: None,
            cache: CacheEffect::InvalidateKinds(vec![Kind::Checkpoints]),
        }
        /// [`CheckpointStore::copy_thread`]
        CopyThread = copy_thread(
            source_thread_id: &str => String,
            target_thread_id: &str => String,
        ) -> u64 {
            kind: Some(Kind::Checkpoints), Write, idempotent: false,
            subject: Some(target_thread_id),
            cache: invalidate(Kind::Checkpoints, target_thread_id),
        }
        /// [`CheckpointStore::delete_for_runs`]
        DeleteForRuns = delete_for_runs(run_ids: &[String] => Vec<String>) -> u64 {
            kind: Some(Kind::Checkpoints), Write, idempotent: true,
            subject: None,
            cache: CacheEffect::InvalidateKinds(vec![Kind::Checkpoints]),
        }
        /// [`CheckpointStore::list_thread_ids`]
        ListThreadIds = list_thread_ids(after: Option<&str> => Option<String>, limit: usize => usize)
            -> Vec<String> {
            kind: Some(Kind::Checkpoints), Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
    }

    store TaskContextStore {
        /// [`TaskContextStore::get_context`]
        GetContext = get_context(scope: ContextScope => ContextScope, version: Option<u64> => Option<u64>)
            -> Option<TaskContext> {
            kind: Some(Kind::TaskContext), Read, idempotent: true,
            subject: Some(scope.id()),
            // Only the current version is cached.
            cache: match version {
                None => read_of(Kind::TaskContext, &scope.key(), ""),
                Some(_) => CacheEffect::None,
            },
        }
        /// [`TaskContextStore::list_context_versions`]
        ListContextVersions = list_context_versions(
            scope: ContextScope => ContextScope,
            before: Option<u64> => Option<u64>,
            limit: usize => usize,
        ) -> Vec<TaskContext> {
            kind: Some(Kind::TaskContext), Read, idempotent: true,
            subject: Some(scope.id()),
            cache: CacheEffect::None,
        }
        /// [`TaskContextStore::store_context`]
        StoreContext = store_context(
            scope: ContextScope => ContextScope,
            value: Value => Value,
            expected: ExpectedVersion => ExpectedVersion,
            keep_versions: u32 => u32,
        ) -> TaskContext {
            kind: Some(Kind::TaskContext), Write, idempotent: false,
            subject: Some(scope.id()),
            cache: invalidate(Kind::TaskContext, &scope.key()),
        }
        /// [`TaskContextStore::delete_context`]
        DeleteContext = delete_context(scope: ContextScope => ContextScope) -> bool {
            kind: Some(Kind::TaskContext), Write, idempotent: true,
            subject: Some(scope.id()),
            cache: invalidate(Kind::TaskContext, &scope.key()),
        }
        /// [`TaskContextStore::retain_context_versions`]
        RetainContextVersions = retain_context_versions(retention: Retention => Retention) -> u64 {
            kind: Some(Kind::TaskContext), Write, idempotent: true,
            subject: None,
            cache: CacheEffect::InvalidateKinds(vec![Kind::TaskContext]),
        }
        /// [`TaskContextStore::import_task_context`]
        ImportTaskContext = import_task_context(context: TaskContext => TaskContext) -> bool {
            kind: Some(Kind::TaskContext), Write, idempotent: true,
            subject: Some(context.scope.id()),
            cache: invalidate(Kind::TaskContext, &context.scope.key()),
        }
        /// [`TaskContextStore::list_context_scopes`]
        ListContextScopes = list_context_scopes(
            after: Option<ContextScope> => Option<ContextScope>,
            limit: usize => usize,
        ) -> Vec<ContextScope> {
            kind: Some(Kind::TaskContext), Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
    }

    store ArtifactStore {
        /// [`ArtifactStore::save_artifact`]
        SaveArtifact = save_artifact(
            scope: &str => String,
            name: &str => String,
            artifact: NewArtifact => NewArtifact,
        ) -> ArtifactMeta {
            kind: Some(Kind::Artifacts), Write, idempotent: false,
            subject: Some(scope),
            cache: invalidate(Kind::Artifacts, scope),
        }
        /// [`ArtifactStore::get_artifact`]
        GetArtifact = get_artifact(scope: &str => String, name: &str => String, version: Option<u64> => Option<u64>)
            -> Option<Artifact> {
            kind: Some(Kind::Artifacts), Read, idempotent: true,
            subject: Some(scope),
            cache: CacheEffect::None,
        }
        /// [`ArtifactStore::get_artifact_meta`]
        GetArtifactMeta = get_artifact_meta(
            scope: &str => String,
            name: &str => String,
            version: Option<u64> => Option<u64>,
        ) -> Option<ArtifactMeta> {
            kind: Some(Kind::Artifacts), Read, idempotent: true,
            subject: Some(scope),
            cache: read_of(Kind::Artifacts, scope, artifact_item(name, *version)),
        }
        /// [`ArtifactStore::artifact_exists`]
        ArtifactExists = artifact_exists(
            scope: &str => String,
            name: &str => String,
            version: Option<u64> => Option<u64>,
        ) -> bool {
            kind: Some(Kind::Artifacts), Read, idempotent: true,
            subject: Some(scope),
            cache: CacheEffect::None,
        }
        /// [`ArtifactStore::list_artifacts`]
        ListArtifacts = list_artifacts(scope: &str => String) -> Vec<String> {
            kind: Some(Kind::Artifacts), Read, idempotent: true,
            subject: Some(scope),
            cache: CacheEffect::None,
        }
        /// [`ArtifactStore::list_artifact_versions`]
        ListArtifactVersions = list_artifact_versions(scope: &str => String, name: &str => String)
            -> Vec<ArtifactMeta> {
            kind: Some(Kind::Artifacts), Read, idempotent: true,
            subject: Some(scope),
            cache: CacheEffect::None,
        }
        /// [`ArtifactStore::delete_artifact`]
        DeleteArtifact = delete_artifact(
            scope: &str => String,
            name: &str => String,
            version: Option<u64> => Option<u64>,
        ) -> u64 {
            kind: Some(Kind::Artifacts), Write, idempotent: true,
            subject: Some(scope),
            cache: invalidate(Kind::Artifacts, scope),
        }
        /// [`ArtifactStore::clear_artifacts`]
        ClearArtifacts = clear_artifacts(scope: &str => String) -> u64 {
            kind: Some(Kind::Artifacts), Write, idempotent: true,
            subject: Some(scope),
            cache: invalidate(Kind::Artifacts, scope),
        }
        /// [`ArtifactStore::retain_artifact_versions`]
        RetainArtifactVersions = retain_artifact_versions(retention: Retention => Retention) -> u64 {
            kind: Some(Kind::Artifacts), Write, idempotent: true,
            subject: None,
            cache: CacheEffect::InvalidateKinds(vec![Kind::Artifacts]),
        }
        /// [`ArtifactStore::list_artifact_scopes`]
        ListArtifactScopes = list_artifact_scopes(after: Option<&str> => Option<String>, limit: usize => usize)
            -> Vec<String> {
            kind: Some(Kind::Artifacts), Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
        /// [`ArtifactStore::import_artifact`]
        ImportArtifact = import_artifact(artifact: Artifact => Artifact) -> bool {
            kind: Some(Kind::Artifacts), Write, idempotent: true,
            subject: Some(&artifact.meta.scope),
            cache: invalidate(Kind::Artifacts, &artifact.meta.scope),
        }
        /// [`ArtifactStore::save_artifact_stream`]; never journaled, since its content
        /// is a stream.
        #[serde(skip)]
        SaveArtifactStream = save_artifact_stream(
            scope: &str => String,
            name: &str => String,
            content_type: &str => String,
            metadata: Metadata => Metadata,
            content: ByteStream => StreamSlot,
            max_size: Option<u64> => Option<u64>,
        ) -> ArtifactMeta {
            // A stream is consumed by the first attempt: never repeated.
            kind: Some(Kind::Artifacts), Write, idempotent: false,
            subject: Some(scope),
            cache: invalidate(Kind::Artifacts, scope),
        }
        /// [`ArtifactStore::open_artifact_stream`]
        OpenArtifactStream = open_artifact_stream(
            scope: &str => String,
            name: &str => String,
            version: Option<u64> => Option<u64>,
        ) -> Option<(ArtifactMeta, ByteStream)> {
            kind: Some(Kind::Artifacts), Read, idempotent: true,
            subject: Some(scope),
            cache: CacheEffect::None,
        }
    }

    store StorageBackend {
        /// [`StorageBackend::initialize`]
        Initialize = initialize() -> () {
            kind: None, Write, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
        /// [`StorageBackend::close`]
        Close = close() -> () {
            kind: None, Write, idempotent: true,
            subject: None,
            cache: CacheEffect::Close,
        }
        /// [`StorageBackend::health_check`]
        HealthCheck = health_check() -> HealthStatus {
            kind: None, Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
        /// [`StorageBackend::get_metrics`]
        GetMetrics = get_metrics() -> BackendMetrics {
            kind: None, Read, idempotent: true,
            subject: None,
            cache: CacheEffect::None,
        }
        /// [`StorageBackend::cleanup_expired_sessions`]
        CleanupExpiredSessions = cleanup_expired_sessions(max_idle: Duration => Duration) -> u64 {
            kind: Some(Kind::Sessions), Write, idempotent: true,
            subject: None,
            cache: CacheEffect::InvalidateKinds(vec![Kind::Sessions, Kind::TaskContext]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_serialize_tagged_by_method_name() {
        let call = Call::DeleteThread {
            thread_id: "t-1".into(),
        };
        let line = serde_json::to_string(&call).unwrap();
        assert_eq!(line, r#"{"op":"delete_thread","thread_id":"t-1"}"#);
        let back: Call = serde_json::from_str(&line).unwrap();
        assert_eq!(back.name(), "delete_thread");
    }

    #[test]
    fn descriptions_come_from_the_table() {
        let read = Call::GetSession { id: "s".into() };
        let described = read.describe();
        assert_eq!(described.name, "get_session");
        assert_eq!(described.kind, Some(Kind::Sessions));
        assert!(!described.is_write());
        assert_eq!(described.subject, Some("s"));
        let append = Call::AppendMessage {
            session_id: "s".into(),
            message: NewMessage::new("user", "hi"),
        };
        assert!(!append.describe().idempotent);
        let retried = Call::AppendMessage {
            session_id: "s".into(),
            message: NewMessage::new("user", "hi").with_client_id("c"),
        };
        assert!(retried.describe().idempotent);
    }

    #[test]
    fn a_stream_is_taken_once() {
        let slot = StreamSlot::new(stream::empty().boxed());
        assert!(slot.take().is_some());
        assert!(slot.take().is_none());
    }
}
