//! The one place where Redis and pool errors become [`StorageError`]s.

use deadpool_redis::redis::{ErrorKind as RedisKind, RedisError, ServerErrorKind};
use deadpool_redis::PoolError;
use storage_core::StorageError;

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "redis";

/// Server error codes that describe a passing state of the server or cluster (a replica
/// promoted, a dataset loading, a slot migrating): worth a retry or a failover.
const TEMPORARY_CODES: [&str; 7] = [
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MOVED",
    "ASK",
];

/// Classifies a driver error. A lost or refused connection is always `Connection`
/// (temporary), never `NotFound` or `Backend`.
///
/// The driver's message follows as the error's source, so it is said once.
pub(crate) fn classify(err: RedisError) -> StorageError {
    describe(&err).with_backend(BACKEND).with_source(err)
}

/// The kind, temporary flag and message of a driver error, without the error itself.
fn describe(err: &RedisError) -> StorageError {
    if err.is_timeout() {
        return StorageError::timeout("redis did not answer in time");
    }
    if err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || matches!(
            err.kind(),
            RedisKind::Io | RedisKind::ClusterConnectionNotFound
        )
    {
        return StorageError::connection("redis connection failed");
    }
    let codes = server_codes(err);
    let has = |code: &str| codes.iter().any(|found| found == code);
    if has("OOM") {
        // `maxmemory` reached under `noeviction`: Redis refused the write whole (a script
        // is refused before its first write), and takes writes again once memory is freed
        // or the limit raised, as a full disk does.
        StorageError::backend(
            "redis is out of memory (used memory is over its maxmemory): the write was refused",
        )
        .with_temporary(true)
    } else if has("READONLY") {
        StorageError::backend(
            "redis refused the write as a read-only replica (as a demoted master is after a \
             failover)",
        )
        .with_temporary(true)
    } else if TEMPORARY_CODES.iter().any(|code| has(code)) {
        StorageError::backend("redis is not ready").with_temporary(true)
    } else {
        match err.kind() {
            RedisKind::AuthenticationFailed | RedisKind::InvalidClientConfig => {
                StorageError::config("redis rejected the configuration")
            }
            RedisKind::Server(ServerErrorKind::NoPerm) => {
                StorageError::config("redis refused the command to this user")
            }
            _ if matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM")) => {
                StorageError::config("redis rejected the credentials")
            }
            _ => StorageError::backend("redis error"),
        }
    }
}

/// The codes of every server error in `err`: one for a command, one per failed command of
/// a pipeline (whose own `code` names only the first, and only a code the driver knows).
fn server_codes(err: &RedisError) -> Vec<String> {
    err.clone()
        .into_server_errors()
        .map(|errors| {
            errors
                .iter()
                .flat_map(|(_, error)| {
                    // A transaction the server discarded names the refusal that did it:
                    // "EXECABORT Transaction discarded because of: OOM command not ...".
                    let cause = (error.code() == "EXECABORT")
                        .then(|| error.details())
                        .flatten()
                        .and_then(|details| details.split("because of: ").nth(1))
                        .and_then(|cause| cause.split_whitespace().next())
                        .map(str::to_owned);
                    std::iter::once(error.code().to_owned()).chain(cause)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the server refused a write because it is a replica (`READONLY`).
pub(crate) fn is_read_only(err: &RedisError) -> bool {
    server_codes(err).iter().any(|code| code == "READONLY")
}

/// Classifies a pool error: waiting for or creating a connection that does not come is
/// `Connection` (temporary); a closed pool is `Connection` that no retry fixes.
pub(crate) fn classify_pool(err: PoolError) -> StorageError {
    match err {
        PoolError::Backend(err) => classify(err),
        PoolError::Timeout(kind) => StorageError::connection(format!(
            "no redis connection within the pool's {kind:?} timeout"
        ))
        .with_backend(BACKEND),
        PoolError::Closed => StorageError::connection("the redis backend is closed")
            .with_temporary(false)
            .with_backend(BACKEND),
        other => {
            StorageError::connection(format!("redis pool error: {other}")).with_backend(BACKEND)
        }
    }
}

/// A failure to get a connection to `endpoint` (`host:port`): the server named, the cause
/// said once, never the password. A rejected password or an unverifiable certificate is
/// `Config`; a connection that does not come within `redis.connect_timeout_ms` is
/// `Connection` (temporary), like a refused one.
pub(crate) fn connect_failure(
    err: PoolError,
    endpoint: &str,
    connect_timeout_ms: u64,
) -> StorageError {
    let prefix = format!("cannot connect to redis at {endpoint}");
    match err {
        PoolError::Backend(driver) => {
            let described = describe(&driver);
            // A failed TLS handshake (an unverifiable certificate, a protocol mismatch) is
            // configuration: no retry fixes it.
            let mut chain = driver.to_string();
            let mut source = std::error::Error::source(&driver);
            while let Some(cause) = source {
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            let chain = chain.to_ascii_lowercase();
            let (kind, temporary) = if !driver.is_timeout()
                && (chain.contains("certificate") || chain.contains("ssl") || chain.contains("tls"))
            {
                (storage_core::ErrorKind::Config, false)
            } else {
                (described.kind(), described.is_temporary())
            };
            StorageError::new(kind, format!("{prefix}: {}", described.message()))
                .with_temporary(temporary)
                .with_backend(BACKEND)
                .with_source(driver)
        }
        PoolError::Timeout(deadpool_redis::TimeoutType::Create) => {
            StorageError::connection(format!(
                "{prefix}: no connection within redis.connect_timeout_ms ({connect_timeout_ms} ms)"
            ))
            .with_backend(BACKEND)
        }
        other => classify_pool(other),
    }
}

/// The error for a reply that does not have the shape our scripts and commands produce.
pub(crate) fn unexpected_reply(what: &str) -> StorageError {
    StorageError::backend(format!("unexpected redis reply: {what}")).with_backend(BACKEND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_core::ErrorKind;

    #[test]
    fn io_errors_are_temporary_connection_errors() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = classify(RedisError::from(refused));
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.is_temporary());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            classify(RedisError::from(reset)).kind(),
            ErrorKind::Connection
        );
    }

    #[test]
    fn timeouts_are_timeouts() {
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let err = classify(RedisError::from(timed_out));
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.is_temporary());
    }

    #[test]
    fn a_discarded_transaction_is_classified_by_its_cause() {
        for (reply, kind, temporary, says) in [
            (
                "-EXECABORT Transaction discarded because of: OOM command not allowed when \
                 used memory > 'maxmemory'.\r\n",
                ErrorKind::Backend,
                true,
                "out of memory",
            ),
            (
                "-EXECABORT Transaction discarded because of: READONLY You can't write \
                 against a read only replica.\r\n",
                ErrorKind::Backend,
                true,
                "replica",
            ),
        ] {
            let value = deadpool_redis::redis::parse_redis_value(reply.as_bytes()).unwrap();
            let deadpool_redis::redis::Value::ServerError(server) = value else {
                panic!("not an error reply: {value:?}");
            };
            let err = classify(RedisError::from(server));
            assert_eq!(err.kind(), kind, "{err}");
            assert_eq!(err.is_temporary(), temporary, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn pool_timeouts_and_closure() {
        let err = classify_pool(PoolError::Timeout(deadpool_redis::TimeoutType::Wait));
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.is_temporary());
        let closed = classify_pool(PoolError::Closed);
        assert_eq!(closed.kind(), ErrorKind::Connection);
        assert!(!closed.is_temporary());
    }
}
