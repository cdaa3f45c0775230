//! Group commit: concurrent writes of one kind stored as one batch.
//!
//! Appends to one session become one `append_messages` call; checkpoint puts of the threads
//! hashed to one lane become one `put_checkpoints` call. The queueing, the flush and the
//! acknowledgement are written once, in [`Batcher`]; a [`BatchKind`] says only how its
//! batch is stored and which items must not share one.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use dashmap::DashMap;
use futures::future::BoxFuture;
use futures::FutureExt;
use storage_core::checkpoint::group_by_thread;
use storage_core::conversation::validate_append;
use storage_core::{
    ChannelVersions, Checkpoint, Message, NewMessage, Result, StorageBackend, StorageError,
};
use tokio::sync::oneshot;

/// One kind of write that group commit coalesces.
pub(crate) trait BatchKind: Send + Sync + 'static {
    /// One caller's write.
    type Item: Send + 'static;
    /// What one caller is answered with.
    type Output: Send + 'static;

    /// Items with the same key never share a batch.
    fn exclusive_key(_item: &Self::Item) -> Option<&str> {
        None
    }

    /// Stores a batch for `lane`, answering one output per item, in order.
    fn store<'a>(
        backend: &'a dyn StorageBackend,
        lane: &'a str,
        items: Vec<Self::Item>,
    ) -> BoxFuture<'a, Result<Vec<Self::Output>>>;
}

/// Appends to one session (the lane), as one `append_messages` call.
pub(crate) struct Appends;

impl BatchKind for Appends {
    type Item = NewMessage;
    type Output = Message;

    /// A repeated client id must find the first one stored, so it waits for the next batch.
    fn exclusive_key(message: &NewMessage) -> Option<&str> {
        message.client_id.as_deref()
    }

    fn store<'a>(
        backend: &'a dyn StorageBackend,
        session_id: &'a str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'a, Result<Vec<Message>>> {
        backend.append_messages(session_id, messages)
    }
}

/// Checkpoint puts of any threads hashed to one lane, as one `put_checkpoints` call.
///
/// Each put is answered with its own outcome: a batch over several threads that fails
/// for a reason that is not temporary (something in what it stores) is stored again thread
/// by thread, so one thread's bad put fails only that thread's callers. A temporary
/// failure (the server lost, hung or in a deadlock) is not about any one put: every caller
/// gets it, and its retry layer tries again.
pub(crate) struct CheckpointPuts;

impl BatchKind for CheckpointPuts {
    type Item = (Checkpoint, ChannelVersions);
    type Output = Result<()>;

    fn store<'a>(
        backend: &'a dyn StorageBackend,
        _lane: &'a str,
        puts: Vec<(Checkpoint, ChannelVersions)>,
    ) -> BoxFuture<'a, Result<Vec<Result<()>>>> {
        Box::pin(async move {
            let count = puts.len();
            // A batch of one thread is never split. The split needs the puts again; their
            // values are shared, so keeping them copies ids and maps, not channel values.
            let kept = puts
                .iter()
                .any(|(checkpoint, _)| checkpoint.thread_id != puts[0].0.thread_id)
                .then(|| puts.clone());
            match (backend.put_checkpoints(puts).await, kept) {
                (Ok(()), _) => Ok(vec![Ok(()); count]),
                (Err(err), Some(puts)) if !err.is_temporary() => {
                    Ok(put_thread_by_thread(backend, puts).await)
                }
                (Err(err), _) => Err(err),
            }
        })
    }
}

/// Stores each thread's puts of a failed batch as a batch of its own, side by side, and
/// answers each put with its thread's outcome.
async fn put_thread_by_thread(
    backend: &dyn StorageBackend,
    puts: Vec<(Checkpoint, ChannelVersions)>,
) -> Vec<Result<()>> {
    let (threads, thread_of) = group_by_thread(puts);
    let outcomes = futures::future::join_all(
        threads
            .into_iter()
            .map(|puts| backend.put_checkpoints(puts)),
    )
    .await;
    thread_of
        .iter()
        .map(|&thread| outcomes[thread].clone())
        .collect()
}

/// Coalesces concurrent appends and checkpoint puts into batches, acknowledging each
/// caller only after the batch holding its write is stored.
pub(crate) struct GroupCommit {
    appends: Batcher<Appends>,
    checkpoints: Batcher<CheckpointPuts>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("max_batch", &self.appends.max_batch)
            .field("sessions_in_flight", &self.appends.lanes.len())
            .finish()
    }
}

impl GroupCommit {
    pub(crate) fn new(max_batch: usize) -> Self {
        GroupCommit {
            appends: Batcher::new(max_batch),
            checkpoints: Batcher::new(max_batch),
        }
    }

    /// Appends `message` as part of whatever batch is being formed for the session.
    pub(crate) async fn append(
        &self,
        backend: Arc<dyn StorageBackend>,
        session_id: &str,
        message: NewMessage,
    ) -> Result<Message> {
        // Bad input fails its own caller, before it can fail a batch.
        validate_append(session_id, std::slice::from_ref(&message)).map_err(|err| {
            err.with_backend(backend.name())
                .with_operation("append_message")
        })?;
        self.appends.submit(backend, session_id, message).await
    }

    /// Stores a checkpoint as part of whatever batch of puts is being formed.
    pub(crate) async fn put_checkpoint(
        &self,
        backend: Arc<dyn StorageBackend>,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        checkpoint.validate_put(&new_versions).map_err(|err| {
            err.with_backend(backend.name())
                .with_operation("put_checkpoint")
        })?;
        // Threads are hashed to a few lanes, so puts of different threads share a batch
        // (one statement or pipeline on one connection, where a lane per thread never
        // batched callers that each own a thread), a thread's puts keep their order in its
        // lane, and a few batches flush side by side on their own connections.
        let lane = CHECKPOINT_LANES[lane_of(&checkpoint.thread_id)];
        self.checkpoints
            .submit(backend, lane, (checkpoint, new_versions))
            .await
            .and_then(|stored| stored)
    }
}

/// How many checkpoint batches may flush at once; see `docs/benchmarks.md` (group commit)
/// for how it was chosen.
const CHECKPOINT_LANES: [&str; 4] = ["0", "1", "2", "3"];

/// The lane of a thread's puts.
fn lane_of(thread_id: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(thread_id);
    (hash % CHECKPOINT_LANES.len() as u64) as usize
}

struct Pending<K: BatchKind> {
    item: K::Item,
    reply: oneshot::Sender<Result<K::Output>>,
}

/// One lane's queue, and the right to flush it.
struct Lane<K: BatchKind> {
    queue: Mutex<Vec<Pending<K>>>,
    /// Held by a flush from taking its batch until every caller in it is answered, by a
    /// task of its own: a flush outlives the caller that started it.
    flush: Arc<tokio::sync::Mutex<()>>,
}

impl<K: BatchKind> Default for Lane<K> {
    fn default() -> Self {
        Lane {
            queue: Mutex::new(Vec::new()),
            flush: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

/// The queues of one [`BatchKind`], one lane per key.
///
/// Each caller queues its item, then takes its lane's flush lock; whoever holds it stores
/// everything queued so far (up to `max_batch`, never two items with one exclusive key)
/// and answers every caller in that batch. A caller whose item was stored by an earlier
/// holder finds its answer when it gets the lock. No item is acknowledged before it is
/// stored, and a failed batch fails each of its callers.
struct Batcher<K: BatchKind> {
    lanes: DashMap<String, Arc<Lane<K>>>,
    max_batch: usize,
}

impl<K: BatchKind> Batcher<K> {
    fn new(max_batch: usize) -> Self {
        Batcher {
            lanes: DashMap::new(),
            max_batch: max_batch.max(1),
        }
    }

    async fn submit(
        &self,
        backend: Arc<dyn StorageBackend>,
        lane_key: &str,
        item: K::Item,
    ) -> Result<K::Output> {
        let lane = self.lanes.entry(lane_key.to_owned()).or_default().clone();
        let (reply, mut answer) = oneshot::channel();
        lane.queue
            .lock()
            .map_err(|_| StorageError::backend("group-commit queue poisoned"))?
            .push(Pending { item, reply });
        let result = loop {
            let flushing = lane.flush.clone().lock_owned().await;
            match answer.try_recv() {
                Ok(result) => break result,
                // Polling a closed receiver again would panic.
                Err(oneshot::error::TryRecvError::Closed) => {
                    break Err(StorageError::backend("group commit dropped a write"))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = self.take_batch(&lane)?;
            if batch.is_empty() {
                // Our item was taken by a flush that has not answered yet: wait for it.
                drop(flushing);
                break answer.await.unwrap_or_else(|_| {
                    Err(StorageError::backend("group commit dropped a write"))
                });
            }
            // The flush runs here, in this caller's task, and holds the flush lock until
            // every caller in its batch is answered. Should this caller be cancelled first
            // (a timeout, a dropped future), the rest of the flush moves to a task of its
            // own: the others still get the true outcome of their writes, and the lane's
            // next batch still waits for this one. Only a cancelled flush pays for a task:
            // a task per flush, with a copy of the batch, cost ~7 µs of client CPU on a put
            // of ten ~2 KB channels (docs/benchmarks.md, 2026-12-02).
            let (backend, lane_key) = (backend.clone(), lane_key.to_owned());
            let flush = Flush::new(async move {
                Self::store(&*backend, &lane_key, batch).await;
                drop(flushing);
            });
            if flush.await.is_err() {
                // The flush panicked; its callers' senders were dropped with it.
                break Err(StorageError::backend("group commit flush failed"));
            }
        };
        drop(lane);
        self.lanes
            .remove_if(lane_key, |_, lane| Arc::strong_count(lane) == 1);
        result
    }

    /// The next batch: queued items in order, at most `max_batch`, no exclusive key twice.
    fn take_batch(&self, lane: &Lane<K>) -> Result<Vec<Pending<K>>> {
        let mut queue = lane
            .queue
            .lock()
            .map_err(|_| StorageError::backend("group-commit queue poisoned"))?;
        let mut batch = Vec::new();
        let mut rest = Vec::new();
        let mut keys = HashSet::new();
        for pending in queue.drain(..) {
            let repeated =
                K::exclusive_key(&pending.item).is_some_and(|key| !keys.insert(key.to_owned()));
            if batch.len() < self.max_batch && !repeated {
                batch.push(pending);
            } else {
                rest.push(pending);
            }
        }
        *queue = rest;
        Ok(batch)
    }

    async fn store(backend: &dyn StorageBackend, lane_key: &str, batch: Vec<Pending<K>>) {
        // The items move to the backend: nothing reads them after the store, so the batch
        // is never copied.
        let (items, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.item, pending.reply))
            .unzip();
        let expected = replies.len();
        match K::store(backend, lane_key, items).await {
            Ok(stored) if stored.len() == expected => {
                for (reply, output) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(output));
                }
            }
            Ok(stored) => {
                for reply in replies {
                    let _ = reply.send(Err(StorageError::backend(format!(
                        "a batch of {expected} writes was answered with {} results",
                        stored.len()
                    ))));
                }
            }
            Err(err) => {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// A flush, polled in place by the caller that started it, that still completes if that
/// caller is dropped first: whatever is left of it then runs on a task of its own.
///
/// A panic in the flush is caught and answered as an error, so a panicked flush is never
/// polled again. Dropped outside a Tokio runtime (no task to finish on), the rest of the
/// flush is dropped: its callers' senders go with it and they are answered with an error.
struct Flush {
    rest: Option<BoxFuture<'static, std::thread::Result<()>>>,
}

impl Flush {
    fn new(flush: impl Future<Output = ()> + Send + 'static) -> Self {
        Flush {
            rest: Some(AssertUnwindSafe(flush).catch_unwind().boxed()),
        }
    }
}

impl Future for Flush {
    type Output = std::thread::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let outcome = ready!(rest.as_mut().poll(cx));
        self.rest = None;
        Poll::Ready(outcome)
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        if let Some(rest) = self.rest.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(rest);
            }
        }
    }
}
