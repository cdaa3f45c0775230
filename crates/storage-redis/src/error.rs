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
pub(crate) fn classify(err: RedisError) -> StorageError {
    let message = err.to_string();
    let classified = if err.is_timeout() {
        StorageError::timeout(format!("redis did not answer in time: {message}"))
    } else if err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || matches!(
            err.kind(),
            RedisKind::Io | RedisKind::ClusterConnectionNotFound
        )
    {
        StorageError::connection(format!("redis connection failed: {message}"))
    } else if is_temporary_server_error(&err) {
        StorageError::backend(format!("redis is not ready: {message}")).with_temporary(true)
    } else {
        match err.kind() {
            RedisKind::AuthenticationFailed | RedisKind::InvalidClientConfig => {
                StorageError::config(format!("redis rejected the configuration: {message}"))
            }
            _ => StorageError::backend(format!("redis error: {message}")),
        }
    };
    classified.with_backend(BACKEND).with_source(err)
}

fn is_temporary_server_error(err: &RedisError) -> bool {
    matches!(
        err.kind(),
        RedisKind::Server(
            ServerErrorKind::ReadOnly
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        )
    ) || err
        .code()
        .is_some_and(|code| TEMPORARY_CODES.contains(&code))
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
    fn pool_timeouts_and_closure() {
        let err = classify_pool(PoolError::Timeout(deadpool_redis::TimeoutType::Wait));
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.is_temporary());
        let closed = classify_pool(PoolError::Closed);
        assert_eq!(closed.kind(), ErrorKind::Connection);
        assert!(!closed.is_temporary());
    }
}
