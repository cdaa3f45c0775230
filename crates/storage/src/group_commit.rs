//! Group commit: concurrent appends to one session stored as one batch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use storage_core::conversation::validate_append;
use storage_core::{Message, NewMessage, Result, StorageBackend, StorageError};
use tokio::sync::oneshot;

use crate::storage::copy_error;

struct Pending {
    message: NewMessage,
    reply: oneshot::Sender<Result<Message>>,
}

/// One session's queue, and the right to flush it.
#[derive(Default)]
struct Lane {
    queue: Mutex<Vec<Pending>>,
    flush: tokio::sync::Mutex<()>,
}

/// Coalesces concurrent `append_message` calls on the same session into one
/// `append_messages` call (one round trip, one transaction), acknowledging each caller only
/// after the batch holding its message is stored.
///
/// Each caller queues its message, then takes the session's flush lock; whoever holds it
/// stores everything queued so far (up to `max_batch`, and never two messages with one
/// client id in one batch) and answers every caller in that batch. A caller whose message
/// was stored by an earlier holder finds its answer when it gets the lock. No message is
/// acknowledged before it is stored, and a failed batch fails each of its callers.
pub(crate) struct GroupCommit {
    lanes: DashMap<String, Arc<Lane>>,
    max_batch: usize,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("max_batch", &self.max_batch)
            .field("sessions_in_flight", &self.lanes.len())
            .finish()
    }
}

impl GroupCommit {
    pub(crate) fn new(max_batch: usize) -> Self {
        GroupCommit {
            lanes: DashMap::new(),
            max_batch: max_batch.max(1),
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
        let lane = self.lanes.entry(session_id.to_owned()).or_default().clone();
        let (reply, mut answer) = oneshot::channel();
        lane.queue
            .lock()
            .map_err(|_| StorageError::backend("group-commit queue poisoned"))?
            .push(Pending { message, reply });
        let result = loop {
            let _flushing = lane.flush.lock().await;
            if let Ok(result) = answer.try_recv() {
                break result;
            }
            let batch = self.take_batch(&lane)?;
            if batch.is_empty() {
                // Our message was taken by a flush that has not answered yet: wait for it.
                drop(_flushing);
                break answer.await.unwrap_or_else(|_| {
                    Err(StorageError::backend("group commit dropped an append"))
                });
            }
            Self::store(&*backend, session_id, batch).await;
        };
        drop(lane);
        self.lanes
            .remove_if(session_id, |_, lane| Arc::strong_count(lane) == 1);
        result
    }

    /// The next batch: queued messages in order, at most `max_batch`, no client id twice.
    fn take_batch(&self, lane: &Lane) -> Result<Vec<Pending>> {
        let mut queue = lane
            .queue
            .lock()
            .map_err(|_| StorageError::backend("group-commit queue poisoned"))?;
        let mut batch = Vec::new();
        let mut rest = Vec::new();
        let mut client_ids = HashSet::new();
        for pending in queue.drain(..) {
            let repeated = pending
                .message
                .client_id
                .as_ref()
                .is_some_and(|id| !client_ids.insert(id.clone()));
            if batch.len() < self.max_batch && !repeated {
                batch.push(pending);
            } else {
                rest.push(pending);
            }
        }
        *queue = rest;
        Ok(batch)
    }

    async fn store(backend: &dyn StorageBackend, session_id: &str, batch: Vec<Pending>) {
        let messages = batch.iter().map(|p| p.message.clone()).collect();
        match backend.append_messages(session_id, messages).await {
            Ok(stored) if stored.len() == batch.len() => {
                for (pending, message) in batch.into_iter().zip(stored) {
                    let _ = pending.reply.send(Ok(message));
                }
            }
            Ok(stored) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(StorageError::backend(format!(
                        "append_messages returned {} messages for a batch of more",
                        stored.len()
                    ))));
                }
            }
            Err(err) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(copy_error(&err)));
                }
            }
        }
    }
}
