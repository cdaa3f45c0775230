//! The connections: one write connection that commits queued writes in groups, and reader
//! connections that run reads on the caller's thread when it may block, or on reader threads.
//!
//! rusqlite is blocking. Writes are queued for the one write connection; whoever commits
//! ([`writer`]: the caller that found nobody committing, on its own thread where it may
//! block, else the writer thread) takes every job queued at that moment (up to
//! `max_batch`), runs them in one `BEGIN IMMEDIATE` transaction, each inside its own
//! `SAVEPOINT` so a failing job rolls back alone, and commits once. Under many concurrent
//! callers many writes share one fsync; a lone caller's write is one transaction of its own
//! (no savepoint, no waiting for company), committed on its own thread. A job's result
//! reaches its caller only after the commit succeeded, so an acknowledged write is durable
//! (with `synchronous = full`). Other processes on the same file are serialized by SQLite's
//! write lock, which `BEGIN IMMEDIATE` takes up front and waits for up to the busy timeout.
//!
//! Reads run on reader connections in WAL mode, which never wait for the writer and run
//! concurrently with each other; a read that needs more than one statement runs them in
//! one read transaction ([`Db::snapshot`]) so it sees one state of the database. A read of a
//! checkpoint takes tens of microseconds, and handing it to another thread costs two
//! wake-ups (that thread's, then the caller's) of about as much again on a virtual machine.
//! So a read runs on the thread that polls it, on an idle reader connection, wherever that
//! thread may block: in a task of a multi-thread tokio runtime through `block_in_place`
//! (the runtime moves the worker's other tasks to another thread meanwhile), or directly
//! on a thread outside the runtime's tasks (its `block_on`, or no runtime). A
//! current-thread runtime is never blocked, and neither is a thread inside
//! [`storage_core::blocking::forbid`]: their reads, and reads that find every reader
//! connection busy, go to a queue that reader threads, each owning a connection, take
//! reads from. A read that runs in place cannot be cut short by the caller's deadline
//! while SQLite works; the busy timeout bounds how long it waits for a lock, and once some
//! work has been held longer than [`stall::STALL`] (a disk that stopped answering), no more
//! work starts in place.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{CachedStatement, Connection, OpenFlags};
use storage_core::StorageError;
use tokio::sync::oneshot;

use crate::config::SqliteConfig;
use crate::error::{closed, Failure, SqlResult};

/// A connection and the namespace whose tables statements name.
pub(crate) struct Db<'c> {
    pub(crate) conn: &'c Connection,
    ns: &'c str,
}

impl<'c> Db<'c> {
    /// Statements of namespace `ns` on `conn`, for tests that run statements directly.
    #[cfg(test)]
    pub(crate) fn new(conn: &'c Connection, ns: &'c str) -> Self {
        Db { conn, ns }
    }

    /// The cached prepared statement for `template`, with `{ns}` replaced by the namespace.
    /// Statement texts are constants of this crate: values always go in as parameters.
    pub(crate) fn prepare(&self, template: &str) -> rusqlite::Result<CachedStatement<'_>> {
        self.conn.prepare_cached(&template.replace("{ns}", self.ns))
    }

    /// Runs `read` in one read transaction, so several statements see one snapshot.
    pub(crate) fn snapshot<T>(&self, read: impl FnOnce(&Self) -> SqlResult<T>) -> SqlResult<T> {
        self.conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
        let result = read(self);
        // Ending a read transaction cannot lose anything; an error here is reported only
        // if the read itself succeeded.
        let ended = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]));
        if ended.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let value = result?;
        ended?;
        Ok(value)
    }
}

/// Opens a connection with the settings every connection of the backend has.
fn open(config: &SqliteConfig, writer: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(&config.path, flags)?;
    conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms))?;
    conn.set_prepared_statement_cache_capacity(128);
    // 8 MiB of page cache per connection (SQLite's default is 2 MiB): a thread's recent
    // checkpoints and their values stay in memory between reads.
    conn.pragma_update(None, "cache_size", -8192)?;
    if writer {
        // WAL is a property of the file: set once, every connection then uses it.
        let mode = switch_to_wal(&conn, config)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!(
                    "cannot switch {} to WAL mode",
                    config.path.display()
                )),
            ));
        }
    } else {
        conn.pragma_update(None, "query_only", true)?;
    }
    conn.pragma_update(None, "synchronous", config.synchronous.as_str())?;
    Ok(conn)
}

/// Switches the file to WAL, retrying while other connections hold it: the switch takes
/// an exclusive lock without calling the busy handler, so processes or namespaces opening
/// one new file at once would otherwise fail at once with "database is locked".
fn switch_to_wal(conn: &Connection, config: &SqliteConfig) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_millis(config.busy_timeout_ms);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(err, _))
                if matches!(
                    err.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            result => return result,
        }
    }
}

/// Creates the database's directory if it is missing.
fn create_parent(path: &std::path::Path) -> rusqlite::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .map_err(|err| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {err}", dir.display())),
                )
            }),
        _ => Ok(()),
    }
}

/// Counters the backend reports in its metrics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) commits: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) reads: AtomicU64,
}

/// A queued read: runs on a reader thread's connection, or learns why there is none.
type ReadJob = Box<dyn FnOnce(SqlResult<&Db<'_>>) + Send>;

/// The writer (its queue, its leader and its thread) and the reader threads' queue.
pub(crate) struct Engine {
    writer: Arc<writer::Writer>,
    readers: Arc<Readers>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) path: PathBuf,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.path)
            .field("closed", &!self.readers.lock().open)
            .finish()
    }
}

/// What reads share: the queue the reader threads take reads from (open until the backend
/// is closed), and the idle connections of reads that run on their caller's thread.
///
/// A lock and a condition variable rather than a channel: a channel's one receiver behind
/// a lock woke two threads per read (the one that took it, then the next waiter for the
/// lock), which on a loaded machine showed as a slower one-caller read.
struct Readers {
    queue: Mutex<ReadQueue>,
    ready: Condvar,
    /// Connections of reads run in place, idle; at most `config.readers` exist at once
    /// (`in_place`), so a burst of callers cannot open a connection each.
    idle: Mutex<Vec<Connection>>,
    in_place: AtomicUsize,
    /// Shared with the writer: whether work may still start on its caller's thread.
    watch: Arc<DiskWatch>,
    config: SqliteConfig,
    ns: Arc<str>,
}

impl Engine {
    /// Starts the writer thread. Connections are opened on first use, so building a
    /// backend does no I/O and a file that cannot be opened fails each operation (and is
    /// tried again by the next).
    pub(crate) fn start(config: &SqliteConfig) -> Self {
        let stats = Arc::new(Stats::default());
        let ns: Arc<str> = Arc::from(config.namespace.as_str());
        // Reads in place, reader threads, and the write connection.
        let watch = Arc::new(DiskWatch::new(2 * config.readers + 1, &config.path));
        let writer = writer::Writer::start(config, ns.clone(), stats.clone(), watch.clone());
        let readers = Arc::new(Readers {
            queue: Mutex::new(ReadQueue {
                jobs: VecDeque::new(),
                open: true,
            }),
            ready: Condvar::new(),
            idle: Mutex::new(Vec::new()),
            in_place: AtomicUsize::new(0),
            watch,
            config: config.clone(),
            ns,
        });
        for n in 0..config.readers {
            let readers = readers.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{}-{n}", config.namespace))
                .spawn(move || reader_loop(&readers))
                .expect("spawning an SQLite reader thread");
        }
        Engine {
            writer,
            readers,
            stats,
            path: config.path.clone(),
        }
    }

    /// Runs `job` on the write connection inside the next group transaction (see
    /// [`writer`]); resolves after the commit.
    pub(crate) async fn write<T, F>(&self, job: F) -> SqlResult<T>
    where
        F: FnOnce(&Db<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.write(job).await
    }

    /// Runs `job` on a reader connection: on this thread if it may block and a connection
    /// is free, else on a reader thread.
    pub(crate) async fn read<T, F>(&self, job: F) -> SqlResult<T>
    where
        F: FnOnce(&Db<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        // Not in place on a disk that stopped answering (see `stall`): the caller's
        // deadline then ends its wait on the queue.
        if may_block_here() && !self.readers.watch.stalled() {
            if !storage_core::blocking::allowed() {
                // Polled by a caller that must not be blocked now: come back on the poll
                // it makes once it may be, and decide again then.
                yield_once().await;
            }
            if storage_core::blocking::allowed() {
                if let Some(conn) = self.readers.take_idle()? {
                    self.stats.reads.fetch_add(1, Ordering::Relaxed);
                    let read = || {
                        let working = self.readers.watch.begin();
                        let result = guarded(job, &self.readers.db(&conn));
                        drop(working);
                        self.readers.put_back(conn);
                        result
                    };
                    // Only a task needs `block_in_place` (its worker's other tasks move to
                    // another thread); elsewhere it would only run the read here, or panic
                    // where a current-thread runtime's `block_on` has a multi-thread
                    // runtime's handle entered, losing the connection's count.
                    return if tokio::task::try_id().is_some() {
                        tokio::task::block_in_place(read)
                    } else {
                        read()
                    };
                }
            }
        }
        self.queue_read(job).await
    }

    /// Runs `job` on a reader thread's connection.
    async fn queue_read<T, F>(&self, job: F) -> SqlResult<T>
    where
        F: FnOnce(&Db<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let run: ReadJob = Box::new(move |db: SqlResult<&Db<'_>>| {
            // A caller that went away (a cancelled future, a timeout) has nobody to read
            // for: under overload with timeouts and retries, the queue would otherwise fill
            // with work nobody waits for.
            if reply.is_closed() {
                return;
            }
            let result = db.and_then(|db| guarded(job, db));
            // The caller may have gone away (a cancelled future).
            let _ = reply.send(result);
        });
        {
            let mut queue = self.readers.lock();
            if !queue.open {
                return Err(closed());
            }
            queue.jobs.push_back(run);
        }
        self.readers.ready.notify_one();
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        answer.await.map_err(|_| closed())?
    }

    /// Stops taking operations: queued writes still commit, then the writer thread ends;
    /// queued reads fail as closed, then the reader threads end and close their connections.
    pub(crate) fn close(&self) {
        self.writer.close();
        // Each reader thread ends (closing its connection) once the queue is empty; reads
        // still queued fail as closed.
        self.readers.lock().open = false;
        self.readers.ready.notify_all();
        // Idle connections of reads run in place close now; busy ones when their read ends.
        let idle = std::mem::take(&mut *self.readers.idle());
        self.readers
            .in_place
            .fetch_sub(idle.len(), Ordering::Relaxed);
    }
}

/// Whether the thread polling a read may block on it: a multi-thread runtime's thread
/// (through `block_in_place`), or a thread outside any runtime; never a current-thread
/// runtime, which has no other thread to run its tasks meanwhile.
fn may_block_here() -> bool {
    tokio::runtime::Handle::try_current().map_or(true, |handle| {
        handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    })
}

/// Pending once (having asked to be polled again), then ready.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// Runs a read; a panicking read fails alone, and its connection lives on.
fn guarded<T>(job: impl FnOnce(&Db<'_>) -> SqlResult<T>, db: &Db<'_>) -> SqlResult<T> {
    catch_unwind(AssertUnwindSafe(|| job(db))).unwrap_or_else(|_| {
        Err(Failure::Storage(StorageError::backend(
            "a read operation panicked",
        )))
    })
}

/// Ends a transaction a read left open, so that it is not handed to the next read;
/// returns whether the connection can serve another read (a connection that cannot end
/// it is closed, and a later read opens another).
fn ended_cleanly(conn: &Connection) -> bool {
    conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok()
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads waiting for a reader thread; `open` until the backend is closed.
struct ReadQueue {
    jobs: VecDeque<ReadJob>,
    open: bool,
}

impl Readers {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new reader connection (its directory made first, if missing).
    fn connect(&self) -> rusqlite::Result<Connection> {
        create_parent(&self.config.path).and_then(|()| open(&self.config, false))
    }

    fn db<'c>(&'c self, conn: &'c Connection) -> Db<'c> {
        Db { conn, ns: &self.ns }
    }

    /// An idle connection for a read run in place, opened if fewer than `config.readers`
    /// exist; `None` when all are busy (the read then goes to the queue). Fails as closed
    /// once the backend is, and with the driver's error when a connection cannot be opened.
    fn take_idle(&self) -> SqlResult<Option<Connection>> {
        if !self.lock().open {
            return Err(closed());
        }
        if let Some(conn) = self.idle().pop() {
            return Ok(Some(conn));
        }
        let opened = self.in_place.fetch_add(1, Ordering::Relaxed);
        if opened >= self.config.readers {
            self.in_place.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        // Opening touches the disk too (the shared-memory file): watched like a read.
        let opening = self.watch.begin();
        let opened = self.connect();
        drop(opening);
        match opened {
            Ok(conn) => Ok(Some(conn)),
            Err(err) => {
                self.in_place.fetch_sub(1, Ordering::Relaxed);
                Err(Failure::Driver(err))
            }
        }
    }

    /// Returns a connection after its read, unless the backend closed meanwhile or the
    /// connection cannot be used again.
    fn put_back(&self, conn: Connection) {
        if ended_cleanly(&conn) {
            // Checked under the idle lock, which `close` takes after marking the queue
            // closed: a connection put back after that is never left behind in `idle`.
            let mut idle = self.idle();
            if self.lock().open {
                idle.push(conn);
                return;
            }
        }
        self.in_place.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reader thread: takes reads from the queue until every sender is gone. Its connection
/// is opened by its first read, so a file that cannot be opened fails that read and is
/// tried again by the next.
fn reader_loop(readers: &Readers) {
    let mut conn: Option<Connection> = None;
    loop {
        let (job, taking) = {
            let mut queue = readers.lock();
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break (job, queue.open);
                }
                if !queue.open {
                    return;
                }
                queue = readers.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        if !taking {
            conn = None;
            job(Err(closed()));
            continue;
        }
        if conn.is_none() {
            let opening = readers.watch.begin();
            let opened = readers.connect();
            drop(opening);
            match opened {
                Ok(opened) => conn = Some(opened),
                Err(err) => {
                    job(Err(Failure::Driver(err)));
                    continue;
                }
            }
        }
        if let Some(open) = &conn {
            let _working = readers.watch.begin();
            job(Ok(&readers.db(open)));
            if !ended_cleanly(open) {
                conn = None;
            }
        }
    }
}

mod stall;
mod writer;

use stall::DiskWatch;

#[cfg(test)]
mod tests;
