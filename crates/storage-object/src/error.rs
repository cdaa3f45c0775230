//! The one place where object_store errors become [`StorageError`]s.

use storage_core::StorageError;

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "object";

/// Classifies an object_store error. An unreachable endpoint or a dropped connection is
/// `Connection` and a request past its deadline `Timeout` (both temporary), never
/// `NotFound` or `Backend`; a local disk without room (or past its quota) is a temporary
/// `Backend` error, as SQLite's full disk is: the write can succeed once room is made; so
/// is a service still throttling or failing (HTTP 429, 5xx) when object_store's retries
/// run out.
pub(crate) fn classify(err: object_store::Error) -> StorageError {
    use object_store::Error as E;
    let message = err.to_string();
    let classified = match &err {
        E::NotFound { .. } => StorageError::not_found(format!("object not found: {message}")),
        E::AlreadyExists { .. } => StorageError::already_exists(message.clone()),
        E::Precondition { .. } => StorageError::conflict(message.clone()),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            StorageError::unsupported(message.clone())
        }
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => StorageError::config(format!(
            "the object store refused the credentials or configuration: {message}"
        )),
        _ => match cause_of(&err) {
            Some(Cause::Timeout) => StorageError::timeout(format!(
                "the object store did not answer in time: {message}"
            )),
            Some(Cause::Connection) => {
                StorageError::connection(format!("the object store is unreachable: {message}"))
            }
            Some(Cause::DiskFull) => {
                StorageError::backend(format!("the object store's disk is full: {message}"))
                    .with_temporary(true)
            }
            Some(Cause::Overloaded) => StorageError::backend(format!(
                "the object store is throttling or failing, still after retries: {message}"
            ))
            .with_temporary(true),
            None => StorageError::backend(format!("object store error: {message}")),
        },
    };
    classified.with_backend(BACKEND).with_source(err)
}

enum Cause {
    Timeout,
    Connection,
    DiskFull,
    /// An HTTP answer that asks to come back later: 429, or a 5xx but 501 and 507 (S3's
    /// `503 SlowDown` among them).
    Overloaded,
}

/// How object_store words an HTTP status (its retry error is not public, so only its text
/// tells the status).
const STATUS: &str = "status code: ";

/// Looks through the error's sources for a failed connection, an expired deadline, a full
/// disk or a service asking to come back later: the typed causes (I/O, HTTP) anywhere in
/// the chain first, then the words of each error, since a retry error's text also names
/// its `retry_timeout` whatever the cause.
fn cause_of(err: &(dyn std::error::Error + 'static)) -> Option<Cause> {
    chain(err)
        .find_map(typed_cause)
        .or_else(|| chain(err).find_map(worded_cause))
}

fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |error| error.source())
}

fn typed_cause(error: &(dyn std::error::Error + 'static)) -> Option<Cause> {
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        return match io.kind() {
            K::TimedOut => Some(Cause::Timeout),
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof => Some(Cause::Connection),
            K::StorageFull | K::QuotaExceeded => Some(Cause::DiskFull),
            _ => None,
        };
    }
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    if let Some(http) = error.downcast_ref::<object_store::client::HttpError>() {
        use object_store::client::HttpErrorKind as K;
        return match http.kind() {
            K::Timeout => Some(Cause::Timeout),
            K::Connect | K::Request | K::Interrupted => Some(Cause::Connection),
            _ => None,
        };
    }
    None
}

fn worded_cause(error: &(dyn std::error::Error + 'static)) -> Option<Cause> {
    let text = error.to_string().to_ascii_lowercase();
    if let Some(status) = text.split(STATUS).nth(1) {
        // 507 is a full disk (MinIO's `XMinioStorageFull`); 429 and other 5xx ask to come
        // back later; 501 and 4xx are answers no retry changes.
        if status.starts_with("507") {
            return Some(Cause::DiskFull);
        }
        if status.starts_with("429") || (status.starts_with('5') && !status.starts_with("501")) {
            return Some(Cause::Overloaded);
        }
        return None;
    }
    if text.contains("<code>slowdown</code>") {
        return Some(Cause::Overloaded);
    }
    let deadline = text.replace("retry_timeout", "");
    if deadline.contains("timed out") || deadline.contains("timeout") {
        return Some(Cause::Timeout);
    }
    if text.contains("error sending request")
        || text.contains("connection refused")
        || text.contains("connection reset")
        || text.contains("tcp connect error")
    {
        return Some(Cause::Connection);
    }
    None
}

/// Whether `err` says nothing is at the path: not found, or (local files) a folder of the
/// path is a file, or the path itself is a folder, so the path cannot name an object.
pub(crate) fn is_absent(err: &object_store::Error) -> bool {
    if matches!(err, object_store::Error::NotFound { .. }) {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return matches!(io.kind(), K::NotADirectory | K::IsADirectory);
        }
        cause = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_core::ErrorKind;

    #[test]
    fn not_found_and_conditions() {
        let err = classify(object_store::Error::NotFound {
            path: "a".into(),
            source: "gone".into(),
        });
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = classify(object_store::Error::Precondition {
            path: "a".into(),
            source: "etag".into(),
        });
        assert_eq!(err.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn refused_connections_are_temporary() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = classify(object_store::Error::Generic {
            store: "S3",
            source: Box::new(io),
        });
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.is_temporary());
    }
}
