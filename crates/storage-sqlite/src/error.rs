//! The one place where SQLite errors become [`StorageError`]s.

use rusqlite::ErrorCode;
use storage_core::StorageError;

/// The backend's name, as errors and health reports give it.
pub(crate) const BACKEND: &str = "sqlite";

/// What an operation can fail with before it is classified. `?` converts driver and
/// storage errors into it; [`classify`] turns it into the public error once, at the edge of
/// each operation.
#[derive(Debug)]
pub(crate) enum Failure {
    Driver(rusqlite::Error),
    Storage(StorageError),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Self {
        Failure::Driver(err)
    }
}

impl From<rusqlite::types::FromSqlError> for Failure {
    fn from(err: rusqlite::types::FromSqlError) -> Self {
        Failure::Storage(
            StorageError::serialization(format!("sqlite: unexpected column type: {err}"))
                .with_backend(BACKEND),
        )
    }
}

impl From<StorageError> for Failure {
    fn from(err: StorageError) -> Self {
        Failure::Storage(err)
    }
}

/// `Result` of the backend's internal operations.
pub(crate) type SqlResult<T> = Result<T, Failure>;

/// Finishes an operation: classifies its failure and names the backend and operation.
pub(crate) fn finish<T>(operation: &'static str, result: SqlResult<T>) -> storage_core::Result<T> {
    result.map_err(|failure| {
        classify(failure)
            .with_backend(BACKEND)
            .with_operation(operation)
    })
}

/// The error every operation gets once the backend is closed (as a closed pool elsewhere).
pub(crate) fn closed() -> Failure {
    Failure::Storage(StorageError::connection("the backend was closed").with_temporary(false))
}

/// Maps a failure to the public error kind and temporary flag.
///
/// Another connection holding the write lock past `busy_timeout_ms` is `Timeout`
/// (temporary); a file that cannot be opened or read is `Connection` (the database is
/// unreachable, as a server would be); a full disk is a temporary `Backend` error; a
/// corrupt file is a permanent one.
pub(crate) fn classify(failure: Failure) -> StorageError {
    match failure {
        Failure::Storage(err) => err,
        Failure::Driver(err) => classify_driver(err),
    }
}

fn classify_driver(err: rusqlite::Error) -> StorageError {
    let message = format!("sqlite: {err}");
    let error = match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StorageError::timeout(message).with_temporary(true)
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StorageError::connection(message).with_temporary(false)
        }
        Some(ErrorCode::SystemIoFailure) => StorageError::connection(message),
        Some(ErrorCode::DiskFull | ErrorCode::OutOfMemory) => {
            StorageError::backend(message).with_temporary(true)
        }
        Some(ErrorCode::TooBig) => StorageError::invalid_input(message),
        _ => match err {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => StorageError::serialization(message),
            _ => StorageError::backend(message),
        },
    };
    error.with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_core::ErrorKind;

    fn sqlite_error(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn busy_is_a_temporary_timeout_and_closed_is_permanent() {
        let busy = classify(Failure::Driver(sqlite_error(rusqlite::ffi::SQLITE_BUSY)));
        assert_eq!(busy.kind(), ErrorKind::Timeout);
        assert!(busy.is_temporary());
        let closed = classify(closed());
        assert_eq!(closed.kind(), ErrorKind::Connection);
        assert!(!closed.is_temporary());
        let corrupt = classify(Failure::Driver(sqlite_error(rusqlite::ffi::SQLITE_CORRUPT)));
        assert_eq!(corrupt.kind(), ErrorKind::Backend);
    }
}
