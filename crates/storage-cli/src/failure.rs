//! What a command failed with, and the exit code each failure has on every command.

use serde_json::json;
use storage_core::{ErrorKind, StorageError};

/// What a command failed with, mapped to an exit code (documented in docs/operations.md).
#[derive(Debug)]
pub enum Failure {
    /// 1: the backend answered with an error, a verification failed, or data is
    /// inconsistent.
    Failed(String),
    /// 2: a usage error, an invalid argument or an invalid configuration.
    BadInput(String),
    /// 3: the session, thread, checkpoint, context or artifact does not exist.
    NotFound(String),
    /// 4: a backend could not be reached or did not answer in time.
    Unavailable(String),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::BadInput(_) => 2,
            Failure::NotFound(_) => 3,
            Failure::Unavailable(_) => 4,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Failed(_) => "backend",
            Failure::BadInput(_) => "bad_input",
            Failure::NotFound(_) => "not_found",
            Failure::Unavailable(_) => "unavailable",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Failed(m)
            | Failure::BadInput(m)
            | Failure::NotFound(m)
            | Failure::Unavailable(m) => m,
        }
    }

    /// Prints the failure on stderr: `{"error": {"kind", "message", "exit_code"}}` under
    /// `--json`, else one line.
    pub fn report(&self, json_output: bool) {
        if json_output {
            eprintln!(
                "{}",
                json!({"error": {
                    "kind": self.kind(),
                    "message": self.message(),
                    "exit_code": self.code(),
                }})
            );
        } else {
            eprintln!("storectl: {}", self.message());
        }
    }
}

impl From<StorageError> for Failure {
    fn from(err: StorageError) -> Self {
        match err.kind() {
            ErrorKind::NotFound => Failure::NotFound(err.to_string()),
            ErrorKind::InvalidInput | ErrorKind::Config | ErrorKind::AlreadyExists => {
                Failure::BadInput(err.to_string())
            }
            ErrorKind::Connection | ErrorKind::Timeout => Failure::Unavailable(err.to_string()),
            _ => Failure::Failed(err.to_string()),
        }
    }
}

pub type Outcome = Result<(), Failure>;
