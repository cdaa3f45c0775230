//! The connection pool (standalone or cluster) and the one path every command takes:
//! checkout, deadline, error classification.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::aio::ConnectionLike;
use deadpool_redis::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisFuture, Value,
};
use deadpool_redis::{Runtime, Status};
use storage_core::retirement::Retirement;
use storage_core::{Result, StorageError};

use crate::config::RedisConfig;
use crate::error::{classify, connect_failure, unexpected_reply, BACKEND};
use crate::scripts::Lua;

/// A pool of multiplexed connections to one server, or of cluster connections.
pub(crate) struct Pool {
    kind: PoolKind,
    /// Standalone connections to retire once the server refuses a write as a replica.
    retirement: Arc<Retirement>,
    /// `host:port` of the server or seed nodes, for connection errors.
    endpoint: String,
    connect_timeout_ms: u64,
}

enum PoolKind {
    Standalone(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// The connection info of `url`, with the certificates of `redis.tls_ca_file` trusted
/// when the URL asks for TLS (`rediss://`).
fn connection_info(url: &str, config: &RedisConfig) -> Result<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo;
    let config_error = |err: redis::RedisError| {
        // The driver's message never repeats the URL; the URL is shown redacted.
        StorageError::config(format!(
            "redis.url {}: {err}",
            storage_core::redact::redact_url(url)
        ))
        .with_backend(BACKEND)
    };
    let info = url.into_connection_info().map_err(config_error)?;
    let Some(ca_file) = &config.tls_ca_file else {
        return Ok(info);
    };
    if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return Ok(info);
    }
    with_ca(info, ca_file).map_err(|err| err.with_backend(BACKEND))
}

#[cfg(feature = "tls")]
fn with_ca(
    info: redis::ConnectionInfo,
    ca_file: &std::path::Path,
) -> Result<redis::ConnectionInfo> {
    let pem = std::fs::read(ca_file).map_err(|err| {
        StorageError::config(format!(
            "redis.tls_ca_file {}: cannot read it: {err}",
            ca_file.display()
        ))
    })?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    let client = redis::Client::build_with_tls(info, certificates).map_err(|err| {
        StorageError::config(format!("redis.tls_ca_file {}: {err}", ca_file.display()))
    })?;
    Ok(client.get_connection_info().clone())
}

#[cfg(not(feature = "tls"))]
fn with_ca(_: redis::ConnectionInfo, _: &std::path::Path) -> Result<redis::ConnectionInfo> {
    Err(StorageError::config(
        "redis.tls_ca_file needs storage-redis built with the `tls` feature",
    ))
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.kind {
            PoolKind::Standalone(_) => "standalone",
            PoolKind::Cluster(_) => "cluster",
        };
        f.debug_struct("Pool")
            .field("mode", &mode)
            .field("endpoint", &self.endpoint)
            .field("status", &self.status())
            .finish()
    }
}

/// One checked-out connection.
pub(crate) enum Conn {
    Standalone(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Pool {
    /// Builds the pool; connects lazily.
    pub(crate) fn new(config: &RedisConfig) -> Result<Self> {
        let config_error = |err: redis::RedisError| {
            StorageError::config(format!("redis.url: {err}")).with_backend(BACKEND)
        };
        let infos = config
            .node_urls()
            .iter()
            .map(|url| connection_info(url, config))
            .collect::<Result<Vec<_>>>()?;
        let endpoint = infos
            .iter()
            .map(|info| info.addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let build_error = |err: deadpool_redis::BuildError| {
            StorageError::config(format!("redis pool: {err}")).with_backend(BACKEND)
        };
        let retirement = Arc::new(Retirement::new());
        let timeouts = deadpool_redis::Timeouts {
            wait: Some(config.wait_timeout()),
            create: Some(config.connect_timeout()),
            recycle: Some(config.connect_timeout()),
        };
        if config.cluster {
            let manager =
                deadpool_redis::cluster::Manager::new(infos, false).map_err(config_error)?;
            let pool = deadpool_redis::cluster::Pool::builder(manager)
                .max_size(config.pool_size)
                .timeouts(timeouts)
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(build_error)?;
            Ok(Pool {
                kind: PoolKind::Cluster(pool),
                retirement,
                endpoint,
                connect_timeout_ms: config.connect_timeout_ms,
            })
        } else {
            let connection = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout()))
                .set_response_timeout(Some(config.command_timeout()));
            let info = infos
                .into_iter()
                .next()
                .ok_or_else(|| StorageError::config("redis.url is empty").with_backend(BACKEND))?;
            let manager =
                deadpool_redis::Manager::new_with_config(info, connection).map_err(config_error)?;
            let pool = deadpool_redis::Pool::builder(manager)
                .pre_recycle(retire_stale(&retirement))
                .max_size(config.pool_size)
                .timeouts(timeouts)
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(build_error)?;
            Ok(Pool {
                kind: PoolKind::Standalone(pool),
                retirement,
                endpoint,
                connect_timeout_ms: config.connect_timeout_ms,
            })
        }
    }

    /// `host:port` of the server or seed nodes.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Notes a driver error: a write refused because the server is a replica now (as
    /// after a failover that demoted it) retires every standalone connection opened before
    /// it, so that new ones reach whatever the URL's host now leads to. A cluster
    /// connection follows the cluster's topology by itself.
    pub(crate) fn note(&self, err: &redis::RedisError) {
        if crate::error::is_read_only(err) {
            self.retirement.retire_open_connections();
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.kind, PoolKind::Cluster(_))
    }

    pub(crate) fn status(&self) -> Status {
        match &self.kind {
            PoolKind::Standalone(pool) => pool.status(),
            PoolKind::Cluster(pool) => pool.status(),
        }
    }

    pub(crate) fn close(&self) {
        match &self.kind {
            PoolKind::Standalone(pool) => pool.close(),
            PoolKind::Cluster(pool) => pool.close(),
        }
    }

    /// A pooled connection, within the pool's wait and connect timeouts; a failure to
    /// connect names the server, never the password.
    pub(crate) async fn get(&self) -> Result<Conn> {
        match &self.kind {
            PoolKind::Standalone(pool) => pool.get().await.map(Conn::Standalone),
            PoolKind::Cluster(pool) => pool.get().await.map(Conn::Cluster),
        }
        .map_err(|err| connect_failure(err, &self.endpoint, self.connect_timeout_ms))
    }
}

/// The standalone pool's pre-recycle hook: a connection opened before the server was
/// found a replica is not handed out again.
fn retire_stale(retirement: &Arc<Retirement>) -> deadpool_redis::Hook {
    let retirement = Arc::clone(retirement);
    deadpool_redis::Hook::sync_fn(move |_, metrics| {
        if retirement.is_stale(metrics.created) {
            Err(deadpool_redis::HookError::Message(
                "opened before the server was found a replica".into(),
            ))
        } else {
            Ok(())
        }
    })
}

/// Runs `future` within `limit`, classifying its driver error.
pub(crate) async fn within<T>(
    limit: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    within_noting(limit, future, |_| {}).await
}

/// [`within`], showing a driver error to `note` before it is classified.
async fn within_noting<T>(
    limit: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
    note: impl FnOnce(&redis::RedisError),
) -> Result<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(|err| {
            note(&err);
            classify(err)
        }),
        Err(_) => Err(StorageError::timeout(format!(
            "redis did not answer within {} ms",
            limit.as_millis()
        ))
        .with_backend(BACKEND)),
    }
}

/// A `SCAN ... MATCH` walk taken a page at a time, so a caller holds one page of keys at
/// once: on a cluster, of every master in turn (each addressed by the address
/// `CLUSTER NODES` gives when the walk starts).
#[derive(Debug)]
pub(crate) struct KeyScan {
    pattern: String,
    count: usize,
    cursor: u64,
    /// The masters of a cluster, read by the first page.
    masters: Option<Vec<(String, u16)>>,
    /// The master being walked.
    node: usize,
    done: bool,
}

impl KeyScan {
    pub(crate) fn new(pattern: &str, count: usize) -> Self {
        KeyScan {
            pattern: pattern.to_owned(),
            count,
            cursor: 0,
            masters: None,
            node: 0,
            done: false,
        }
    }
}

/// The connection-level half of the backend: every command goes through here.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) pool: Pool,
    pub(crate) command_timeout: Duration,
}

impl Client {
    /// Runs a command within `redis.command_timeout_ms`; a write a replica refused
    /// (`READONLY`) retires the pooled connections (see [`Pool::note`]).
    async fn within<T>(&self, future: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        within_noting(self.command_timeout, future, |err| self.pool.note(err)).await
    }

    /// Every key matching `pattern`, walked with `SCAN` (never `KEYS`): on a cluster,
    /// on every master in turn, each addressed by the address `CLUSTER NODES` gives.
    pub(crate) async fn scan_keys(&self, pattern: &str, count: usize) -> Result<Vec<String>> {
        let mut scan = KeyScan::new(pattern, count);
        let mut keys = Vec::new();
        while let Some(page) = self.scan_page(&mut scan).await? {
            keys.extend(page);
        }
        Ok(keys)
    }

    /// The next page of a [`KeyScan`], or `None` once every node is walked. A key may
    /// show up in more than one page (as `SCAN` promises no better).
    pub(crate) async fn scan_page(&self, scan: &mut KeyScan) -> Result<Option<Vec<String>>> {
        if scan.done {
            return Ok(None);
        }
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(scan.cursor)
            .arg("MATCH")
            .arg(&scan.pattern)
            .arg("COUNT")
            .arg(scan.count);
        let mut conn = self.pool.get().await?;
        let (next, page): (u64, Vec<String>) = match &mut conn {
            Conn::Standalone(_) => {
                let reply: (u64, Vec<String>) = self.within(cmd.query_async(&mut conn)).await?;
                if reply.0 == 0 {
                    scan.done = true;
                }
                reply
            }
            Conn::Cluster(cluster) => {
                if scan.masters.is_none() {
                    let nodes: String = self
                        .within(
                            redis::cmd("CLUSTER")
                                .arg("NODES")
                                .query_async(&mut **cluster),
                        )
                        .await?;
                    scan.masters = Some(masters(&nodes));
                }
                let masters = scan.masters.as_deref().unwrap_or_default();
                let Some((host, port)) = masters.get(scan.node).cloned() else {
                    scan.done = true;
                    return Ok(None);
                };
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                let reply = self.within(cluster.route_command(cmd, routing)).await?;
                let reply: (u64, Vec<String>) = from_value(reply, "SCAN reply")?;
                if reply.0 == 0 {
                    scan.node += 1;
                    scan.done = scan.node >= masters.len();
                }
                reply
            }
        };
        scan.cursor = next;
        Ok(Some(page))
    }

    /// One command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut conn = self.pool.get().await?;
        self.within(cmd.query_async(&mut conn)).await
    }

    /// A pipeline whose keys share one slot (any pipeline on a standalone server).
    pub(crate) async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T> {
        let mut conn = self.pool.get().await?;
        self.within(pipe.query_async(&mut conn)).await
    }

    /// A script (EVALSHA, loading it on NOSCRIPT).
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        script: &Lua,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T> {
        let mut invocation = script.script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.pool.get().await?;
        self.within(invocation.invoke_async(&mut conn)).await
    }

    /// Independent commands that may touch different slots, in one round trip where the
    /// deployment allows: one pipeline on a standalone server, concurrent commands on a
    /// cluster connection (which routes each to its node).
    pub(crate) async fn query_many(&self, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        match &mut conn {
            Conn::Standalone(_) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                self.within(pipe.query_async(&mut conn)).await
            }
            Conn::Cluster(cluster) => {
                let shared: &redis::cluster_async::ClusterConnection = cluster;
                let calls = cmds.into_iter().map(|cmd| {
                    let mut handle = shared.clone();
                    async move { cmd.query_async::<Value>(&mut handle).await }
                });
                self.within(futures::future::try_join_all(calls)).await
            }
        }
    }
}

/// The (host, port) of every live master in `CLUSTER NODES` output
/// (`<id> <ip:port@cport[,hostname]> <flags> ...`).
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_live_master = flags.split(',').any(|flag| flag == "master")
                && !flags
                    .split(',')
                    .any(|flag| flag == "fail" || flag == "noaddr");
            if !is_live_master {
                return None;
            }
            let address = address.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// A script as a plain `EVAL` command, for batches (no NOSCRIPT to recover from).
pub(crate) fn eval_cmd<K: AsRef<str>, A: AsRef<[u8]>>(script: &Lua, keys: &[K], args: &[A]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(&script.source);
    with_keys_and_args(cmd, keys, args)
}

/// The same call by the script's hash (`EVALSHA`), for the calls of a pipeline after one
/// [`eval_cmd`] of the script: that one loaded it.
pub(crate) fn evalsha_cmd<K: AsRef<str>, A: AsRef<[u8]>>(
    script: &Lua,
    keys: &[K],
    args: &[A],
) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.script.get_hash());
    with_keys_and_args(cmd, keys, args)
}

/// A script command (its source or hash given) with its keys and arguments.
fn with_keys_and_args<K: AsRef<str>, A: AsRef<[u8]>>(mut cmd: Cmd, keys: &[K], args: &[A]) -> Cmd {
    cmd.arg(keys.len());
    for key in keys {
        cmd.arg(key.as_ref());
    }
    for arg in args {
        cmd.arg(arg.as_ref());
    }
    cmd
}

/// Converts one reply of a batch.
pub(crate) fn from_value<T: FromRedisValue>(value: Value, what: &str) -> Result<T> {
    redis::from_redis_value(value).map_err(|err| unexpected_reply(&format!("{what}: {err}")))
}
