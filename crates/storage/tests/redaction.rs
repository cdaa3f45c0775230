//! Property: a password with any characters (`/ # ? @ : ' "`, space, `%`, `\`, non-ASCII)
//! never shows in `Debug` of a backend's settings, of `StorageConfig` or of `Storage`, in
//! what `storectl config show` prints (`LoadedConfig::entries`, as a table cell and as
//! JSON), nor in the errors of a bad URL or a failed connection.

use std::collections::BTreeMap;

use proptest::prelude::*;
use storage::config::{BackendName, ConfigLoader, RoutesConfig};
use storage::{Storage, StorageConfig};
use storage_core::StorageBackend;
use storage_object::ObjectConfig;
use storage_postgres::PostgresConfig;
use storage_redis::RedisConfig;
use storage_testkit::servers::tls::percent_encode;

/// Passwords of the characters URLs and connection strings trip on, ASCII and not.
fn password() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '/', '#', '?', '@', ':', '\'', '"', ' ', '%', '\\', '&', '=', '+', 'é', '漢', '🙂',
    ]);
    let plain = prop::char::range('a', 'z');
    prop::collection::vec(prop_oneof![special, plain], 6..24)
        .prop_map(|chars| format!("Zq{}", chars.into_iter().collect::<String>()))
}

fn libpq_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Every object-store option that carries a credential.
const SECRET_OPTIONS: [&str; 12] = [
    "aws_secret_access_key",
    "aws_session_token",
    "aws_token",
    "azure_storage_account_key",
    "azure_storage_access_key",
    "azure_storage_sas_key",
    "azure_storage_sas_token",
    "azure_storage_token",
    "azure_client_secret",
    "google_service_account_key",
    "google_application_credentials",
    "bearer_token",
];

/// The settings under test, each carrying the password somewhere.
fn settings(pw: &str, raw_urls: bool) -> (PostgresConfig, RedisConfig, ObjectConfig) {
    let secret = if raw_urls {
        pw.to_owned()
    } else {
        percent_encode(pw)
    };
    let postgres = PostgresConfig {
        password: Some(pw.to_owned()),
        ..PostgresConfig::from_url(format!("postgres://app:{secret}@127.0.0.1:5432/agents"))
    };
    let mut redis = RedisConfig::new(format!("redis://app:{secret}@127.0.0.1:6379/0"));
    redis.cluster_urls = vec![format!("rediss://:{secret}@127.0.0.1:7000")];
    let mut object = ObjectConfig::new("s3://bucket/prefix")
        .with_option("aws_access_key_id", "AKIDVISIBLE")
        .with_option("aws_region", "us-east-1");
    for key in SECRET_OPTIONS {
        object = object.with_option(key, pw);
    }
    (postgres, redis, object)
}

fn assert_hidden(pw: &str, shown: &str, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(!shown.contains(pw), "{what} shows the password: {shown}");
    let encoded = percent_encode(pw);
    prop_assert!(
        !shown.contains(&encoded),
        "{what} shows the encoded password: {shown}"
    );
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn debug_of_every_config_and_of_storage_hides_the_password(
        pw in password(),
        raw in any::<bool>(),
    ) {
        let (postgres, redis, object) = settings(&pw, raw);
        assert_hidden(&pw, &format!("{postgres:?}"), "Debug of PostgresConfig")?;
        assert_hidden(&pw, &format!("{redis:?}"), "Debug of RedisConfig")?;
        assert_hidden(&pw, &format!("{object:?}"), "Debug of ObjectConfig")?;
        let shown = format!("{object:?}");
        prop_assert!(shown.contains("AKIDVISIBLE"), "{}", shown);
        let kv = PostgresConfig::from_url(format!(
            "host=127.0.0.1 user=app password={} dbname=agents",
            libpq_quoted(&pw)
        ));
        assert_hidden(&pw, &format!("{kv:?}"), "Debug of a key=value PostgresConfig")?;

        let config = StorageConfig {
            backend: BackendName::Memory,
            routes: RoutesConfig {
                sessions: Some(BackendName::Redis),
                checkpoints: Some(BackendName::Postgres),
                artifacts: Some(BackendName::Object),
                ..RoutesConfig::default()
            },
            postgres: postgres.clone(),
            redis: redis.clone(),
            object: object.clone(),
            ..StorageConfig::default()
        };
        assert_hidden(&pw, &format!("{config:?}"), "Debug of StorageConfig")?;

        // The facade and its backends (pools built, nothing connected). A URL the driver
        // cannot parse is an error instead, which must hide the password as well.
        let rt = runtime();
        let _entered = rt.enter();
        match Storage::from_config(config) {
            Ok(storage) => assert_hidden(&pw, &format!("{storage:?}"), "Debug of Storage")?,
            Err(err) => assert_hidden(&pw, &format!("{err} {err:?}"), "Storage::from_config error")?,
        }
        for bad in [
            RedisConfig::new(format!("http://app:{pw}@127.0.0.1/")).validate(),
            ObjectConfig::new(format!("ftp://app:{pw}@127.0.0.1/")).validate(),
            storage_postgres::PostgresBackend::new(PostgresConfig::from_url(format!(
                "postgres://app:{pw}@127.0.0.1:notaport/agents"
            )))
            .map(|_| ()),
            storage_redis::RedisBackend::new(RedisConfig::new(format!(
                "redis://app:{pw}@127.0.0.1:notaport/0"
            )))
            .map(|_| ()),
        ] {
            if let Err(err) = bad {
                assert_hidden(&pw, &format!("{err} {err:?}"), "a bad URL's error")?;
            }
        }
    }

    #[test]
    fn config_show_hides_the_password(pw in password(), raw in any::<bool>()) {
        let secret = if raw { pw.clone() } else { percent_encode(&pw) };
        let options: BTreeMap<&str, &str> = SECRET_OPTIONS
            .iter()
            .map(|key| (*key, pw.as_str()))
            .chain([("aws_region", "us-east-1")])
            .collect();
        let loader = ConfigLoader::new()
            .without_env()
            .set("postgres.url", format!("postgres://app:{secret}@127.0.0.1:5432/agents"))
            .set("postgres.password", &pw)
            .set("redis.url", format!("redis://:{secret}@127.0.0.1:6379/0"))
            .set("redis.cluster_urls", vec![format!("rediss://app:{secret}@127.0.0.1:7000")])
            .set("object.options", options);
        assert_hidden(&pw, &format!("{loader:?}"), "Debug of ConfigLoader")?;
        let loaded = loader.load();
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(err) => {
                return assert_hidden(&pw, &format!("{err} {err:?}"), "ConfigLoader::load error");
            }
        };
        let entries = loaded.entries();
        // What storectl prints: the JSON document, and each table cell.
        let json = serde_json::to_string(&entries).unwrap();
        assert_hidden(&pw, &json, "config show --json")?;
        for entry in &entries {
            let cell = match &entry.value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            assert_hidden(&pw, &cell, &format!("config show, key {}", entry.key))?;
        }
        for key in SECRET_OPTIONS {
            let key = format!("object.options.{key}");
            let entry = entries.iter().find(|entry| entry.key == key);
            prop_assert!(
                entry.is_some_and(|entry| entry.value == serde_json::json!("***")),
                "{key}: {entry:?}"
            );
        }
        assert_hidden(&pw, &format!("{loaded:?}"), "Debug of LoadedConfig")?;
    }
}

/// A password passed in a wrongly typed value (a figment error) is not echoed.
#[test]
fn a_badly_typed_secret_is_not_echoed() {
    let pw = "Zq/#?@:' \"%\\é漢";
    let err = ConfigLoader::new()
        .without_env()
        .set("postgres.port", pw)
        .set("postgres.password", vec![pw])
        .load()
        .unwrap_err();
    assert!(!err.to_string().contains(pw), "{err}");
}

/// Failed connections name the server, never the password (PostgreSQL and Redis on a
/// port nothing listens on).
#[test]
fn failed_connections_hide_the_password() {
    let rt = runtime();
    let pw = "Zq/a#b?c@d:e'f\"g h%i\\jé漢";
    let encoded = percent_encode(pw);
    let port = storage_testkit::servers::free_port();
    rt.block_on(async {
        let postgres = storage_postgres::PostgresBackend::new(PostgresConfig {
            host: "127.0.0.1".into(),
            port,
            password: Some(pw.into()),
            ..PostgresConfig::default()
        })
        .unwrap();
        let err = postgres.initialize().await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
        assert!(!shown.contains(pw) && !shown.contains(&encoded), "{shown}");

        let postgres = storage_postgres::PostgresBackend::new(PostgresConfig::from_url(format!(
            "postgres://app:{encoded}@127.0.0.1:{port}/agents"
        )))
        .unwrap();
        let err = postgres.initialize().await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(pw) && !shown.contains(&encoded), "{shown}");

        let redis = storage_redis::RedisBackend::new(RedisConfig::new(format!(
            "redis://app:{encoded}@127.0.0.1:{port}/0"
        )))
        .unwrap();
        let err = redis.initialize().await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
        assert!(!shown.contains(pw) && !shown.contains(&encoded), "{shown}");
    });
}
