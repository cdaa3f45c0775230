//! Configuration: every precedence level, nested environment keys, errors naming the bad
//! value's source, redaction, and the documentation listing every key.

// `figment::Jail` closures must return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use figment::Jail;
use storage::config::{config_keys, env_name, ConfigLoader, ValueSource};
use storage::{BackendName, Kind, Storage, StorageConfig};
use storage_core::ErrorKind;

fn load(
    jail_result: impl FnOnce() -> storage_core::Result<storage::LoadedConfig>,
) -> storage::LoadedConfig {
    jail_result().unwrap_or_else(|err| panic!("config should load: {err}"))
}

#[test]
fn defaults_apply_without_file_or_env() {
    Jail::expect_with(|_jail| {
        let loaded = load(|| ConfigLoader::new().load());
        // The embedded default: SQLite for every kind but artifacts, which stay on the
        // local directory.
        assert_eq!(loaded.config.backend, BackendName::Sqlite);
        for kind in Kind::ALL {
            let expected = if kind == Kind::Artifacts {
                BackendName::Object
            } else {
                BackendName::Sqlite
            };
            assert_eq!(loaded.config.backend_of(kind), expected, "{kind}");
        }
        assert_eq!(
            loaded.config.sqlite.path,
            std::path::PathBuf::from("./.storage/storage.db")
        );
        assert_eq!(loaded.config.memory.namespace, "default");
        assert_eq!(
            loaded.config.sqlite.synchronous,
            storage_sqlite::Synchronous::Full,
            "the embedded default acknowledges only what is on disk"
        );
        assert!(
            loaded.config.object.fsync,
            "the embedded default acknowledges only what is on disk"
        );
        let source = loaded
            .entries()
            .into_iter()
            .find(|e| e.key == "cache.ttl_ms")
            .unwrap()
            .source;
        assert_eq!(source, ValueSource::Default);
        Ok(())
    });
}

#[test]
fn file_overrides_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "storage.toml",
            r#"
                backend = "memory"
                [memory]
                namespace = "from_file"
                [cache]
                ttl_ms = 250
            "#,
        )?;
        let loaded = load(|| ConfigLoader::new().load());
        assert_eq!(loaded.config.backend, BackendName::Memory);
        assert_eq!(loaded.config.memory.namespace, "from_file");
        assert_eq!(loaded.config.cache.ttl_ms, 250);
        let entry = loaded
            .entries()
            .into_iter()
            .find(|e| e.key == "memory.namespace")
            .unwrap();
        assert!(
            matches!(&entry.source, ValueSource::File { path } if path.ends_with("storage.toml")),
            "{entry:?}"
        );
        Ok(())
    });
}

#[test]
fn file_path_is_configurable_and_must_exist() {
    Jail::expect_with(|jail| {
        jail.create_file("elsewhere.toml", "[memory]\nnamespace = \"elsewhere\"\n")?;
        jail.set_env("STORAGE_CONFIG_FILE", "elsewhere.toml");
        assert_eq!(
            load(|| ConfigLoader::new().load()).config.memory.namespace,
            "elsewhere"
        );
        let err = ConfigLoader::new().file("missing.toml").load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("missing.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn env_overrides_file_with_nested_keys() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "storage.toml",
            "[memory]\nnamespace = \"from_file\"\n[cache]\nttl_ms = 250\n",
        )?;
        jail.set_env("STORAGE_MEMORY__NAMESPACE", "from_env");
        jail.set_env("STORAGE_ROUTES__ARTIFACTS", "memory");
        jail.set_env("STORAGE_REDIS__POOL_SIZE", "7");
        jail.set_env("STORAGE_OBJECT__OPTIONS__AWS_REGION", "eu-west-1");
        jail.set_env("STORAGE_OBJECT__FSYNC", "false");
        // The environment layer reads these as a bool and a number; options are text.
        jail.set_env("STORAGE_OBJECT__OPTIONS__AWS_ALLOW_HTTP", "true");
        jail.set_env("STORAGE_OBJECT__OPTIONS__AWS_MAX_RETRIES", "3");
        // Not configuration: other STORAGE_ variables are left alone.
        jail.set_env("STORAGE_TEST_REDIS_URL", "redis://127.0.0.1:1");
        let loaded = load(|| ConfigLoader::new().load());
        let config = &loaded.config;
        assert_eq!(config.memory.namespace, "from_env");
        assert_eq!(
            config.cache.ttl_ms, 250,
            "the file still sets what env does not"
        );
        assert_eq!(config.backend_of(Kind::Artifacts), BackendName::Memory);
        assert_eq!(config.redis.pool_size, 7);
        assert_eq!(config.object.options["aws_region"], "eu-west-1");
        assert_eq!(config.object.options["aws_allow_http"], "true");
        assert_eq!(config.object.options["aws_max_retries"], "3");
        assert!(!config.object.fsync);
        let entry = loaded
            .entries()
            .into_iter()
            .find(|e| e.key == "memory.namespace")
            .unwrap();
        assert_eq!(
            entry.source,
            ValueSource::Env {
                name: "STORAGE_MEMORY__NAMESPACE".into()
            }
        );
        Ok(())
    });
}

#[test]
fn explicit_values_override_env() {
    Jail::expect_with(|jail| {
        jail.set_env("STORAGE_MEMORY__NAMESPACE", "from_env");
        jail.set_env("STORAGE_RETRY__MAX_ATTEMPTS", "5");
        let loaded = load(|| {
            ConfigLoader::new()
                .set("memory.namespace", "from_code")
                .load()
        });
        assert_eq!(loaded.config.memory.namespace, "from_code");
        assert_eq!(loaded.config.retry.max_attempts, 5);
        let sources: Vec<(String, ValueSource)> = loaded
            .entries()
            .into_iter()
            .filter(|e| e.key == "memory.namespace" || e.key == "retry.max_attempts")
            .map(|e| (e.key, e.source))
            .collect();
        assert_eq!(
            sources,
            [
                ("memory.namespace".to_owned(), ValueSource::Code),
                (
                    "retry.max_attempts".to_owned(),
                    ValueSource::Env {
                        name: "STORAGE_RETRY__MAX_ATTEMPTS".into()
                    }
                ),
            ]
        );
        Ok(())
    });
}

#[test]
fn bad_env_value_names_key_variable_and_expectation() {
    Jail::expect_with(|jail| {
        jail.set_env("STORAGE_CACHE__TTL_MS", "soon");
        let err = ConfigLoader::new().load().unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(text.contains("`cache.ttl_ms`"), "{text}");
        assert!(
            text.contains("environment variable STORAGE_CACHE__TTL_MS"),
            "{text}"
        );
        assert!(text.contains("expected u64"), "{text}");
        Ok(())
    });
}

#[test]
fn bad_file_value_names_file_and_key() {
    Jail::expect_with(|jail| {
        jail.create_file("storage.toml", "[retry]\nmax_attempts = \"many\"\n")?;
        let text = ConfigLoader::new().load().unwrap_err().to_string();
        assert!(text.contains("`retry.max_attempts`"), "{text}");
        assert!(text.contains("storage.toml"), "{text}");
        assert!(text.contains("expected u32"), "{text}");

        jail.create_file("storage.toml", "backend = \"mongo\"\n")?;
        let text = ConfigLoader::new().load().unwrap_err().to_string();
        assert!(
            text.contains("`backend`") && text.contains("storage.toml"),
            "{text}"
        );
        assert!(
            text.contains("memory") && text.contains("postgres"),
            "{text}"
        );

        jail.create_file("storage.toml", "[cache]\nttl = 5\n")?;
        let text = ConfigLoader::new().load().unwrap_err().to_string();
        assert!(
            text.contains("unknown field") && text.contains("ttl"),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn invalid_value_names_its_source() {
    Jail::expect_with(|jail| {
        jail.set_env("STORAGE_BACKEND", "memory");
        jail.set_env("STORAGE_MEMORY__NAMESPACE", "Not-Valid");
        let text = ConfigLoader::new().load().unwrap_err().to_string();
        assert!(text.contains("`memory.namespace`"), "{text}");
        assert!(text.contains("STORAGE_MEMORY__NAMESPACE"), "{text}");

        jail.set_env("STORAGE_MEMORY__NAMESPACE", "fine");
        jail.set_env("STORAGE_BACKEND", "redis");
        jail.create_file("storage.toml", "[redis]\nurl = \"http://x\"\n")?;
        let text = ConfigLoader::new().load().unwrap_err().to_string();
        assert!(text.contains("`redis.url`"), "{text}");
        assert!(text.contains("storage.toml"), "{text}");

        let err = ConfigLoader::new()
            .set("cache.max_entries", 0)
            .load()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`cache.max_entries` from a value set in code"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn secrets_never_show() {
    Jail::expect_with(|jail| {
        jail.set_env("STORAGE_REDIS__URL", "redis://app:hunter2@127.0.0.1:6379");
        jail.set_env("STORAGE_POSTGRES__PASSWORD", "pgs3cret");
        jail.set_env(
            "STORAGE_OBJECT__OPTIONS__AWS_SECRET_ACCESS_KEY",
            "awsS3cretKey",
        );
        let loaded = load(|| ConfigLoader::new().load());
        let debug = format!("{:?}", loaded.config);
        let shown = serde_json::to_string(&loaded.entries()).unwrap();
        for secret in ["hunter2", "pgs3cret", "awsS3cretKey"] {
            assert!(!debug.contains(secret), "Debug shows {secret}: {debug}");
            assert!(!shown.contains(secret), "entries show {secret}: {shown}");
        }
        assert!(shown.contains("redis://app:***@127.0.0.1:6379"), "{shown}");

        // A wrong value in a secret's key is reported without the value.
        jail.set_env("STORAGE_POSTGRES__PASSWORD", "[\"pgs3cret\"]");
        let err = ConfigLoader::new().load().unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("`postgres.password`"), "{text}");
        assert!(!text.contains("pgs3cret"), "{text}");
        Ok(())
    });
}

#[test]
fn routing_to_a_backend_not_compiled_names_the_feature() {
    // This test binary has every backend feature; the message is what a slimmer build
    // shows, checked through the same path for a backend that is compiled here.
    let mut config = StorageConfig {
        backend: BackendName::Memory,
        ..StorageConfig::default()
    };
    config.routes.checkpoints = Some(BackendName::Redis);
    config.redis.url = "http://x".into();
    let err = Storage::from_config(config).unwrap_err();
    assert!(err.to_string().contains("`redis.url`"), "{err}");
}

/// Every key of the configuration is in docs/configuration.md with its environment
/// variable, and the document lists no key that does not exist.
#[test]
fn documentation_lists_every_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).expect("docs/configuration.md exists");
    let mut documented = std::collections::BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let (Some(key), Some(env)) = (
            cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')),
            cells[2].strip_prefix('`').and_then(|c| c.strip_suffix('`')),
        ) else {
            continue;
        };
        documented.insert(key.to_owned(), env.to_owned());
    }
    let keys = config_keys(&StorageConfig::default());
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    let unknown: Vec<&String> = documented.keys().filter(|k| !keys.contains(k)).collect();
    assert!(missing.is_empty(), "keys missing from the doc: {missing:?}");
    assert!(
        unknown.is_empty(),
        "documented keys that do not exist: {unknown:?}"
    );
    for (key, env) in &documented {
        assert_eq!(env, &env_name(key), "environment variable of {key}");
    }
}

#[test]
fn unknown_env_names_are_listed_with_the_closest_key() {
    use storage::config::unknown_env_names;
    let unknown = unknown_env_names([
        "STORAGE_BAKEND",
        "STORAGE_REDIS_URL",
        "STORAGE_BACKEND",
        "STORAGE_REDIS__URL",
        "STORAGE_OBJECT__OPTIONS__AWS_REGION",
        "STORAGE_CONFIG_FILE",
        "STORAGE_TEST_REDIS_URL",
        "STORAGE_MIGRATE_SCALE",
        "STORAGE_SOMETHING_ELSE_ENTIRELY",
        "HOME",
    ]);
    let found: Vec<(&str, Option<&str>)> = unknown
        .iter()
        .map(|u| (u.name.as_str(), u.suggestion.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            ("STORAGE_BAKEND", Some("STORAGE_BACKEND")),
            ("STORAGE_REDIS_URL", Some("STORAGE_REDIS__URL")),
            ("STORAGE_SOMETHING_ELSE_ENTIRELY", None),
        ]
    );
    assert_eq!(
        unknown[0].to_string(),
        "STORAGE_BAKEND matches no configuration key; did you mean STORAGE_BACKEND?"
    );
    // Every documented variable is a key.
    let every: Vec<String> = config_keys(&StorageConfig::default())
        .iter()
        .map(|key| env_name(key))
        .collect();
    assert_eq!(unknown_env_names(&every), []);
}

/// Retention limits come from every layer like any key: file, then environment, then code;
/// unset by default; 0 is refused naming the key and where it came from.
#[test]
fn retention_limits_come_from_every_layer() {
    Jail::expect_with(|jail| {
        let defaults = load(|| ConfigLoader::new().load()).config.cleanup.retention;
        assert!(defaults
            .kinds()
            .iter()
            .all(|(_, kind)| kind.policy().is_unbounded()));
        jail.create_file(
            "storage.toml",
            "[cleanup.retention.messages]\nkeep_last = 500\nmax_age_secs = 86400\n\
             [cleanup.retention.checkpoints]\nkeep_last = 20\n",
        )?;
        let from_file = load(|| ConfigLoader::new().load()).config.cleanup.retention;
        assert_eq!(from_file.messages.keep_last, Some(500));
        assert_eq!(from_file.messages.max_age_secs, Some(86_400));
        assert_eq!(from_file.checkpoints.keep_last, Some(20));

        jail.set_env("STORAGE_CLEANUP__RETENTION__MESSAGES__KEEP_LAST", "50");
        jail.set_env(
            "STORAGE_CLEANUP__RETENTION__ARTIFACT_VERSIONS__MAX_AGE_SECS",
            "3600",
        );
        let loaded = load(|| {
            ConfigLoader::new()
                .set("cleanup.retention.checkpoints.keep_last", 5)
                .load()
        });
        let retention = &loaded.config.cleanup.retention;
        assert_eq!(retention.messages.keep_last, Some(50), "env over file");
        assert_eq!(
            retention.messages.max_age_secs,
            Some(86_400),
            "file still sets the rest"
        );
        assert_eq!(retention.artifact_versions.max_age_secs, Some(3600));
        assert_eq!(retention.checkpoints.keep_last, Some(5), "code over file");
        let source = loaded
            .entries()
            .into_iter()
            .find(|e| e.key == "cleanup.retention.messages.keep_last")
            .unwrap()
            .source;
        assert_eq!(
            source,
            ValueSource::Env {
                name: "STORAGE_CLEANUP__RETENTION__MESSAGES__KEEP_LAST".into()
            }
        );

        jail.set_env(
            "STORAGE_CLEANUP__RETENTION__CONTEXT_VERSIONS__KEEP_LAST",
            "0",
        );
        let text = ConfigLoader::new().load().unwrap_err().to_string();
        assert!(
            text.contains("`cleanup.retention.context_versions.keep_last`"),
            "{text}"
        );
        assert!(
            text.contains("STORAGE_CLEANUP__RETENTION__CONTEXT_VERSIONS__KEEP_LAST"),
            "{text}"
        );
        Ok(())
    });
}
