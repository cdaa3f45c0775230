//! The one public error type every backend returns.
//!
//! Each backend turns its driver's errors into a [`StorageError`] in a single `classify`
//! function, so callers (and the facade's retry and failover layers) can decide what to do
//! from [`ErrorKind`] and [`StorageError::is_temporary`] alone.

use std::fmt;

/// What went wrong, independent of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The addressed record does not exist (only for operations that require it to).
    NotFound,
    /// A create found a live record with the same id.
    AlreadyExists,
    /// A compare-and-set saw a different version than the caller expected.
    Conflict,
    /// The caller's input was rejected before any I/O: bad id, bad namespace, too large, ...
    InvalidInput,
    /// The backend cannot perform this operation at all.
    Unsupported,
    /// The backend's configuration is wrong.
    Config,
    /// The backend could not be reached, or the connection was lost.
    Connection,
    /// The operation did not finish within its deadline.
    Timeout,
    /// A stored record or a caller's value could not be (de)serialized.
    Serialization,
    /// The backend reported an error that fits no other kind.
    Backend,
}

impl ErrorKind {
    /// The kind's stable snake_case name, as used in logs, metrics and `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Config => "config",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Serialization => "serialization",
            ErrorKind::Backend => "backend",
        }
    }

    /// Whether errors of this kind are temporary unless a backend says otherwise.
    ///
    /// Connection losses and timeouts are worth a retry or a failover; everything else
    /// describes the request or the data and would fail again.
    pub fn is_temporary_by_default(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;
/// Shared, so that an error can be cloned (one failed batch answers every caller in it)
/// without losing what caused it.
type SharedSource = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a storage operation.
///
/// Carries its [`ErrorKind`], whether it is temporary, the backend and operation it came from,
/// a message for humans and, where there is one, the driver error underneath. Cloning
/// keeps all of it, the source included.
///
/// ```
/// use storage_core::{ErrorKind, StorageError};
///
/// let err = StorageError::not_found("session 'abc' does not exist")
///     .with_backend("memory")
///     .with_operation("update_session");
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert!(!err.is_temporary());
/// assert_eq!(
///     err.to_string(),
///     "not_found in memory.update_session: session 'abc' does not exist"
/// );
/// ```
#[derive(thiserror::Error, Clone)]
pub struct StorageError {
    kind: ErrorKind,
    temporary: bool,
    backend: &'static str,
    operation: &'static str,
    message: String,
    #[source]
    source: Option<SharedSource>,
}

impl StorageError {
    /// A new error of `kind`; temporary if the kind is temporary by default.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            temporary: kind.is_temporary_by_default(),
            backend: "",
            operation: "",
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Shorthand for [`ErrorKind::AlreadyExists`].
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// Shorthand for [`ErrorKind::Connection`] (temporary).
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Connection, message)
    }
    /// Shorthand for [`ErrorKind::Timeout`] (temporary).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// Shorthand for [`ErrorKind::Serialization`].
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Serialization, message)
    }
    /// Shorthand for [`ErrorKind::Backend`].
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }

    /// Marks the error as temporary (or not), overriding the kind's default.
    ///
    /// Backends use this for errors such as Redis `READONLY` or PostgreSQL serialization
    /// failures, which are [`ErrorKind::Backend`] but worth a retry.
    pub fn with_temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }
    /// Names the backend the error came from, unless one is already named.
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        if self.backend.is_empty() {
            self.backend = backend;
        }
        self
    }
    /// Names the operation the error came from, unless one is already named.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        if self.operation.is_empty() {
            self.operation = operation;
        }
        self
    }
    /// Attaches the underlying driver error.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(SharedSource::from(source.into()));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// Whether the same call may succeed later (worth a retry or a failover).
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }
    /// The backend that reported the error, or `""` if not yet known.
    pub fn backend_name(&self) -> &'static str {
        self.backend
    }
    /// The operation that failed, or `""` if not yet known.
    pub fn operation(&self) -> &'static str {
        self.operation
    }
    /// The human-readable message, without backend and operation.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        match (self.backend.is_empty(), self.operation.is_empty()) {
            (false, false) => write!(f, " in {}.{}", self.backend, self.operation)?,
            (false, true) => write!(f, " in {}", self.backend)?,
            (true, false) => write!(f, " in {}", self.operation)?,
            (true, true) => {}
        }
        if self.temporary && !self.kind.is_temporary_by_default() {
            f.write_str(" (temporary)")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(source) = &self.source {
            // Backends often build the message from the source's own text; once is enough.
            let source = source.to_string();
            if !self.message.contains(&source) {
                write!(f, ": {source}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageError")
            .field("kind", &self.kind)
            .field("temporary", &self.temporary)
            .field("backend", &self.backend)
            .field("operation", &self.operation)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(err: serde_json::Error) -> Self {
        StorageError::serialization(err.to_string()).with_source(err)
    }
}

/// `Result` with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_timeout_are_temporary_by_default() {
        assert!(StorageError::connection("x").is_temporary());
        assert!(StorageError::timeout("x").is_temporary());
        assert!(!StorageError::backend("x").is_temporary());
        assert!(StorageError::backend("READONLY")
            .with_temporary(true)
            .is_temporary());
    }

    #[test]
    fn first_backend_and_operation_win() {
        let err = StorageError::conflict("v")
            .with_operation("inner")
            .with_operation("outer")
            .with_backend("redis")
            .with_backend("facade");
        assert_eq!(err.operation(), "inner");
        assert_eq!(err.backend_name(), "redis");
    }

    #[test]
    fn a_clone_keeps_the_source() {
        use std::error::Error as _;
        let err = StorageError::connection("lost")
            .with_backend("redis")
            .with_source(std::io::Error::other("reset by peer"));
        let copy = err.clone();
        assert_eq!(copy.to_string(), err.to_string());
        assert_eq!(copy.source().unwrap().to_string(), "reset by peer");
        assert!(copy.is_temporary());
    }

    #[test]
    fn display_names_source_and_temporary_override() {
        let io = std::io::Error::other("reset by peer");
        let err = StorageError::backend("LOADING")
            .with_temporary(true)
            .with_source(io);
        assert_eq!(
            err.to_string(),
            "backend (temporary): LOADING: reset by peer"
        );
    }

    #[test]
    fn a_source_the_message_already_quotes_is_not_repeated() {
        let io = std::io::Error::other("No space left on device (os error 28)");
        let err = StorageError::backend(format!("sqlite: {io}")).with_source(io);
        assert_eq!(
            err.to_string(),
            "backend: sqlite: No space left on device (os error 28)"
        );
    }
}
