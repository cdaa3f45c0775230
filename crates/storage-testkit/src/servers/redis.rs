//! Throwaway Redis servers and clusters.
//!
//! [`redis_url`] and [`redis_cluster_urls`] give what tests connect to: the URL(s) in
//! `STORAGE_TEST_REDIS_URL` / `STORAGE_TEST_REDIS_CLUSTER_URLS` (comma-separated) if set,
//! else a server (or 3-master cluster) started once per test process on free loopback ports
//! and stopped when the process exits. Fault tests start their own [`RedisServer`] and stop
//! and restart it; they never touch a shared one.
//!
//! Servers keep nothing on disk ([`RedisServer::start`]: fast, what the conformance suites
//! use) unless started with [`RedisServer::durable`], whose append-only file is written
//! before each reply, so a kill loses no acknowledged write and a restart reloads it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::tls::{percent_encode, Security, TestCerts};
use super::{free_port, require_binary, Restartable};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` on a loopback port, with its data in a temporary directory.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    durable: bool,
    extra_args: Vec<String>,
    security: Security,
    certs: Option<TestCerts>,
    process: Restartable,
}

impl RedisServer {
    /// Starts a standalone server on a free port, without persistence: a kill loses
    /// everything it held.
    pub fn start() -> Self {
        Self::start_with(free_port(), false, Vec::new())
    }

    /// Starts a standalone server on a free port that loses no acknowledged write when it
    /// is killed: every write is appended to the append-only file in its directory and
    /// fsynced before the reply (`appendfsync always`), and [`RedisServer::restart`]
    /// reloads that file.
    pub fn durable() -> Self {
        Self::start_with(free_port(), true, Vec::new())
    }

    /// Starts a standalone server on a free port that requires `security`: a password
    /// (`requirepass`), and/or TLS only (no plain-text port) with a certificate from a
    /// fresh [`TestCerts`] authority, whose `ca_file` clients then trust
    /// ([`RedisServer::ca_file`]).
    pub fn secured(security: Security) -> Self {
        Self::start_secured(free_port(), false, Vec::new(), security)
    }

    fn start_with(port: u16, durable: bool, extra_args: Vec<String>) -> Self {
        Self::start_secured(port, durable, extra_args, Security::default())
    }

    fn start_secured(
        port: u16,
        durable: bool,
        extra_args: Vec<String>,
        security: Security,
    ) -> Self {
        require_binary("redis-server", "redis-server");
        let dir = tempfile::Builder::new()
            .prefix("storage-test-redis-")
            .tempdir()
            .expect("cannot create a temporary directory")
            .keep();
        let certs = security.tls.then(|| TestCerts::generate(&dir.join("tls")));
        let server = RedisServer {
            port,
            dir,
            durable,
            extra_args,
            security,
            certs,
            process: Restartable::default(),
        };
        server.restart();
        server
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` when the server requires TLS), without
    /// the password.
    pub fn url(&self) -> String {
        let scheme = if self.certs.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// [`RedisServer::url`] with `password` (percent-encoded) in its user info.
    pub fn url_with_password(&self, password: &str) -> String {
        let scheme = if self.certs.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!(
            "{scheme}://:{}@127.0.0.1:{}",
            percent_encode(password),
            self.port
        )
    }

    /// The CA certificate (PEM file) that signed the server's certificate, when the server
    /// requires TLS.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.certs.as_ref().map(|certs| certs.ca_file.as_path())
    }

    /// Kills the server with SIGKILL, as a crash would. Only a [`RedisServer::durable`]
    /// server keeps its data across the kill.
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Stops the server with SIGSTOP: connections stay open and nothing is answered, as a
    /// hung server would, until [`RedisServer::unpause`].
    pub fn pause(&self) {
        self.process.pause();
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn unpause(&self) {
        self.process.unpause();
    }

    /// Starts the server again on the same port and directory (after
    /// [`RedisServer::stop`]); a durable server reloads its append-only file.
    pub fn restart(&self) {
        // No RDB snapshots either way: a snapshot taken in the background would only make
        // what survives a kill depend on timing.
        let appendonly: &[&str] = if self.durable {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let mut command = Command::new("redis-server");
        if let Some(password) = &self.security.password {
            // In a configuration file (which must come first), every byte escaped, so a
            // password with spaces or quotes reaches the server as it is.
            let escaped: String = password.bytes().map(|b| format!("\\x{b:02x}")).collect();
            let conf = self.dir.join("secured.conf");
            std::fs::write(&conf, format!("requirepass \"{escaped}\"\n"))
                .expect("cannot write the redis configuration file");
            command.arg(conf);
        }
        match &self.certs {
            None => {
                command.arg("--port").arg(self.port.to_string());
            }
            Some(certs) => {
                command
                    .args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&certs.cert_file)
                    .arg("--tls-key-file")
                    .arg(&certs.key_file)
                    .arg("--tls-ca-cert-file")
                    .arg(&certs.ca_file)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        command
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(appendonly)
            .args(["--protected-mode", "yes", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra_args);
        self.process.start(
            "redis-server",
            command,
            Some(&self.dir),
            self.port,
            START_TIMEOUT,
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway Redis Cluster of three masters without replicas.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them into one cluster.
    pub fn start() -> Self {
        require_binary("redis-cli", "redis-tools");
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let port = free_port();
                let bus_port = free_port();
                RedisServer::start_with(
                    port,
                    false,
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-port".into(),
                        bus_port.to_string(),
                        "--cluster-config-file".into(),
                        format!("nodes-{port}.conf"),
                        "--cluster-node-timeout".into(),
                        "5000".into(),
                    ],
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("cannot run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ready();
        cluster
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = self.nodes.iter().all(|node| {
                Command::new("redis-cli")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &node.port().to_string(),
                        "cluster",
                        "info",
                    ])
                    .output()
                    .map(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the throwaway redis cluster did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, for fault tests.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The standalone Redis URL tests use: `STORAGE_TEST_REDIS_URL`, or a throwaway server
/// shared by the whole test process.
pub fn redis_url() -> String {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    env_value("STORAGE_TEST_REDIS_URL")
        .unwrap_or_else(|| SHARED.get_or_init(RedisServer::start).url())
}

/// The cluster seed URLs tests use: `STORAGE_TEST_REDIS_CLUSTER_URLS` (comma-separated), or
/// a throwaway 3-master cluster shared by the whole test process.
pub fn redis_cluster_urls() -> Vec<String> {
    static SHARED: OnceLock<RedisCluster> = OnceLock::new();
    match env_value("STORAGE_TEST_REDIS_CLUSTER_URLS") {
        Some(urls) => urls.split(',').map(|url| url.trim().to_owned()).collect(),
        None => SHARED.get_or_init(RedisCluster::start).urls(),
    }
}
