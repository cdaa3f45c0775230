//! Configuration of the PostgreSQL backend.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storage_core::{Result, StorageError};

/// Whether connections use TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP (or a unix socket).
    #[default]
    Disable,
    /// TLS is required and the server's certificate is verified (chain and host name)
    /// against the system roots and `tls_ca_file`. Needs the crate's `tls` feature.
    /// `sslmode=require` in the URL asks for the same.
    Require,
}

/// Where and how to connect, and which schema to use.
///
/// Either `url` (`postgres://user:password@host:port/database` or the key=value form) or the
/// separate parts name the server; a URL wins over the parts. The namespace is the PostgreSQL
/// schema every table lives in, so two namespaces on one database never see each other's data.
///
/// `Debug` never shows the password, neither the field nor the one inside the URL.
///
/// ```
/// use storage_postgres::PostgresConfig;
///
/// let config = PostgresConfig::from_url("postgres://app:s3cret@127.0.0.1:5432/agents")
///     .with_namespace("agents_prod");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// A connection URL; when set, `host`, `port`, `user`, `password` and `database` are
    /// ignored.
    pub url: Option<String>,
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Role to connect as.
    pub user: String,
    /// Password of the role, if the server asks for one.
    pub password: Option<String>,
    /// Database name.
    pub database: String,
    /// The schema holding this backend's tables (a valid storage namespace not starting with
    /// `pg_`).
    pub namespace: String,
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// How long opening one connection may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long an operation may wait for a free pooled connection, in milliseconds.
    pub wait_timeout_ms: u64,
    /// Server-side limit on one statement, in milliseconds; 0 disables it.
    pub statement_timeout_ms: u64,
    /// TLS mode.
    pub tls: TlsMode,
    /// A PEM file of CA certificates trusted for the server's certificate, besides the
    /// system roots (for a private CA).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Largest artifact accepted, in bytes; `None` accepts up to PostgreSQL's own 1 GiB limit.
    pub max_artifact_bytes: Option<u64>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            host: "127.0.0.1".into(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            database: "postgres".into(),
            namespace: "storage".into(),
            pool_size: 16,
            connect_timeout_ms: 5_000,
            wait_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            tls: TlsMode::Disable,
            tls_ca_file: None,
            max_artifact_bytes: None,
        }
    }
}

/// PostgreSQL's own ceiling for one `bytea` value.
const BYTEA_LIMIT: u64 = (1 << 30) - 1;

impl PostgresConfig {
    /// A configuration for the server at `url`, with defaults for everything else.
    pub fn from_url(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Sets the namespace (the schema name).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the pool size.
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Sets the connect, wait and statement timeouts at once.
    pub fn with_timeouts(mut self, connect: Duration, wait: Duration, statement: Duration) -> Self {
        self.connect_timeout_ms = millis(connect);
        self.wait_timeout_ms = millis(wait);
        self.statement_timeout_ms = millis(statement);
        self
    }

    /// Checks the values that need no server.
    pub fn validate(&self) -> Result<()> {
        storage_core::validate::validate_namespace(&self.namespace)?;
        if self.namespace.starts_with("pg_") {
            return Err(StorageError::invalid_input(format!(
                "namespace {:?} cannot be a PostgreSQL schema: names starting with `pg_` are \
                 reserved",
                self.namespace
            )));
        }
        if self.pool_size == 0 {
            return Err(StorageError::config(
                "postgres.pool_size must be at least 1",
            ));
        }
        if self.connect_timeout_ms == 0 || self.wait_timeout_ms == 0 {
            return Err(StorageError::config(
                "postgres.connect_timeout_ms and postgres.wait_timeout_ms must be at least 1",
            ));
        }
        Ok(())
    }

    /// The artifact size limit in force: the configured one, capped at what `bytea` holds.
    pub(crate) fn artifact_limit(&self) -> u64 {
        self.max_artifact_bytes
            .map_or(BYTEA_LIMIT, |limit| limit.min(BYTEA_LIMIT))
    }

    /// The driver configuration: server, credentials, timeouts, and the schema as the
    /// connection's `search_path`, so every statement names its tables unqualified.
    pub(crate) fn driver_config(&self) -> Result<tokio_postgres::Config> {
        self.validate()?;
        let mut config = match &self.url {
            Some(url) => url.parse::<tokio_postgres::Config>().map_err(|err| {
                // The driver's message names the bad option, never the password.
                StorageError::config(format!(
                    "postgres.url is not a valid connection string: {err}"
                ))
            })?,
            None => {
                let mut config = tokio_postgres::Config::new();
                config
                    .host(&self.host)
                    .port(self.port)
                    .user(&self.user)
                    .dbname(&self.database);
                if let Some(password) = &self.password {
                    config.password(password);
                }
                config
            }
        };
        // The namespace is validated to [a-z0-9_], so it needs no quoting in the options.
        let mut options = format!("-c search_path={}", self.namespace);
        if self.statement_timeout_ms > 0 {
            options.push_str(&format!(
                " -c statement_timeout={}",
                self.statement_timeout_ms
            ));
        }
        config
            .options(&options)
            .application_name("storage-postgres")
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms));
        // `sslmode=require` in the URL is honoured; anything else follows `tls`.
        let url_requires =
            self.url.is_some() && config.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
        config.ssl_mode(if self.tls == TlsMode::Require || url_requires {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Disable
        });
        Ok(config)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field(
                "url",
                &self.url.as_deref().map(storage_core::redact::redact_url),
            )
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|_| storage_core::redact::REDACTED),
            )
            .field("database", &self.database)
            .field("namespace", &self.namespace)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("wait_timeout_ms", &self.wait_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("max_artifact_bytes", &self.max_artifact_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_every_password() {
        let config = PostgresConfig {
            password: Some("hunter2".into()),
            ..PostgresConfig::from_url("postgresql://app:p%40ss@db:5432/x?sslmode=disable")
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("p%40ss"),
            "{shown}"
        );
        assert!(shown.contains("postgresql://app:***@db:5432/x"), "{shown}");
        let kv = PostgresConfig::from_url("host=db password=hunter2 user=app");
        let shown = format!("{kv:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("user=app"),
            "{shown}"
        );
    }

    #[test]
    fn rejects_bad_namespaces_and_sizes() {
        assert!(PostgresConfig::default()
            .with_namespace("pg_x")
            .validate()
            .is_err());
        assert!(PostgresConfig::default()
            .with_namespace("Bad")
            .validate()
            .is_err());
        assert!(PostgresConfig::default()
            .with_pool_size(0)
            .validate()
            .is_err());
        assert!(PostgresConfig::default().validate().is_ok());
        let err = PostgresConfig::from_url("postgres://x:y@h:notaport/db")
            .driver_config()
            .unwrap_err();
        assert_eq!(err.kind(), storage_core::ErrorKind::Config);
    }
}
