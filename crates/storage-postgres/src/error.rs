//! The one place where driver and pool errors become [`StorageError`]s.

use std::error::Error as _;

use deadpool_postgres::PoolError;
use storage_core::{ErrorKind, StorageError};
use tokio_postgres::error::SqlState;

/// The backend's name, as errors and health reports give it.
pub(crate) const BACKEND: &str = "postgres";

/// What an operation can fail with before it is classified. `?` converts every driver,
/// pool and storage error into it, and [`classify`] turns it into the public error once,
/// at the edge of each operation.
#[derive(Debug)]
pub(crate) enum Failure {
    Driver(tokio_postgres::Error),
    Pool(PoolError),
    Storage(StorageError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(err: tokio_postgres::Error) -> Self {
        Failure::Driver(err)
    }
}

impl From<PoolError> for Failure {
    fn from(err: PoolError) -> Self {
        Failure::Pool(err)
    }
}

impl From<StorageError> for Failure {
    fn from(err: StorageError) -> Self {
        Failure::Storage(err)
    }
}

/// `Result` of the backend's internal operations.
pub(crate) type PgResult<T> = Result<T, Failure>;

impl Failure {
    /// Whether this is a unique-key violation of the named constraint (or of any, if `None`).
    pub(crate) fn is_unique_violation(&self, constraint: Option<&str>) -> bool {
        match self {
            Failure::Driver(err) => err.as_db_error().is_some_and(|db| {
                *db.code() == SqlState::UNIQUE_VIOLATION
                    && constraint.is_none_or(|name| db.constraint() == Some(name))
            }),
            _ => false,
        }
    }
}

/// Finishes an operation: classifies its failure and names the backend and operation.
pub(crate) fn finish<T>(operation: &'static str, result: PgResult<T>) -> storage_core::Result<T> {
    result.map_err(|failure| {
        classify(failure)
            .with_backend(BACKEND)
            .with_operation(operation)
    })
}

/// Maps a failure to the public error kind and temporary flag.
///
/// A lost, refused or timed-out connection is always `Connection` and temporary, never
/// `NotFound` or `Backend`; a statement cancelled by `statement_timeout` is `Timeout`;
/// serialization failures and deadlocks are `Backend` but temporary.
pub(crate) fn classify(failure: Failure) -> StorageError {
    match failure {
        Failure::Storage(err) => err,
        Failure::Driver(err) => classify_driver(err),
        Failure::Pool(err) => classify_pool(err),
    }
}

fn classify_pool(err: PoolError) -> StorageError {
    match err {
        PoolError::Backend(driver) => classify_driver(driver),
        PoolError::Timeout(kind) => StorageError::connection(format!(
            "no pooled connection within the configured timeout ({kind:?})"
        )),
        PoolError::Closed => {
            StorageError::connection("the backend was closed").with_temporary(false)
        }
        PoolError::NoRuntimeSpecified => {
            StorageError::config("the connection pool has no async runtime for its timeouts")
        }
        PoolError::PostCreateHook(hook) => {
            StorageError::connection(format!("setting up a new connection failed: {hook}"))
        }
    }
}

fn classify_driver(err: tokio_postgres::Error) -> StorageError {
    if let Some(db) = err.as_db_error() {
        let code = db.code().clone();
        let message = format!("{} (SQLSTATE {})", db.message(), code.code());
        let kind = sql_state_kind(&code);
        let temporary = kind.is_temporary_by_default()
            || matches!(
                code,
                SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED
            )
            || code.code().starts_with("53");
        return StorageError::new(kind, message)
            .with_temporary(temporary)
            .with_source(err);
    }
    let kind = if err.is_closed() || io_source(&err).is_some() {
        ErrorKind::Connection
    } else {
        // The driver's error kind is private; its top-level message names it.
        let message = err.to_string();
        if message.starts_with("error connecting")
            || message.starts_with("error communicating")
            || message.starts_with("timeout waiting")
            || message.starts_with("error performing TLS")
        {
            ErrorKind::Connection
        } else if message.starts_with("error serializing")
            || message.starts_with("error deserializing")
        {
            ErrorKind::Serialization
        } else if message.starts_with("authentication error")
            || message.starts_with("invalid connection string")
            || message.starts_with("invalid configuration")
        {
            ErrorKind::Config
        } else {
            ErrorKind::Backend
        }
    };
    StorageError::new(kind, err.to_string()).with_source(err)
}

fn io_source(err: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = err.source();
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = current.source();
    }
    None
}

fn sql_state_kind(code: &SqlState) -> ErrorKind {
    match *code {
        SqlState::QUERY_CANCELED | SqlState::LOCK_NOT_AVAILABLE => ErrorKind::Timeout,
        SqlState::ADMIN_SHUTDOWN
        | SqlState::CRASH_SHUTDOWN
        | SqlState::CANNOT_CONNECT_NOW
        | SqlState::TOO_MANY_CONNECTIONS
        | SqlState::IDLE_SESSION_TIMEOUT => ErrorKind::Connection,
        SqlState::INVALID_PASSWORD
        | SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        | SqlState::INVALID_CATALOG_NAME
        | SqlState::INSUFFICIENT_PRIVILEGE => ErrorKind::Config,
        SqlState::UNIQUE_VIOLATION => ErrorKind::Conflict,
        _ if code.code().starts_with("08") => ErrorKind::Connection,
        _ => ErrorKind::Backend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadpool_postgres::TimeoutType;

    #[test]
    fn pool_failures_are_connection_errors() {
        let err = classify(Failure::Pool(PoolError::Timeout(TimeoutType::Wait)));
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.is_temporary());
        let closed = classify(Failure::Pool(PoolError::Closed));
        assert_eq!(closed.kind(), ErrorKind::Connection);
        assert!(!closed.is_temporary());
    }

    #[test]
    fn sql_states_map_to_kinds() {
        assert_eq!(
            sql_state_kind(&SqlState::QUERY_CANCELED),
            ErrorKind::Timeout
        );
        assert_eq!(
            sql_state_kind(&SqlState::ADMIN_SHUTDOWN),
            ErrorKind::Connection
        );
        assert_eq!(
            sql_state_kind(&SqlState::CONNECTION_FAILURE),
            ErrorKind::Connection
        );
        assert_eq!(
            sql_state_kind(&SqlState::T_R_SERIALIZATION_FAILURE),
            ErrorKind::Backend
        );
    }

    #[test]
    fn finish_names_backend_and_operation() {
        let err =
            finish::<()>("get_session", Err(StorageError::not_found("x").into())).unwrap_err();
        assert_eq!(err.backend_name(), "postgres");
        assert_eq!(err.operation(), "get_session");
    }
}
