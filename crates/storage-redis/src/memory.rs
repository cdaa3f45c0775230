//! What the server's `INFO` says, and whether it may evict what this backend stores.
//!
//! Redis with a `maxmemory` limit deletes keys to make room unless its `maxmemory-policy`
//! is `noeviction`. An evicted session, conversation head, index or checkpoint record is
//! an acknowledged write lost, and a half-evicted conversation or namespace is one no
//! script expects; so a server that may evict this backend's keys is refused at
//! `initialize` unless `redis.allow_eviction` accepts that, and shown by `health_check`.

use deadpool_redis::redis::Value;
use storage_core::StorageError;

use crate::config::RedisConfig;
use crate::error::BACKEND;

/// The text of every node in an `INFO` reply: one text from a standalone server, a map of
/// node to text from a cluster (the driver asks every primary). The node is the server's
/// endpoint when the reply does not name it.
pub(crate) fn info_texts(info: &Value, endpoint: &str) -> Vec<(String, String)> {
    match info {
        Value::BulkString(bytes) => vec![(
            endpoint.to_owned(),
            String::from_utf8_lossy(bytes).into_owned(),
        )],
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => {
            vec![(endpoint.to_owned(), text.clone())]
        }
        Value::Map(entries) => entries
            .iter()
            .flat_map(|(node, value)| {
                let node = match node {
                    Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    Value::SimpleString(text) => text.clone(),
                    _ => endpoint.to_owned(),
                };
                info_texts(value, &node)
            })
            .collect(),
        Value::Array(values) => values
            .iter()
            .flat_map(|value| info_texts(value, endpoint))
            .collect(),
        _ => Vec::new(),
    }
}

/// The value of `name` in one node's `INFO` text.
pub(crate) fn info_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// One node's memory limit and eviction policy, from `INFO memory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeMemory {
    /// `host:port` of the node.
    pub(crate) node: String,
    /// `maxmemory` in bytes; 0 is no limit.
    pub(crate) maxmemory: u64,
    /// `maxmemory_policy`, e.g. `noeviction` or `allkeys-lru`.
    pub(crate) policy: String,
}

impl NodeMemory {
    /// Every node's settings in the texts of an `INFO` reply ([`info_texts`]); a node whose
    /// text lacks them (a server that hides them) is left out.
    pub(crate) fn of_texts(texts: &[(String, String)]) -> Vec<NodeMemory> {
        texts
            .iter()
            .filter_map(|(node, text)| {
                Some(NodeMemory {
                    maxmemory: info_field(text, "maxmemory")?.parse().ok()?,
                    policy: info_field(text, "maxmemory_policy")?.to_owned(),
                    node: node.clone(),
                })
            })
            .collect()
    }

    /// Whether this node may evict a key this backend wrote: never without a memory limit
    /// or under `noeviction`; under a `volatile-*` policy only keys with a TTL, so only
    /// when `expiring` (some `redis.*_ttl_secs` is set: such a key would go before its
    /// time); any key under `allkeys-*`, or under a policy this code does not know.
    pub(crate) fn may_evict(&self, expiring: bool) -> bool {
        if self.maxmemory == 0 || self.policy == "noeviction" {
            false
        } else if self.policy.starts_with("volatile-") {
            expiring
        } else {
            true
        }
    }

    /// What an operator reads: the node and the two settings.
    pub(crate) fn describe(&self) -> String {
        format!(
            "redis at {} may evict stored keys under memory pressure (maxmemory {} bytes, \
             maxmemory-policy {})",
            self.node, self.maxmemory, self.policy
        )
    }
}

/// Whether any key this configuration writes carries a TTL.
pub(crate) fn expiring(config: &RedisConfig) -> bool {
    [
        config.session_ttl_secs,
        config.conversation_ttl_secs,
        config.task_context_ttl_secs,
        config.checkpoint_ttl_secs,
        config.artifact_ttl_secs,
    ]
    .iter()
    // A TTL of 0 sets no expiry (see `ttl_ms`).
    .any(|ttl| ttl.is_some_and(|secs| secs > 0))
}

/// The first node of `nodes` that may evict this configuration's keys.
pub(crate) fn evicting<'a>(
    nodes: &'a [NodeMemory],
    config: &RedisConfig,
) -> Option<&'a NodeMemory> {
    let expiring = expiring(config);
    nodes.iter().find(|node| node.may_evict(expiring))
}

/// The error `initialize` answers for a node that may evict keys, unless
/// `redis.allow_eviction` is set: configuration, which no retry fixes.
pub(crate) fn refusal(node: &NodeMemory) -> StorageError {
    let volatile = if node.policy.starts_with("volatile-") {
        " (or set no redis.*_ttl_secs: this policy evicts only keys with a TTL)"
    } else {
        ""
    };
    StorageError::config(format!(
        "{}: an acknowledged write could be lost. Set maxmemory-policy noeviction (a full \
         server then refuses writes with a temporary error, losing none){volatile}, or set \
         redis.allow_eviction = true to accept the loss",
        node.describe()
    ))
    .with_backend(BACKEND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(maxmemory: u64, policy: &str) -> NodeMemory {
        NodeMemory {
            node: "127.0.0.1:6379".into(),
            maxmemory,
            policy: policy.into(),
        }
    }

    #[test]
    fn only_a_limit_with_a_policy_that_reaches_our_keys_evicts() {
        for (maxmemory, policy, expiring, evicts) in [
            (0, "allkeys-lru", false, false),
            (1 << 20, "noeviction", true, false),
            (1 << 20, "allkeys-lru", false, true),
            (1 << 20, "allkeys-random", false, true),
            (1 << 20, "volatile-lru", false, false),
            (1 << 20, "volatile-ttl", true, true),
            (1 << 20, "some-future-policy", false, true),
        ] {
            assert_eq!(
                node(maxmemory, policy).may_evict(expiring),
                evicts,
                "{maxmemory} {policy} expiring={expiring}"
            );
        }
    }

    #[test]
    fn a_cluster_reply_names_each_node() {
        let text = |policy: &str| {
            Value::BulkString(
                format!("# Memory\r\nmaxmemory:1048576\r\nmaxmemory_policy:{policy}\r\n")
                    .into_bytes(),
            )
        };
        let reply = Value::Map(vec![
            (
                Value::BulkString(b"10.0.0.1:7000".to_vec()),
                text("noeviction"),
            ),
            (
                Value::BulkString(b"10.0.0.2:7001".to_vec()),
                text("allkeys-lfu"),
            ),
        ]);
        let nodes = NodeMemory::of_texts(&info_texts(&reply, "seed:7000"));
        assert_eq!(nodes.len(), 2);
        let config = RedisConfig::default();
        let found = evicting(&nodes, &config).unwrap();
        assert_eq!(found.node, "10.0.0.2:7001");
        assert!(
            found.describe().contains("allkeys-lfu"),
            "{}",
            found.describe()
        );
    }
}
