//! A prune (and the retention sweep's checkpoint step) reads a namespace, decides which
//! stored channel values no survivor uses, then removes them in one script. These tests
//! hold that script on the wire (a loopback proxy in front of the server stops the first
//! `EVALSHA` after it is armed) while another client changes the namespace, then let it
//! run: a value that a checkpoint stored in the meantime uses must survive.
//!
//! The changes keep the namespace's size, which is all the script used to check: a fork
//! (a checkpoint naming an older checkpoint's version of a channel without sending the
//! value again) put while another checkpoint is removed, a checkpoint put again under its
//! id with such a version, and the thread deleted and rebuilt with as many puts (which
//! also catches a change counter that restarts from zero).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use storage_core::{ChannelValue, Checkpoint, CheckpointStore, Retention, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::data::{checkpoint, cp_id, versions};

/// Stops the first command stream chunk holding a script call after [`Gate::arm`] until
/// [`Gate::open`].
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool, bool)>, // armed, held, open
    changed: Condvar,
}

impl Gate {
    fn arm(&self) {
        *self.state.lock().unwrap() = (true, false, false);
    }

    /// Called by the proxy before it forwards a chunk with a script call.
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        if !state.0 {
            return;
        }
        state.0 = false;
        state.1 = true;
        self.changed.notify_all();
        while !state.2 {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn wait_held(&self) {
        let state = self.state.lock().unwrap();
        let (state, timeout) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(30), |s| !s.1)
            .unwrap();
        assert!(
            !timeout.timed_out() && state.1,
            "the prune never sent its script"
        );
    }

    fn open(&self) {
        self.state.lock().unwrap().2 = true;
        self.changed.notify_all();
    }
}

/// A loopback proxy to `upstream` whose client-to-server direction passes through `gate`.
fn proxy(upstream: String, gate: Arc<Gate>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(&upstream).unwrap();
            let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client);
            let (mut from_client, mut to_server) = (to_client.try_clone().unwrap(), server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(Shutdown::Both);
            });
            let gate = gate.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                // The end of the previous chunk, so a command name split across reads
                // is still seen.
                let mut window: Vec<u8> = Vec::new();
                loop {
                    let n = match from_client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    window.extend_from_slice(&buf[..n]);
                    let script = window.windows(9).any(|w| w == b"\r\nEVALSHA")
                        || window.windows(8).any(|w| w == b"\r\nEVAL\r\n");
                    if script {
                        gate.pass();
                    }
                    if to_server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    window.drain(..window.len().saturating_sub(16));
                }
                let _ = to_server.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// The server's `host:port` in a `redis://[user:password@]host:port[/db]` URL.
fn address(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    rest.split('/').next().unwrap().to_owned()
}

/// Two backends on one fresh namespace: one through a gated proxy, one direct.
fn backends() -> (RedisBackend, RedisBackend, Arc<Gate>) {
    let url = storage_testkit::servers::redis::redis_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let namespace = format!("race_{nanos:x}_{}", std::process::id());
    let gate = Arc::new(Gate::default());
    let port = proxy(address(&url), gate.clone());
    let proxied_url = url.replacen(&address(&url), &format!("127.0.0.1:{port}"), 1);
    let config = |url: String| RedisConfig::new(url).with_namespace(namespace.clone());
    let gated = RedisBackend::new(config(proxied_url)).unwrap();
    let direct = RedisBackend::new(config(url)).unwrap();
    (gated, direct, gate)
}

/// Checkpoint `n` of thread "t" writing version `n` of channel "a".
fn step(n: u32) -> Checkpoint {
    checkpoint("t", "", &cp_id(n), &[("a", &n.to_string(), json!(n))])
}

/// A checkpoint with version `n` of channel "a" that sends no value: it uses the one
/// checkpoint `n` stored.
fn fork_of(id: u32, n: u32) -> Checkpoint {
    let mut cp = Checkpoint::new("t", "", cp_id(id));
    cp.parent_id = Some(cp_id(n));
    cp.channel_versions = versions(&[("a", &n.to_string())]);
    cp
}

async fn value_of(b: &RedisBackend, id: u32) -> Option<ChannelValue> {
    let tuple = b
        .get_checkpoint("t", "", Some(&cp_id(id)))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("checkpoint {id} is gone"));
    tuple.checkpoint.channel_values.get("a").cloned()
}

fn json_value(value: Value) -> Option<ChannelValue> {
    Some(value.into())
}

/// How the held script is started: a prune keeping 2, or a retention sweep keeping 2.
#[derive(Clone, Copy)]
enum Trim {
    Prune,
    Sweep,
}

/// Stores checkpoints 1..=3 (2 tagged with run "r"), starts `trim` keeping the newest two
/// through the gate, runs `race` on the direct backend while its script is held, then lets
/// it run.
async fn race_trim<F, Fut>(trim: Trim, race: F) -> RedisBackend
where
    F: FnOnce(RedisBackend) -> Fut,
    Fut: std::future::Future<Output = RedisBackend>,
{
    let (gated, direct, gate) = backends();
    direct.initialize().await.unwrap();
    for n in 1..=3 {
        let mut cp = step(n);
        if n == 2 {
            cp.metadata.insert("run_id".into(), json!("r"));
        }
        direct
            .put_checkpoint(cp, versions(&[("a", &n.to_string())]))
            .await
            .unwrap();
    }
    gate.arm();
    let trimming = tokio::spawn(async move {
        match trim {
            Trim::Prune => gated.prune_checkpoints("t", 2).await,
            Trim::Sweep => {
                let keep_two = Retention {
                    created_before: None,
                    keep_last: Some(2),
                };
                gated.retain_checkpoints(keep_two).await
            }
        }
    });
    let waiting = gate.clone();
    tokio::task::spawn_blocking(move || waiting.wait_held())
        .await
        .unwrap();
    let direct = race(direct).await;
    gate.open();
    trimming.await.unwrap().unwrap();
    direct
}

/// A fork of checkpoint 1 lands and checkpoint 2 goes (`delete_for_runs`) between the
/// trim's read and its script: the fork's value, which only the removed checkpoint 1
/// stored, stays.
async fn fork_while_one_goes(trim: Trim) {
    let b = race_trim(trim, |b| async move {
        b.put_checkpoint(fork_of(4, 1), versions(&[]))
            .await
            .unwrap();
        assert_eq!(b.delete_for_runs(&["r".to_owned()]).await.unwrap(), 1);
        b
    })
    .await;
    assert_eq!(value_of(&b, 4).await, json_value(json!(1)));
    assert_eq!(value_of(&b, 3).await, json_value(json!(3)));
    assert!(b
        .get_checkpoint("t", "", Some(&cp_id(1)))
        .await
        .unwrap()
        .is_none());
    assert!(b
        .get_checkpoint("t", "", Some(&cp_id(2)))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_value_of_a_fork_put_while_another_checkpoint_went() {
    fork_while_one_goes(Trim::Prune).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_keeps_the_value_of_a_fork_put_while_another_checkpoint_went() {
    fork_while_one_goes(Trim::Sweep).await;
}

/// Checkpoint 3 is put again under its id, now using checkpoint 1's version, between the
/// prune's read and its script: that value stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_value_of_a_checkpoint_put_again_under_its_id() {
    let b = race_trim(Trim::Prune, |b| async move {
        b.put_checkpoint(fork_of(3, 1), versions(&[]))
            .await
            .unwrap();
        b
    })
    .await;
    assert_eq!(value_of(&b, 3).await, json_value(json!(1)));
    assert_eq!(value_of(&b, 2).await, json_value(json!(2)));
}

/// The thread is deleted and rebuilt with as many checkpoints (so as many counted changes
/// as before) between the prune's read and its script, the new third one a fork of the
/// first: its value stays, because a counter created anew does not start where the old one
/// did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_values_of_a_thread_rebuilt_meanwhile() {
    let b = race_trim(Trim::Prune, |b| async move {
        assert_eq!(b.delete_thread("t").await.unwrap(), 3);
        for n in 1..=2 {
            b.put_checkpoint(step(n), versions(&[("a", &n.to_string())]))
                .await
                .unwrap();
        }
        b.put_checkpoint(fork_of(3, 1), versions(&[]))
            .await
            .unwrap();
        b
    })
    .await;
    assert_eq!(value_of(&b, 3).await, json_value(json!(1)));
    assert_eq!(value_of(&b, 2).await, json_value(json!(2)));
}
