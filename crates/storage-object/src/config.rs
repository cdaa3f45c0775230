//! Configuration of the object-storage backend.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storage_core::{Result, StorageError};

/// Where objects live and how the client behaves.
///
/// `url` selects the provider: `file:///dir`, `memory://` (or `memory://name`, shared by
/// every backend of this process with that name), `s3://bucket/prefix`,
/// `gs://bucket/prefix`, `az://container/prefix`. Provider settings (endpoint, region,
/// credentials, ...) go in `options`, with object_store's key names (`aws_endpoint`,
/// `aws_access_key_id`, `google_service_account`, `azure_storage_account_name`, ...).
/// Credentials are taken from `options` only; the process environment (`AWS_*`, ...) is
/// read only when `use_environment` is on.
///
/// `Debug` never shows an option whose name says it holds a secret
/// ([`storage_core::redact::is_secret_key`]), nor a password inside the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectConfig {
    /// The store's URL; see the type's documentation.
    pub url: String,
    /// The storage namespace: a path prefix no other namespace reads or deletes.
    pub namespace: String,
    /// Provider options, by object_store's configuration key names.
    ///
    /// Values are text; a bool or number given where text is expected (an environment
    /// layer reads `STORAGE_OBJECT__OPTIONS__AWS_ALLOW_HTTP=true` as a bool) is taken as
    /// its text.
    #[serde(deserialize_with = "options_as_text")]
    pub options: BTreeMap<String, String>,
    /// Also read provider settings and credentials from the environment.
    pub use_environment: bool,
    /// Longest wait for one HTTP request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Longest wait to establish a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Most retries of one request.
    pub max_retries: usize,
    /// Longest time spent retrying one request, in milliseconds.
    pub retry_timeout_ms: u64,
    /// Largest artifact accepted, in bytes.
    pub max_artifact_bytes: Option<u64>,
    /// Artifacts at least this large are uploaded in parts, in bytes.
    pub multipart_threshold_bytes: u64,
    /// Size of one uploaded part and of one ranged read, in bytes.
    pub part_size_bytes: u64,
    /// Parts uploaded (and ranges read) at once per artifact.
    pub transfer_concurrency: usize,
    /// Local files only: flush each written file and its directory to disk before the write
    /// is acknowledged, so an acknowledged write survives a power loss or an OS crash, not
    /// only a process crash. Cloud stores are durable on acknowledgement and ignore it.
    pub fsync: bool,
}

/// Reads provider options, taking a scalar of any type as its text: object_store parses
/// every option from text, and configuration layers guess types (`true`, `3`).
fn options_as_text<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Flag(bool),
        Integer(i64),
        Unsigned(u64),
        Float(f64),
    }
    let options = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
    Ok(options
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Scalar::Text(text) => text,
                Scalar::Flag(flag) => flag.to_string(),
                Scalar::Integer(number) => number.to_string(),
                Scalar::Unsigned(number) => number.to_string(),
                Scalar::Float(number) => number.to_string(),
            };
            (key, text)
        })
        .collect())
}

impl Default for ObjectConfig {
    /// The embedded default: the local directory `./.storage`, no server needed.
    fn default() -> Self {
        ObjectConfig {
            url: "file://./.storage".into(),
            namespace: "default".into(),
            options: BTreeMap::new(),
            use_environment: false,
            request_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            max_retries: 3,
            retry_timeout_ms: 30_000,
            max_artifact_bytes: None,
            // A streamed artifact holds about (transfer_concurrency + 2) parts in memory in
            // each direction: 5 MiB parts (S3's smallest), 2 in flight, keep a 1 GiB round
            // trip well under 64 MiB resident (docs/benchmarks.md). Raise both for
            // throughput on a high-latency store.
            multipart_threshold_bytes: 5 * 1024 * 1024,
            part_size_bytes: 5 * 1024 * 1024,
            transfer_concurrency: 2,
            // Acknowledged means durable, as on PostgreSQL's defaults; a cache directory
            // that may lose its last writes can turn it off for speed.
            fsync: true,
        }
    }
}

impl ObjectConfig {
    /// A configuration for `url` with defaults elsewhere.
    pub fn new(url: impl Into<String>) -> Self {
        ObjectConfig {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets one provider option (object_store key name).
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Sets the request and connect timeouts, and bounds retries to the request timeout.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout_ms = duration_ms(connect);
        self.request_timeout_ms = duration_ms(request);
        self.retry_timeout_ms = self.request_timeout_ms;
        self
    }

    /// Sets the artifact size limit.
    pub fn with_max_artifact_bytes(mut self, limit: Option<u64>) -> Self {
        self.max_artifact_bytes = limit;
        self
    }

    /// Sets whether local-file writes are flushed to disk before they are acknowledged.
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Checks every value, so a wrong one is a `Config` error naming its key.
    pub fn validate(&self) -> Result<()> {
        storage_core::validate::validate_namespace(&self.namespace)
            .map_err(|err| StorageError::config(format!("object.namespace: {}", err.message())))?;
        let scheme = self.url.split("://").next().unwrap_or_default();
        if !self.url.contains("://")
            || !matches!(
                scheme,
                "file" | "memory" | "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss"
            )
        {
            return Err(StorageError::config(format!(
                "object.url {:?} is invalid: expected file:///dir, memory://, s3://bucket, \
                 gs://bucket or az://container",
                storage_core::redact::redact_url(&self.url)
            )));
        }
        for (key, value) in [
            ("object.request_timeout_ms", self.request_timeout_ms),
            ("object.connect_timeout_ms", self.connect_timeout_ms),
            ("object.retry_timeout_ms", self.retry_timeout_ms),
            ("object.part_size_bytes", self.part_size_bytes),
        ] {
            if value == 0 {
                return Err(StorageError::config(format!("{key} must be at least 1")));
            }
        }
        if self.part_size_bytes < 5 * 1024 * 1024 && matches!(scheme, "s3" | "s3a") {
            return Err(StorageError::config(
                "object.part_size_bytes must be at least 5 MiB on S3",
            ));
        }
        if self.transfer_concurrency == 0 {
            return Err(StorageError::config(
                "object.transfer_concurrency must be at least 1",
            ));
        }
        Ok(())
    }

    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    pub(crate) fn retry_timeout(&self) -> Duration {
        Duration::from_millis(self.retry_timeout_ms)
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl fmt::Debug for ObjectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, String> = self
            .options
            .iter()
            .map(|(key, value)| (key.as_str(), storage_core::redact::redact_named(key, value)))
            .collect();
        f.debug_struct("ObjectConfig")
            .field("url", &storage_core::redact::redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("options", &options)
            .field("use_environment", &self.use_environment)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout_ms", &self.retry_timeout_ms)
            .field("max_artifact_bytes", &self.max_artifact_bytes)
            .field("multipart_threshold_bytes", &self.multipart_threshold_bytes)
            .field("part_size_bytes", &self.part_size_bytes)
            .field("transfer_concurrency", &self.transfer_concurrency)
            .field("fsync", &self.fsync)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let config = ObjectConfig::new("s3://bucket")
            .with_option("aws_access_key_id", "AKIDVISIBLE")
            .with_option("aws_secret_access_key", "hunter2")
            .with_option("aws_session_token", "tok3n");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(shown.contains("AKIDVISIBLE"), "{shown}");
    }

    #[test]
    fn wrong_values_name_their_key() {
        let bad = ObjectConfig::new("ftp://x");
        assert!(bad.validate().unwrap_err().message().contains("object.url"));
        let bad = ObjectConfig::default().with_namespace("Bad");
        assert!(bad
            .validate()
            .unwrap_err()
            .message()
            .contains("object.namespace"));
        assert!(ObjectConfig::default().validate().is_ok());
    }
}
