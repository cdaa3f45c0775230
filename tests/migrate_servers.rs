//! Migration between real servers (throwaway Redis and PostgreSQL started by the testkit,
//! or the URLs in `STORAGE_TEST_REDIS_URL` / `STORAGE_TEST_POSTGRES_URL`): a run cancelled
//! halfway leaves a partial copy; running again completes it without duplicates and the
//! verification passes.

mod migrate_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use migrate_support::{populate, Sizes};
use storage::migrate::{config_for_url, migrate, migrate_urls, verify, MigrateOptions, Progress};
use storage_core::StorageBackend;
use storage_testkit::servers::{postgres::postgres_url, redis::redis_url};
use tokio::sync::Notify;

/// Wakes the test once `threshold` sessions are copied.
struct CancelAfter {
    sessions: AtomicU64,
    threshold: u64,
    reached: Arc<Notify>,
    in_sessions: std::sync::atomic::AtomicBool,
}

impl Progress for CancelAfter {
    fn phase(&self, name: &str) {
        self.in_sessions.store(name == "sessions", Ordering::SeqCst);
    }

    fn advance(&self, items: u64) {
        if self.in_sessions.load(Ordering::SeqCst)
            && self.sessions.fetch_add(items, Ordering::SeqCst) + items >= self.threshold
        {
            self.reached.notify_one();
        }
    }
}

fn with_namespace(url: &str, namespace: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}namespace={namespace}")
}

fn namespace() -> String {
    format!("m_{:016x}", fastrand::u64(..))
}

async fn open(url: &str) -> Arc<dyn StorageBackend> {
    let (backend, config) = config_for_url(url).unwrap();
    let built = storage::factory::build_backend(backend, &config, None).unwrap();
    built.initialize().await.unwrap();
    built
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_to_postgres_cancelled_halfway_then_resumed() {
    let from = with_namespace(&redis_url(), &namespace());
    let to = with_namespace(&postgres_url(), &namespace());
    let source = open(&from).await;
    let target = open(&to).await;
    let sizes = Sizes {
        sessions: 400,
        messages: 20,
        threads: 60,
        artifacts: 60,
    };
    populate(source.as_ref(), sizes).await;
    let options = MigrateOptions {
        batch_size: 50,
        concurrency: 8,
        verify: true,
    };

    let reached = Arc::new(Notify::new());
    let progress = CancelAfter {
        sessions: AtomicU64::new(0),
        threshold: 150,
        reached: reached.clone(),
        in_sessions: Default::default(),
    };
    tokio::select! {
        finished = migrate(source.as_ref(), target.as_ref(), &options, &progress) => {
            panic!("the migration finished before it could be interrupted: {finished:?}")
        }
        () = reached.notified() => {}
    }
    let partial = verify(
        source.as_ref(),
        target.as_ref(),
        &options,
        &storage::migrate::NoProgress,
    )
    .await
    .unwrap();
    assert!(!partial.is_clean());
    let copied = partial.counts["sessions"].target;
    assert!((150..400).contains(&copied), "{copied} sessions copied");

    let report = migrate_urls(&from, &to, &options, &storage::migrate::NoProgress)
        .await
        .unwrap();
    let verification = report.verification.unwrap();
    assert!(verification.is_clean(), "{verification:?}");
    for (kind, count) in sizes.expected_counts() {
        assert_eq!(verification.counts[kind].target, count, "{kind}");
    }
    // The resumed run stored only what the first one had not.
    assert!(report.copied.messages_stored < 400 * 20);
}
