//! Configuration of the Redis backend.

use std::fmt;

use std::time::Duration;
use storage_core::redact::redact_url;

use serde::{Deserialize, Serialize};
use storage_core::{Result, StorageError};

/// How to reach Redis and how to lay out and expire keys.
///
/// Durations are whole milliseconds (timeouts) or seconds (TTLs); a TTL of `None` keeps
/// records until they are deleted or cleaned up.
///
/// `Debug` never shows the password of a URL.
///
/// TLS: a `rediss://` URL connects with TLS and verifies the server's certificate (chain
/// and host name) against the system roots, or against `tls_ca_file` when it is set.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` of a standalone server, or of one cluster
    /// node when `cluster` is on and `cluster_urls` is empty.
    pub url: String,
    /// Talk the Redis Cluster protocol.
    pub cluster: bool,
    /// Seed nodes of the cluster; `url` when empty.
    pub cluster_urls: Vec<String>,
    /// The storage namespace: two namespaces on one server never see each other's keys.
    pub namespace: String,
    /// Prepended to every key, before the hash tag: letters, digits, `_`, `-`, `.`, `:`.
    pub key_prefix: String,
    /// Most connections the pool holds.
    pub pool_size: usize,
    /// Longest wait for a new connection to be established, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest wait for a free pooled connection, in milliseconds.
    pub wait_timeout_ms: u64,
    /// Longest wait for the answer of one command or script, in milliseconds.
    pub command_timeout_ms: u64,
    /// Expiry of a session record, refreshed on every write to it, in seconds.
    pub session_ttl_secs: Option<u64>,
    /// Expiry of a conversation, refreshed on every append, in seconds.
    pub conversation_ttl_secs: Option<u64>,
    /// Expiry of a task context, refreshed on every store, in seconds.
    pub task_context_ttl_secs: Option<u64>,
    /// Expiry of a thread's checkpoint keys, refreshed on every put, in seconds.
    pub checkpoint_ttl_secs: Option<u64>,
    /// Expiry of a scope's artifact keys, refreshed on every save, in seconds.
    pub artifact_ttl_secs: Option<u64>,
    /// Largest artifact accepted, in bytes (Redis holds at most 512 MiB per value).
    pub max_artifact_bytes: Option<u64>,
    /// A PEM file of CA certificates trusted for the server's certificate instead of the
    /// system roots, for `rediss://` URLs (needs the crate's `tls` feature). Standalone
    /// servers only: a cluster verifies against the system roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Accept a server that may evict this backend's keys (`maxmemory` set with a
    /// `maxmemory-policy` other than `noeviction`; a `volatile-*` policy counts only when a
    /// TTL above is set). Off by default: `initialize` refuses such a server with a
    /// `Config` error, because an evicted key is an acknowledged write lost;
    /// `health_check` names it in its `eviction` detail either way.
    pub allow_eviction: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            cluster_urls: Vec::new(),
            namespace: "default".into(),
            key_prefix: "storage".into(),
            pool_size: 32,
            connect_timeout_ms: 2_000,
            wait_timeout_ms: 2_000,
            command_timeout_ms: 5_000,
            session_ttl_secs: None,
            conversation_ttl_secs: None,
            task_context_ttl_secs: None,
            checkpoint_ttl_secs: None,
            artifact_ttl_secs: None,
            max_artifact_bytes: Some(256 * 1024 * 1024),
            tls_ca_file: None,
            allow_eviction: false,
        }
    }
}

impl RedisConfig {
    /// A standalone configuration for `url` with defaults elsewhere.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            ..Self::default()
        }
    }

    /// A cluster configuration with seed node URLs.
    pub fn cluster(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let cluster_urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        RedisConfig {
            url: cluster_urls.first().cloned().unwrap_or_default(),
            cluster: true,
            cluster_urls,
            ..Self::default()
        }
    }

    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the pool size.
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Sets the connect, wait and command timeouts at once.
    pub fn with_timeouts(mut self, connect: Duration, wait: Duration, command: Duration) -> Self {
        self.connect_timeout_ms = duration_ms(connect);
        self.wait_timeout_ms = duration_ms(wait);
        self.command_timeout_ms = duration_ms(command);
        self
    }

    /// The URLs the pool connects to.
    pub fn node_urls(&self) -> Vec<String> {
        if self.cluster && !self.cluster_urls.is_empty() {
            self.cluster_urls.clone()
        } else {
            vec![self.url.clone()]
        }
    }

    /// Checks every value, so a wrong one is a `Config` error naming its key.
    pub fn validate(&self) -> Result<()> {
        storage_core::validate::validate_namespace(&self.namespace)
            .map_err(|err| StorageError::config(format!("redis.namespace: {}", err.message())))?;
        let prefix_ok = self
            .key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !prefix_ok || self.key_prefix.len() > 64 {
            return Err(StorageError::config(format!(
                "redis.key_prefix {:?} is invalid: use at most 64 letters, digits, '_', '-', \
                 '.' or ':'",
                self.key_prefix
            )));
        }
        for url in self.node_urls() {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
            {
                return Err(StorageError::config(format!(
                    "redis.url {:?} is invalid: expected redis://host:port",
                    redact_url(&url)
                )));
            }
        }
        if self.pool_size == 0 {
            return Err(StorageError::config("redis.pool_size must be at least 1"));
        }
        if self.cluster && self.tls_ca_file.is_some() {
            return Err(StorageError::config(
                "redis.tls_ca_file is not supported with redis.cluster yet: a cluster over \
                 rediss:// verifies against the system roots",
            ));
        }
        for (key, value) in [
            ("redis.connect_timeout_ms", self.connect_timeout_ms),
            ("redis.wait_timeout_ms", self.wait_timeout_ms),
            ("redis.command_timeout_ms", self.command_timeout_ms),
        ] {
            if value == 0 {
                return Err(StorageError::config(format!("{key} must be at least 1")));
            }
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub(crate) fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_timeout_ms)
    }
    pub(crate) fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("cluster", &self.cluster)
            .field(
                "cluster_urls",
                &self
                    .cluster_urls
                    .iter()
                    .map(|url| redact_url(url))
                    .collect::<Vec<_>>(),
            )
            .field("namespace", &self.namespace)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("wait_timeout_ms", &self.wait_timeout_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("conversation_ttl_secs", &self.conversation_ttl_secs)
            .field("task_context_ttl_secs", &self.task_context_ttl_secs)
            .field("checkpoint_ttl_secs", &self.checkpoint_ttl_secs)
            .field("artifact_ttl_secs", &self.artifact_ttl_secs)
            .field("max_artifact_bytes", &self.max_artifact_bytes)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("allow_eviction", &self.allow_eviction)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let mut config = RedisConfig::new("redis://app:s3cret@127.0.0.1:6380/2");
        config.cluster_urls = vec!["redis://:hunter2@127.0.0.1:7000".into()];
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(
            shown.contains("redis://app:***@127.0.0.1:6380/2"),
            "{shown}"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://pw@h:1"), "redis://***@h:1");
    }

    #[test]
    fn wrong_values_name_their_key() {
        let bad_ns = RedisConfig::default().with_namespace("Bad-NS");
        assert!(bad_ns
            .validate()
            .unwrap_err()
            .message()
            .contains("redis.namespace"));
        let bad_prefix = RedisConfig {
            key_prefix: "a{b}".into(),
            ..RedisConfig::default()
        };
        assert!(bad_prefix
            .validate()
            .unwrap_err()
            .message()
            .contains("redis.key_prefix"));
        let bad_url = RedisConfig::new("http://x");
        assert!(bad_url
            .validate()
            .unwrap_err()
            .message()
            .contains("redis.url"));
        assert!(RedisConfig::default().validate().is_ok());
        let cluster_ca = RedisConfig {
            tls_ca_file: Some("/ca.pem".into()),
            ..RedisConfig::cluster(["rediss://127.0.0.1:7000"])
        };
        assert!(cluster_ca
            .validate()
            .unwrap_err()
            .message()
            .contains("redis.tls_ca_file"));
    }
}
