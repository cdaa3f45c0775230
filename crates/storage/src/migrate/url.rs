//! Backend URLs for `storectl migrate --from URL --to URL`.

use storage_core::{Result, StorageError};

use crate::config::{BackendName, StorageConfig};

/// The backend and configuration a migration URL names, on top of the defaults.
///
/// The scheme picks the backend: `redis://`, `rediss://` (Redis), `postgres://`,
/// `postgresql://` (PostgreSQL), `file://`, `s3://`, `gs://`, `az://`, `object+memory://`
/// (object storage; the last is the object backend's in-memory store), `sqlite://PATH`
/// (a SQLite file: `sqlite:///var/lib/app/storage.db`, `sqlite://./.storage/storage.db`),
/// `memory://` (the
/// in-process memory backend, useful only inside one process). A `namespace` query
/// parameter selects the namespace and is removed before the URL reaches the backend:
/// `redis://127.0.0.1:6379/0?namespace=app`. On object-storage URLs every other query
/// parameter is a provider option, by object_store's key names, taken verbatim:
/// `s3://bucket/prefix?aws_endpoint=http://127.0.0.1:9000&aws_allow_http=true&...`.
pub fn config_for_url(url: &str) -> Result<(BackendName, StorageConfig)> {
    let redacted = storage_core::redact::redact_url(url);
    let (scheme, _) = url.split_once("://").ok_or_else(|| {
        StorageError::invalid_input(format!("{redacted:?} is not a backend URL (scheme://...)"))
    })?;
    let (address, namespace) = take_namespace(url);
    let mut config = StorageConfig::default();
    let backend = match scheme {
        "memory" => BackendName::Memory,
        "redis" | "rediss" => BackendName::Redis,
        "postgres" | "postgresql" => BackendName::Postgres,
        "sqlite" => BackendName::Sqlite,
        "file" | "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "object+memory" => {
            BackendName::Object
        }
        other => {
            return Err(StorageError::invalid_input(format!(
                "unknown backend scheme {other:?} in {redacted:?}; expected memory, redis, \
                 rediss, postgres, postgresql, sqlite, file, s3, gs, az or object+memory"
            )))
        }
    };
    config.backend = backend;
    set_address(&mut config, backend, &address, namespace)?;
    Ok((backend, config))
}

#[allow(unused_variables, unreachable_patterns)]
fn set_address(
    config: &mut StorageConfig,
    backend: BackendName,
    address: &str,
    namespace: Option<String>,
) -> Result<()> {
    match backend {
        BackendName::Memory => {
            if let Some(namespace) = namespace {
                config.memory.namespace = namespace;
            }
        }
        #[cfg(feature = "redis")]
        BackendName::Redis => {
            config.redis.url = address.to_owned();
            if let Some(namespace) = namespace {
                config.redis.namespace = namespace;
            }
        }
        #[cfg(feature = "postgres")]
        BackendName::Postgres => {
            config.postgres.url = Some(address.to_owned());
            if let Some(namespace) = namespace {
                config.postgres.namespace = namespace;
            }
        }
        #[cfg(feature = "object")]
        BackendName::Object => {
            // Object stores take no query string: its pairs are provider options
            // (`s3://bucket?aws_endpoint=http://127.0.0.1:9000&aws_allow_http=true`).
            let (url, query) = address.split_once('?').unwrap_or((address, ""));
            config.object.url = url.strip_prefix("object+").unwrap_or(url).to_owned();
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                config
                    .object
                    .options
                    .insert(key.to_owned(), value.to_owned());
            }
            if let Some(namespace) = namespace {
                config.object.namespace = namespace;
            }
        }
        #[cfg(feature = "sqlite")]
        BackendName::Sqlite => {
            let path = address.strip_prefix("sqlite://").unwrap_or(address);
            config.sqlite.path = std::path::PathBuf::from(path);
            // Every kind to the named file, artifacts included (see `backend_of`).
            config.routes.artifacts = Some(BackendName::Sqlite);
            if let Some(namespace) = namespace {
                config.sqlite.namespace = namespace;
            }
        }
        other => {
            return Err(StorageError::config(crate::config::not_compiled(other)));
        }
    }
    Ok(())
}

/// Splits the `namespace` query parameter off `url`.
fn take_namespace(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut namespace = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("namespace=") {
            Some(value) => {
                namespace = Some(value.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let address = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (address, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_backends_and_namespace_is_taken_out() {
        let (backend, config) =
            config_for_url("postgres://u@127.0.0.1:5432/db?namespace=app&sslmode=disable").unwrap();
        assert_eq!(backend, BackendName::Postgres);
        assert_eq!(
            config.postgres.url.as_deref(),
            Some("postgres://u@127.0.0.1:5432/db?sslmode=disable")
        );
        assert_eq!(config.postgres.namespace, "app");
        let (backend, config) = config_for_url("redis://127.0.0.1:1/0?namespace=x").unwrap();
        assert_eq!(backend, BackendName::Redis);
        assert_eq!(config.redis.url, "redis://127.0.0.1:1/0");
        assert_eq!(config.redis.namespace, "x");
        let (backend, config) = config_for_url("sqlite:///var/lib/a.db?namespace=s").unwrap();
        assert_eq!(backend, BackendName::Sqlite);
        assert_eq!(
            config.sqlite.path,
            std::path::PathBuf::from("/var/lib/a.db")
        );
        assert_eq!(config.sqlite.namespace, "s");
        // Every kind goes to the named file, artifacts included.
        assert_eq!(
            config.backend_of(crate::Kind::Artifacts),
            BackendName::Sqlite
        );
        let (backend, config) = config_for_url("object+memory://?namespace=o").unwrap();
        assert_eq!(backend, BackendName::Object);
        assert_eq!(config.object.url, "memory://");
        let (_, config) = config_for_url(
            "s3://bucket/prefix?aws_endpoint=http://127.0.0.1:9/&namespace=n&aws_allow_http=true",
        )
        .unwrap();
        assert_eq!(config.object.url, "s3://bucket/prefix");
        assert_eq!(config.object.namespace, "n");
        assert_eq!(
            config
                .object
                .options
                .get("aws_endpoint")
                .map(String::as_str),
            Some("http://127.0.0.1:9/")
        );
        assert_eq!(
            config
                .object
                .options
                .get("aws_allow_http")
                .map(String::as_str),
            Some("true")
        );
        assert!(config_for_url("ftp://x").is_err());
        assert!(config_for_url("nonsense").is_err());
    }
}
