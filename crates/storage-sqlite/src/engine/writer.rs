//! The write connection and who commits on it: the caller whose write finds nobody
//! committing (a *leader*), on its own thread where that thread may block and is not
//! running a tokio task, else the writer thread.
//!
//! A durable commit waits for a WAL sync, and handing each write to a thread of its own
//! costs two wake-ups more (that thread's, then the caller's): on a virtual machine about
//! a tenth of a millisecond, which a lone caller pays on every write. So a write is queued,
//! and if nobody leads, its caller leads: it takes what is queued (up to `max_batch`), runs
//! it in one transaction and commits, until its own write is committed; writes queued by
//! others meanwhile are taken by the next batch, as a writer thread would have taken them.
//! A caller that must not block (a current-thread runtime, or inside
//! [`storage_core::blocking::forbid`]) or runs in a task of tokio's multi-thread runtime
//! ([`could_lead_here`] says why) queues its write and, if nobody leads, wakes the
//! writer thread, which leads until the queue is empty; so does a leader that leaves writes
//! queued when its own is done. Exactly one leader holds the connection at a time.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rusqlite::Connection;
use storage_core::StorageError;
use tokio::sync::oneshot;

use super::{create_parent, may_block_here, open, yield_once, Db, DiskWatch, Stats};
use crate::config::SqliteConfig;
use crate::error::{classify, closed, Failure, SqlResult};

/// What the commit of a job's batch came to.
type Committed = Result<(), StorageError>;

/// A queued write: runs on the write connection, then learns whether its batch committed.
trait WriteJob: Send {
    /// Runs the job; returns whether it succeeded and how to deliver its result.
    fn run(self: Box<Self>, db: &Db<'_>) -> (bool, Box<dyn FnOnce(Committed) + Send>);
    /// Fails the job without running it.
    fn fail(self: Box<Self>, error: StorageError);
}

struct Typed<F, T> {
    job: F,
    reply: oneshot::Sender<SqlResult<T>>,
}

impl<F, T> WriteJob for Typed<F, T>
where
    F: FnOnce(&Db<'_>) -> SqlResult<T> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, db: &Db<'_>) -> (bool, Box<dyn FnOnce(Committed) + Send>) {
        let Typed { job, reply } = *self;
        // A panicking job fails alone; the leader goes on.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(db)))
            .unwrap_or_else(|_| {
                Err(Failure::Storage(StorageError::backend(
                    "a write operation panicked; it was rolled back",
                )))
            });
        let ok = result.is_ok();
        let deliver = move |committed: Committed| {
            let outcome = match (result, committed) {
                (Err(failure), _) => Err(failure),
                (Ok(value), Ok(())) => Ok(value),
                (Ok(_), Err(error)) => Err(Failure::Storage(error)),
            };
            // The caller may have gone away (a cancelled future); the write stands.
            let _ = reply.send(outcome);
        };
        (ok, Box::new(deliver))
    }

    fn fail(self: Box<Self>, error: StorageError) {
        let _ = self.reply.send(Err(Failure::Storage(error)));
    }
}

/// Whether this caller could commit on its own thread, once blocking is allowed there
/// ([`storage_core::blocking::allowed`]): where it may block, and not inside a task of
/// tokio's multi-thread runtime, whose `block_in_place` hands the worker's other tasks to
/// another thread (a wake-up like the ones leading saves). Measured: 32 tasks leading in
/// place stored up to a sixth fewer writes a second than the writer thread did for them,
/// while a caller outside the runtime's tasks (the Python package's sync calls, a
/// `Runtime::block_on`) saves the two wake-ups (docs/benchmarks.md, "SQLite").
fn could_lead_here() -> bool {
    may_block_here() && tokio::task::try_id().is_none()
}

/// The queue of writes, who leads, and the write connection.
pub(super) struct Writer {
    state: Mutex<Queue>,
    /// The writer thread waits here for writes nobody leads, and for the close.
    wake: Condvar,
    /// Only the leader touches it; opened by the first batch, so a file that cannot be
    /// opened fails that batch and is tried again by the next.
    conn: Mutex<Option<Connection>>,
    config: SqliteConfig,
    ns: Arc<str>,
    stats: Arc<Stats>,
    watch: Arc<DiskWatch>,
}

struct Queue {
    jobs: VecDeque<Box<dyn WriteJob>>,
    /// Whether someone (a caller or the writer thread) is taking batches now.
    leading: bool,
    /// Until the backend is closed; queued writes still commit after it.
    open: bool,
}

impl Writer {
    /// The writer and its thread.
    pub(super) fn start(
        config: &SqliteConfig,
        ns: Arc<str>,
        stats: Arc<Stats>,
        watch: Arc<DiskWatch>,
    ) -> Arc<Self> {
        let writer = Arc::new(Writer {
            state: Mutex::new(Queue {
                jobs: VecDeque::new(),
                leading: false,
                open: true,
            }),
            wake: Condvar::new(),
            conn: Mutex::new(None),
            config: config.clone(),
            ns,
            stats,
            watch,
        });
        let thread = writer.clone();
        std::thread::Builder::new()
            .name(format!("sqlite-writer-{}", config.namespace))
            .spawn(move || thread.thread_loop())
            .expect("spawning the SQLite writer thread");
        writer
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` inside the next group transaction, led by this caller if nobody leads
    /// and it may block; resolves after the commit.
    pub(super) async fn write<T, F>(&self, job: F) -> SqlResult<T>
    where
        F: FnOnce(&Db<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        if could_lead_here() && !storage_core::blocking::allowed() {
            // Polled by a caller that must not be blocked now: come back on the poll it
            // makes once it may be, and decide then.
            yield_once().await;
        }
        let (reply, answer) = oneshot::channel();
        // Nobody leads on a disk that stopped answering (see `stall`): the writer thread
        // does, and the caller's deadline ends its wait.
        let may_lead =
            could_lead_here() && storage_core::blocking::allowed() && !self.watch.stalled();
        let owed = {
            let mut queue = self.lock();
            if !queue.open {
                return Err(closed());
            }
            queue.jobs.push_back(Box::new(Typed { job, reply }));
            if queue.leading {
                None
            } else if may_lead {
                queue.leading = true;
                Some(queue.jobs.len())
            } else {
                self.wake.notify_one();
                None
            }
        };
        if let Some(owed) = owed {
            // Synchronous from here to the end of the lead: a cancelled caller cannot
            // leave the queue without a leader. Called directly, not through
            // `block_in_place`: outside a task that would only run it here anyway, or panic
            // where a current-thread runtime's `block_on` has a multi-thread runtime's
            // handle entered, which `may_block_here` cannot tell apart.
            self.lead(owed);
        }
        answer.await.map_err(|_| closed())?
    }

    /// Commits batches until `owed` writes have been taken (or the queue is empty), then
    /// gives the lead up, waking the writer thread if writes are left.
    fn lead(&self, mut owed: usize) {
        /// Gives the lead up also when a batch panics, so writes never wait for a leader
        /// that is gone.
        struct Leading<'w>(&'w Writer);
        impl Drop for Leading<'_> {
            fn drop(&mut self) {
                let mut queue = self.0.lock();
                queue.leading = false;
                if !queue.jobs.is_empty() || !queue.open {
                    self.0.wake.notify_one();
                }
            }
        }
        let _leading = Leading(self);
        while owed > 0 {
            let batch: Vec<_> = {
                let mut queue = self.lock();
                let take = queue.jobs.len().min(self.config.max_batch);
                queue.jobs.drain(..take).collect()
            };
            if batch.is_empty() {
                return;
            }
            owed = owed.saturating_sub(batch.len());
            self.commit(batch);
        }
    }

    /// The writer thread: leads while writes wait and nobody else leads; ends once the
    /// backend is closed and nothing is queued, closing the connection.
    fn thread_loop(&self) {
        loop {
            {
                let mut queue = self.lock();
                loop {
                    if !queue.leading && !queue.jobs.is_empty() {
                        queue.leading = true;
                        break;
                    }
                    if !queue.open && !queue.leading && queue.jobs.is_empty() {
                        drop(queue);
                        self.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
                        return;
                    }
                    queue = self.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
            }
            // A panic that escapes a batch (its jobs' callers then learn the backend as
            // closed) must not end the thread the writes of tokio tasks wait for.
            let led = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.lead(usize::MAX);
            }));
            if led.is_err() {
                tracing::error!("an SQLite write batch panicked; its writes failed");
            }
        }
    }

    /// Whether someone is taking batches now.
    #[cfg(test)]
    pub(super) fn leading(&self) -> bool {
        self.lock().leading
    }

    /// How many writes wait for a batch.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Stops taking writes: queued ones still commit, then the writer thread ends.
    pub(super) fn close(&self) {
        self.lock().open = false;
        self.wake.notify_one();
    }

    /// One batch on the write connection (opened first if need be).
    fn commit(&self, batch: Vec<Box<dyn WriteJob>>) {
        let _working = self.watch.begin();
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if conn.is_none() {
            match create_parent(&self.config.path).and_then(|()| open(&self.config, true)) {
                Ok(opened) => *conn = Some(opened),
                Err(err) => {
                    let error = classify(Failure::Driver(err));
                    batch.into_iter().for_each(|job| job.fail(error.clone()));
                    return;
                }
            }
        }
        if let Some(open) = conn.as_ref() {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats
                .writes
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            commit_batch(
                &Db {
                    conn: open,
                    ns: &self.ns,
                },
                batch,
            );
        }
        // A transaction the batch could not end (its ROLLBACK failed too) would make every
        // later BEGIN fail: closing the connection rolls it back, and the next batch opens
        // a fresh one.
        if conn.as_ref().is_some_and(|conn| !conn.is_autocommit()) {
            *conn = None;
        }
    }
}

/// Runs a batch in one transaction, each job in its own savepoint when there are several,
/// then delivers every result.
fn commit_batch(db: &Db<'_>, batch: Vec<Box<dyn WriteJob>>) {
    let exec = |sql: &str| db.conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    if let Err(err) = exec("BEGIN IMMEDIATE") {
        let error = classify(Failure::Driver(err));
        batch.into_iter().for_each(|job| job.fail(error.clone()));
        return;
    }
    let single = batch.len() == 1;
    let mut deliveries = Vec::with_capacity(batch.len());
    let mut any_ok = false;
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        if single {
            let (ok, deliver) = job.run(db);
            any_ok = ok;
            deliveries.push(deliver);
            continue;
        }
        if let Err(err) = exec("SAVEPOINT job") {
            job.fail(classify(Failure::Driver(err)));
            continue;
        }
        let (ok, deliver) = job.run(db);
        let ended = if ok {
            exec("RELEASE job")
        } else {
            exec("ROLLBACK TO job").and_then(|_| exec("RELEASE job"))
        };
        match ended {
            Ok(_) => {
                any_ok |= ok;
                deliveries.push(deliver);
            }
            // The savepoint could not be ended (SQLite rolls the whole transaction back
            // after some errors, such as a full disk): what the transaction holds is
            // unknown, so nothing of this batch is committed, and the jobs not yet run
            // fail without running.
            Err(err) => {
                let error = classify(Failure::Driver(err));
                deliver(Err(error.clone()));
                jobs.for_each(|job| job.fail(error.clone()));
                return rollback_all(db, deliveries);
            }
        }
    }
    if !any_ok {
        let _ = exec("ROLLBACK");
        deliveries.into_iter().for_each(|deliver| deliver(Ok(())));
        return;
    }
    match exec("COMMIT") {
        Ok(_) => deliveries.into_iter().for_each(|deliver| deliver(Ok(()))),
        Err(err) => {
            let error = classify(Failure::Driver(err));
            if !db.conn.is_autocommit() {
                let _ = exec("ROLLBACK");
            }
            deliveries
                .into_iter()
                .for_each(|deliver| deliver(Err(error.clone())));
        }
    }
}

fn rollback_all(db: &Db<'_>, deliveries: Vec<Box<dyn FnOnce(Committed) + Send>>) {
    let _ = db.conn.execute_batch("ROLLBACK");
    let error = StorageError::backend("the group transaction was rolled back");
    deliveries
        .into_iter()
        .for_each(|deliver| deliver(Err(error.clone())));
}
