//! The engine's reads and writes: where they run, what a cancelled read does, and how
//! writes queued behind a leader are committed.
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use super::Engine;
use crate::SqliteConfig;

/// A read whose caller was cancelled while it waited in the queue is not run. (On a
/// current-thread runtime, where every read goes through the queue.)
#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_read_is_skipped() {
    let (_dir, engine) = shared_engine(1);
    // The one reader thread is held by a read until the barrier opens.
    let gate = Arc::new(Barrier::new(2));
    let holding = hold_a_reader(&engine, &gate);
    let ran = Arc::new(AtomicBool::new(false));
    let cancelled = {
        let (engine, ran) = (engine.clone(), ran.clone());
        tokio::spawn(async move {
            engine
                .read(move |_| {
                    ran.store(true, Ordering::SeqCst);
                    Ok(())
                })
                .await
        })
    };
    // Queued behind the held read, then cancelled.
    while engine.stats.reads.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    tokio::task::spawn_blocking(move || gate.wait())
        .await
        .unwrap();
    holding.await.unwrap().unwrap();
    // A read queued after the cancelled one is answered, so the reader passed it.
    engine.read(|_| Ok(())).await.unwrap();
    assert!(!ran.load(Ordering::SeqCst), "the cancelled read ran");
}

/// The name of the thread this runs on.
fn this_thread() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// Polls `future` to its end on this thread, outside any runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// The name of the thread a read ran on.
async fn reader_thread(engine: &Engine) -> String {
    engine.read(|_| Ok(this_thread())).await.unwrap()
}

fn engine(readers: usize) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        readers,
        ..SqliteConfig::new(dir.path().join("reads.db"))
    };
    (dir, Engine::start(&config))
}

fn shared_engine(readers: usize) -> (tempfile::TempDir, Arc<Engine>) {
    let (dir, engine) = engine(readers);
    (dir, Arc::new(engine))
}

/// A read that holds its connection until `gate` opens; answers the thread it ran on.
fn hold_a_reader(
    engine: &Arc<Engine>,
    gate: &Arc<Barrier>,
) -> tokio::task::JoinHandle<crate::error::SqlResult<String>> {
    let (engine, gate) = (engine.clone(), gate.clone());
    tokio::spawn(async move {
        engine
            .read(move |_| {
                gate.wait();
                Ok(this_thread())
            })
            .await
    })
}

/// On a multi-thread runtime a read runs on the caller's thread, and the runtime keeps
/// running other tasks while it does: a read that waits for another task finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_runs_in_place_without_stalling_the_runtime() {
    let (_dir, engine) = engine(2);
    let name = reader_thread(&engine).await;
    assert!(!name.starts_with("sqlite-reader"), "ran on {name}");
    let (tell, told) = std::sync::mpsc::channel::<()>();
    let waiting = engine.read(move |_| {
        told.recv_timeout(std::time::Duration::from_secs(10))
            .map_err(|_| crate::error::closed())
    });
    let other = tokio::spawn(async move { tell.send(()).unwrap() });
    waiting
        .await
        .expect("the other task ran while the read blocked");
    other.await.unwrap();
}

/// A current-thread runtime is never blocked: its reads go to the reader threads.
#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_reads_on_reader_threads() {
    let (_dir, engine) = engine(1);
    assert!(reader_thread(&engine).await.starts_with("sqlite-reader"));
}

/// A thread outside any runtime reads in place; polled inside `forbid`, a read does not
/// run, and runs in place at the next poll outside it.
#[test]
fn a_forbidden_poll_leaves_the_read_to_the_next_one() {
    let (_dir, engine) = engine(1);
    let here = this_thread();
    assert_eq!(block_on(reader_thread(&engine)), here);
    deferred_by_a_forbidden_poll(|ran| engine.read(noting(ran)));
}

/// A job that notes it ran and answers the thread it ran on.
fn noting(
    ran: Arc<AtomicBool>,
) -> impl FnOnce(&super::Db<'_>) -> crate::error::SqlResult<String> + Send + 'static {
    move |_| {
        ran.store(true, Ordering::SeqCst);
        Ok(this_thread())
    }
}

/// Polls the operation `start` makes once inside `forbid`, where it must not run, then to
/// its end outside it, where it must run on this thread.
fn deferred_by_a_forbidden_poll<F>(start: impl FnOnce(Arc<AtomicBool>) -> F)
where
    F: Future<Output = crate::error::SqlResult<String>>,
{
    let here = this_thread();
    let ran = Arc::new(AtomicBool::new(false));
    let mut operation = Box::pin(start(ran.clone()));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let first = storage_core::blocking::forbid(|| operation.as_mut().poll(&mut cx));
    assert!(first.is_pending());
    assert!(!ran.load(Ordering::SeqCst), "it ran while forbidden");
    assert_eq!(block_on(operation).unwrap(), here);
}

/// Reads in place use at most `readers` connections: with the one busy, another read
/// goes to a reader thread; a connection whose read failed or panicked serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_in_place_connections_send_reads_to_the_reader_threads() {
    let (_dir, engine) = shared_engine(1);
    let gate = Arc::new(Barrier::new(2));
    let holding = hold_a_reader(&engine, &gate);
    while engine.readers.in_place.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    assert!(reader_thread(&engine).await.starts_with("sqlite-reader"));
    gate.wait();
    assert!(!holding.await.unwrap().unwrap().starts_with("sqlite-reader"));
    let panicked = engine.read(|_| -> crate::error::SqlResult<()> { panic!("a read") });
    assert!(panicked.await.is_err());
    assert!(!reader_thread(&engine).await.starts_with("sqlite-reader"));
    assert_eq!(engine.readers.in_place.load(Ordering::SeqCst), 1);
    engine.close();
    assert!(
        engine.read(|_| Ok(())).await.is_err(),
        "reads fail once closed"
    );
    assert_eq!(engine.readers.in_place.load(Ordering::SeqCst), 0);
}

/// The name of the thread a write's job ran on.
async fn writer_thread(engine: &Engine) -> String {
    engine.write(|_| Ok(this_thread())).await.unwrap()
}

/// A lone write commits on its caller's thread where that thread may block and runs no
/// tokio task (a multi-thread runtime's `block_on`, or a thread outside any runtime); a
/// task's write, and a current-thread runtime's, go to the writer thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_write_commits_on_its_callers_thread() {
    let (_dir, engine) = shared_engine(1);
    let name = writer_thread(&engine).await;
    assert!(!name.starts_with("sqlite-writer"), "ran on {name}");
    let in_a_task = {
        let engine = engine.clone();
        tokio::spawn(async move { writer_thread(&engine).await })
    };
    let name = in_a_task.await.unwrap();
    assert!(
        name.starts_with("sqlite-writer"),
        "a task's write ran on {name}"
    );
    // The writer thread answers before it gives the lead up.
    while engine.writer.leading() {
        tokio::task::yield_now().await;
    }
    let outside = std::thread::spawn(move || {
        let here = this_thread();
        (block_on(writer_thread(&engine)), here)
    });
    let (ran_on, here) = outside.join().unwrap();
    assert_eq!(ran_on, here);
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_writes_on_the_writer_thread() {
    let (_dir, engine) = engine(1);
    assert!(writer_thread(&engine).await.starts_with("sqlite-writer"));
}

/// Polled inside `forbid`, a write is not run (nor queued), and is led in place at the
/// next poll outside it.
#[test]
fn a_forbidden_poll_leaves_the_write_to_the_next_one() {
    let (_dir, engine) = engine(1);
    deferred_by_a_forbidden_poll(|ran| engine.write(noting(ran)));
}

/// Writes queued while a leader commits are all answered, after one commit for the lot:
/// the leader gives the lead up once its own write is committed, and the writer thread
/// commits the ten queued behind it in one batch. Writes after the close fail as closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_behind_a_leader_share_the_next_commit() {
    let (_dir, engine) = shared_engine(1);
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (running, started) = std::sync::mpsc::channel::<()>();
    // A thread outside the runtime's tasks leads its own write, which waits to be released.
    let leader = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            block_on(engine.write(move |_| {
                running.send(()).map_err(|_| crate::error::closed())?;
                released
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .map_err(|_| crate::error::closed())?;
                Ok(this_thread())
            }))
        })
    };
    tokio::task::spawn_blocking(move || started.recv())
        .await
        .unwrap()
        .expect("the leader's write runs");
    let queued: Vec<_> = (0..10)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { writer_thread(&engine).await })
        })
        .collect();
    while engine.writer.queued() < 10 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    let led = leader.join().unwrap().unwrap();
    assert!(!led.starts_with("sqlite-writer"), "the leader ran on {led}");
    for write in queued {
        let name = write.await.unwrap();
        assert!(
            name.starts_with("sqlite-writer"),
            "a queued write ran on {name}"
        );
    }
    // The leader's batch of its own write, then the writer thread's of the ten.
    assert_eq!(engine.stats.commits.load(Ordering::SeqCst), 2);
    assert_eq!(engine.stats.writes.load(Ordering::SeqCst), 11);
    engine.close();
    assert!(
        engine.write(|_| Ok(())).await.is_err(),
        "writes fail once closed"
    );
}

/// Inside a current-thread runtime's `block_on` with a multi-thread runtime's handle entered
/// (the flavour the engine sees), a read and a write run without panicking (tokio refuses
/// `block_in_place` there), and the engine goes on serving: a task's write, which waits for
/// the writer thread, is answered, and the reader connection is back.
#[test]
fn a_multi_thread_handle_entered_in_a_current_thread_runtime_neither_panics_nor_wedges() {
    let (_dir, engine) = shared_engine(1);
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    current.block_on(async {
        let _entered = multi.handle().enter();
        writer_thread(&engine).await;
        reader_thread(&engine).await;
    });
    multi.block_on(async {
        let task = {
            let engine = engine.clone();
            tokio::spawn(async move { writer_thread(&engine).await })
        };
        let answered = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        assert!(
            answered.is_ok(),
            "a task's write waited for a lead taken for good"
        );
        assert_eq!(engine.readers.in_place.load(Ordering::SeqCst), 1);
    });
}
