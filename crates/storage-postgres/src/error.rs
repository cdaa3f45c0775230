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

    /// Whether the server refused a write because it is read-only (SQLSTATE 25006: a
    /// standby, or `default_transaction_read_only` on).
    pub(crate) fn is_read_only(&self) -> bool {
        match self {
            Failure::Driver(err) => err
                .as_db_error()
                .is_some_and(|db| *db.code() == SqlState::READ_ONLY_SQL_TRANSACTION),
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

/// A failure to open a connection to `endpoint` (`host:port`): one error naming the
/// server and the cause once, never the password.
///
/// A connection that does not come within `postgres.connect_timeout_ms`, a refused or a
/// lost one is `Connection` (temporary); a rejected password, role or database, or a
/// certificate that does not verify, is `Config` (no retry fixes it).
pub(crate) fn connect_failure(err: PoolError, endpoint: &str, connect_timeout_ms: u64) -> Failure {
    use deadpool_postgres::TimeoutType;
    let error = match err {
        PoolError::Timeout(TimeoutType::Create) => StorageError::connection(format!(
            "cannot connect to postgres at {endpoint}: no connection within postgres.connect_timeout_ms ({connect_timeout_ms} ms)"
        )),
        PoolError::Backend(driver) => connect_driver_failure(driver, endpoint),
        other => classify_pool(other),
    };
    Failure::Storage(error)
}

/// [`connect_failure`] of a driver error.
pub(crate) fn connect_driver_failure(
    driver: tokio_postgres::Error,
    endpoint: &str,
) -> StorageError {
    let (kind, temporary) = driver_kind(&driver);
    // A TLS handshake that fails without an I/O error is a certificate or protocol
    // mismatch: configuration, not a passing state.
    let (kind, temporary) = if kind == ErrorKind::Connection
        && io_source(&driver).is_none()
        && driver.to_string().starts_with("error performing TLS")
    {
        (ErrorKind::Config, false)
    } else {
        (kind, temporary)
    };
    // The driver's message with its causes follows as the source, so the cause is said
    // once: "cannot connect to postgres at h:p: error connecting to server: <cause>".
    StorageError::new(kind, format!("cannot connect to postgres at {endpoint}"))
        .with_temporary(temporary)
        .with_source(Chain(driver))
}

/// A driver error shown with its causes: the driver's own `Display` says only its kind
/// ("error connecting to server"), its causes hold what happened.
#[derive(Debug)]
pub(crate) struct Chain(pub(crate) tokio_postgres::Error);

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(current) = cause {
            write!(f, ": {current}")?;
            cause = current.source();
        }
        Ok(())
    }
}

impl std::error::Error for Chain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The kind and temporary flag of a driver error.
fn driver_kind(err: &tokio_postgres::Error) -> (ErrorKind, bool) {
    if let Some(db) = err.as_db_error() {
        let code = db.code().clone();
        let kind = sql_state_kind(&code);
        let temporary = kind.is_temporary_by_default()
            || matches!(
                code,
                SqlState::T_R_SERIALIZATION_FAILURE
                    | SqlState::T_R_DEADLOCK_DETECTED
                    | SqlState::READ_ONLY_SQL_TRANSACTION
            )
            || code.code().starts_with("53");
        return (kind, temporary);
    }
    let kind = if err.is_closed() || io_source(err).is_some() {
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
    (kind, kind.is_temporary_by_default())
}

fn classify_driver(err: tokio_postgres::Error) -> StorageError {
    let (kind, temporary) = driver_kind(&err);
    if let Some(db) = err.as_db_error() {
        let message = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        // A failover's old primary, now a standby, says only "read-only transaction".
        let message = if *db.code() == SqlState::READ_ONLY_SQL_TRANSACTION {
            format!(
                "postgres refused the write as read-only (a standby, as after a failover, or \
                 default_transaction_read_only on): {message}"
            )
        } else {
            message
        };
        return StorageError::new(kind, message)
            .with_temporary(temporary)
            .with_source(err);
    }
    // The driver's message is the source's: said once, by the source.
    let message = match kind {
        ErrorKind::Connection => "the connection to postgres failed",
        ErrorKind::Serialization => "a value did not convert",
        ErrorKind::Config => "postgres rejected the configuration",
        _ => "postgres failed",
    };
    StorageError::new(kind, message)
        .with_temporary(temporary)
        .with_source(Chain(err))
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
