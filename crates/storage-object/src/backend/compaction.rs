//! Compaction and rewind of conversations.
//!
//! A compaction cannot put its summary in the slot at `up_to`: slots are immutable and that
//! one exists. It
//! 1. reads the head and the live messages up to `up_to`, and builds the summary from them
//!    with `storage_core::compaction::summarize`;
//! 2. writes, under a new compaction id, the summary message
//!    (`compactions/<sid>/<up_to>/<id>/summary`) and, when it keeps them, the replaced
//!    messages (`.../<id>/replaced`, one object);
//! 3. commits with one compare-and-set of the head, which raises the floor to `up_to - 1`
//!    and names the summary (with its range and client id) and the kept object;
//! 4. deletes the objects the new head no longer names (earlier summaries it replaced, and
//!    kept messages it dropped).
//!
//! Readers take the message at a number the head names as a summary from its object, so
//! they see the prefix or the summary, never both. A compaction that loses its race deletes
//! what it wrote and starts over. What a crash leaves (objects written before a commit that
//! never came, or no longer named by a commit whose deletes never ran) is never read, and
//! `collect_garbage` removes it.
//!
//! A rewind is one compare-and-set of the head too: the numbers above its bound become a
//! gap, and the summaries among them are forgotten with what they kept.

use std::collections::BTreeMap;

use object_store::path::Path;
use serde::{Deserialize, Serialize};
use storage_core::compaction::summarize;
use storage_core::wire::{self, WireRecord};
use storage_core::{time, ErrorKind, Message, NewMessage, Result, StorageError};

use super::conversation::too_many_writers;
use super::conversation_head::{checked_id, Head, SummaryEntry, Unnamed};
use super::{ObjectBackend, CAS_ATTEMPTS};
use crate::keys::{parse_number, parts_after, take_id};
use crate::store::backoff;

/// The object name of a compaction's summary message.
const SUMMARY: &str = "summary";
/// The object name of the messages a compaction replaced and kept.
const REPLACED: &str = "replaced";

/// The messages a compaction replaced and kept, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Replaced {
    messages: Vec<Message>,
}

impl WireRecord for Replaced {
    const KIND: &'static str = "replaced_messages";
}

impl ObjectBackend {
    /// `compact_conversation`, validated.
    pub(super) async fn compact(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> Result<Message> {
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt.min(4)).await;
            let (mut head, token) = self.sync_head(session_id).await?;
            if let Some(stored) = self
                .stored_for_client_id(session_id, &head, &summary)
                .await?
            {
                return Ok(stored);
            }
            let sequences = head.live_window(1, up_to, usize::MAX, true);
            let Some(replaced) = self.read_live(session_id, &head, &sequences).await? else {
                continue;
            };
            let message = summarize(
                session_id,
                up_to,
                &replaced,
                summary.clone(),
                keep_replaced,
                time::now(),
            )?;
            let from = message
                .compacted
                .map(|compacted| compacted.from)
                .ok_or_else(|| StorageError::backend("a summary came without its range"))?;
            let id = uuid::Uuid::now_v7().simple().to_string();
            let mut written = Vec::new();
            if keep_replaced {
                let path = self
                    .keys()
                    .compaction_object(session_id, up_to, &id, REPLACED);
                let record = Replaced { messages: replaced };
                self.objects().put(&path, wire::encode(&record)?).await?;
                written.push(path);
            }
            let path = self
                .keys()
                .compaction_object(session_id, up_to, &id, SUMMARY);
            self.objects().put(&path, wire::encode(&message)?).await?;
            written.push(path);
            let entry = SummaryEntry {
                from,
                id: Some(id.clone()),
                client_id: message.client_id.clone(),
            };
            let unnamed = head.compact(up_to, entry, keep_replaced.then_some(id));
            if self.write_head(session_id, token.as_ref(), &head).await? {
                self.delete_unnamed(session_id, unnamed).await;
                return Ok(message);
            }
            // Lost the race: nothing will ever name what this attempt wrote.
            self.delete_quietly(written).await;
        }
        Err(too_many_writers())
    }

    /// `get_replaced_messages`, validated.
    pub(super) async fn replaced_messages(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> Result<Vec<Message>> {
        let cell = self.keys().conversation_head(session_id);
        let Some(head) = self.read_cell::<Head>(&cell).await? else {
            return Ok(Vec::new());
        };
        let Some(id) = head.kept.get(&summary_sequence) else {
            return Ok(Vec::new());
        };
        let path =
            self.keys()
                .compaction_object(session_id, summary_sequence, checked_id(id)?, REPLACED);
        // Gone: dropped since the head was read, so empty is the answer of now.
        match self.objects().get(&path).await? {
            Some(bytes) => Ok(wire::decode::<Replaced>(&bytes)?.messages),
            None => Ok(Vec::new()),
        }
    }

    /// `rewind_conversation`, validated.
    pub(super) async fn rewind(&self, session_id: &str, sequence: u64) -> Result<u64> {
        let Some(from) = sequence.checked_add(1) else {
            return Ok(0);
        };
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt.min(4)).await;
            let (mut head, token) = self.sync_head(session_id).await?;
            let last = head.last;
            let removed = head.live_in(from, last);
            if removed == 0 {
                return Ok(0);
            }
            let unnamed = head.remove(from, last);
            if self.write_head(session_id, token.as_ref(), &head).await? {
                self.delete_unnamed(session_id, unnamed).await;
                return Ok(removed);
            }
        }
        Err(too_many_writers())
    }

    /// The summary message the compaction `id` stored at `sequence`; `None` once deleted.
    pub(super) async fn read_summary(
        &self,
        session_id: &str,
        sequence: u64,
        id: &str,
    ) -> Result<Option<Message>> {
        let path = self
            .keys()
            .compaction_object(session_id, sequence, checked_id(id)?, SUMMARY);
        self.objects()
            .get(&path)
            .await?
            .map(|bytes| wire::decode::<Message>(&bytes))
            .transpose()
    }

    /// Deletes the objects a committed head change stopped naming.
    pub(super) async fn delete_unnamed(&self, session_id: &str, unnamed: Vec<Unnamed>) {
        let mut paths = Vec::with_capacity(unnamed.len());
        for object in unnamed {
            let (sequence, id, kind) = match &object {
                Unnamed::Summary(sequence, id) => (*sequence, id, SUMMARY),
                Unnamed::Kept(sequence, id) => (*sequence, id, REPLACED),
            };
            if let Ok(id) = checked_id(id) {
                paths.push(
                    self.keys()
                        .compaction_object(session_id, sequence, id, kind),
                );
            }
        }
        self.delete_quietly(paths).await;
    }

    /// Deletes objects nothing names; a failure is only logged, since the change that
    /// unnamed them is committed, readers never see them, and `collect_garbage` removes
    /// them later.
    async fn delete_quietly(&self, paths: Vec<Path>) {
        if paths.is_empty() {
            return;
        }
        if let Err(err) = self.objects().delete_many(paths).await {
            tracing::warn!(
                backend = "object",
                error = %err,
                "could not delete compaction objects no head names; collect_garbage will"
            );
        }
    }

    /// Removes the compaction objects older than `cutoff` (ms since the epoch) that their
    /// conversation's head does not name, judged by the head read after the listing (a
    /// compaction writes its objects before it commits). Returns how many it removed and
    /// how many younger ones it did not examine.
    pub(super) async fn collect_compactions(&self, cutoff: i64) -> Result<(u64, u64)> {
        let prefix = self.keys().compactions();
        let mut old: BTreeMap<String, Vec<(Path, u64, String, String)>> = BTreeMap::new();
        let mut young = 0;
        for meta in self.objects().list_meta(&prefix).await? {
            let parts = parts_after(&meta.location, &prefix);
            let Some((session_id, used)) = take_id(&parts) else {
                continue;
            };
            let [sequence, id, kind] = &parts[used..] else {
                continue;
            };
            let Some(sequence) = parse_number(sequence) else {
                continue;
            };
            if super::gc::still_young(meta.last_modified.timestamp_millis(), cutoff) {
                young += 1;
                continue;
            }
            old.entry(session_id).or_default().push((
                meta.location,
                sequence,
                id.clone(),
                kind.clone(),
            ));
        }
        let mut removed = 0;
        for (session_id, objects) in old {
            let cell = self.keys().conversation_head(&session_id);
            let head = match self.read_cell::<Head>(&cell).await {
                Ok(head) => head.unwrap_or_default(),
                // An unreadable head says nothing about its objects: leave them.
                Err(err) if err.kind() == ErrorKind::Serialization => continue,
                Err(err) => return Err(err),
            };
            let unnamed: Vec<Path> = objects
                .into_iter()
                .filter(|(_, sequence, id, kind)| match kind.as_str() {
                    SUMMARY => head.stored_summary(*sequence) != Some(id.as_str()),
                    REPLACED => head.kept.get(sequence) != Some(id),
                    _ => false,
                })
                .map(|(path, ..)| path)
                .collect();
            removed += unnamed.len() as u64;
            self.objects().delete_many(unnamed).await?;
        }
        Ok((removed, young))
    }
}
