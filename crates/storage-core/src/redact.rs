//! Hiding secrets in what is printed: `Debug`, logs, error messages, `storectl config show`.
//!
//! This module is the one place that decides what a secret is. Every crate of the workspace
//! asks it: [`is_secret_key`] for a named value (a configuration key, an object-store
//! option, a query parameter, a `key=value` pair), [`redact_url`] for a connection string,
//! and [`redact_value`] for a configuration value under its key.
//!
//! The rule: a value whose name says it is a secret is shown as [`REDACTED`] whatever it
//! holds; a connection string keeps its scheme, user, host, port, database and options but
//! loses its password, wherever it is written (URL user info, a `password` query parameter,
//! a libpq `password=` pair, quoted or not).

/// What a hidden secret is shown as.
pub const REDACTED: &str = "***";

/// Words that make a name secret wherever they occur in it, in any case:
/// `password`, `sslpassword`, `aws_secret_access_key`, `aws_session_token`,
/// `azure_client_secret`, `azure_storage_sas_token`, `bearer_token`, `credentials`, ...
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "private",
    "signature",
    "bearer",
    "authorization",
    "service_account",
    "cookie",
];

/// Words that make a name secret when they are one whole part of it (parts are split at
/// `_`, `-`, `.` and spaces): `pwd`, `azure_storage_sas_key`, `sig`, `auth`, `apikey`.
const SECRET_PARTS: &[&str] = &["pwd", "pass", "sas", "sig", "auth", "apikey", "pat"];

/// Whether the value named `key` is a secret and must never be shown.
///
/// `key` may be a dotted configuration key (`object.options.azure_storage_account_key`):
/// only its last part counts. Besides the secret words (`SECRET_WORDS`) anywhere and the whole
/// parts above, a name whose last part is `key` (`azure_storage_account_key`,
/// `google_service_account_key`, `aws_secret_access_key`) is secret, while `*_key_id`
/// (`aws_access_key_id`) and `key_prefix` are not.
///
/// ```
/// use storage_core::redact::is_secret_key;
///
/// for secret in [
///     "password", "postgres.password", "aws_secret_access_key", "AWS_SESSION_TOKEN",
///     "azure_storage_account_key", "azure_storage_sas_token", "azure_client_secret",
///     "google_service_account_key", "google_application_credentials", "bearer_token",
///     "object.options.azure_storage_access_key",
/// ] {
///     assert!(is_secret_key(secret), "{secret}");
/// }
/// for plain in ["aws_access_key_id", "redis.key_prefix", "user", "host", "redis.url"] {
///     assert!(!is_secret_key(plain), "{plain}");
/// }
/// ```
pub fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    let last = last.trim();
    if SECRET_WORDS.iter().any(|word| last.contains(word)) {
        return true;
    }
    let parts: Vec<&str> = last
        .split(['_', '-', ' '])
        .filter(|part| !part.is_empty())
        .collect();
    if parts.iter().any(|part| SECRET_PARTS.contains(part)) {
        return true;
    }
    matches!(parts.last(), Some(&"key") | Some(&"keys"))
}

/// Whether `key` names a connection string that may carry a password inside it (shown
/// through [`redact_url`] rather than hidden whole): `url`, `cluster_urls`, `dsn`,
/// `aws_endpoint`, `proxy`, ...
pub fn is_connection_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    ["url", "dsn", "connection", "endpoint", "proxy"]
        .iter()
        .any(|word| last.contains(word))
}

/// A configuration value as shown to people: the value of a [secret key](is_secret_key)
/// becomes `***` (every string inside it, if it is a list or a map); any other string
/// loses the password a connection string may carry ([`redact_url`]); maps are redacted
/// key by key.
pub fn redact_value(key: &str, value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Null => Value::Null,
        _ if is_secret_key(key) => hide_all(value),
        Value::String(text) => Value::String(redact_url(&text)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| redact_value(key, item))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, item)| {
                    let shown = redact_value(&name, item);
                    (name, shown)
                })
                .collect(),
        ),
        other => other,
    }
}

fn hide_all(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Null => Value::Null,
        Value::Array(items) => Value::Array(items.into_iter().map(hide_all).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, item)| (name, hide_all(item)))
                .collect(),
        ),
        _ => Value::String(REDACTED.into()),
    }
}

/// A named value as shown to people: `***` if [`is_secret_key`] says so, the value
/// through [`redact_url`] if the name says it is a connection string, else the value.
pub fn redact_named(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        REDACTED.to_owned()
    } else if is_connection_key(key) {
        redact_url(value)
    } else {
        value.to_owned()
    }
}

/// A connection string with its password hidden.
///
/// Covers URLs (`scheme://user:password@host/...`, and a lone user info
/// `scheme://secret@host`, which some schemes read as the password, so it is hidden too),
/// secret query parameters (`password`, `aws_secret_access_key`, `sig`, ...), and libpq's
/// `key=value` form with libpq's quoting (`password='a b\'c'`).
///
/// The password of a URL may hold any character, also `/`, `?`, `#` and `@` that a
/// careless URL leaves unescaped: the user info runs to the **last** `@` that is followed
/// by a host (letters, digits, `.`, `-`, `_`, `:`, `[`, `]`, `%`, `,`, possibly empty)
/// and then the path, query, fragment or end. When in doubt, more is hidden, never less.
///
/// ```
/// use storage_core::redact::redact_url;
///
/// assert_eq!(redact_url("redis://:hunter2@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
/// assert_eq!(redact_url("postgres://app:hunter2@db/agents"), "postgres://app:***@db/agents");
/// assert_eq!(redact_url("postgres://u:p/a#b@db/agents"), "postgres://u:***@db/agents");
/// assert_eq!(redact_url("host=db user=app password=hunter2"), "host=db user=app password=***");
/// assert_eq!(redact_url("host=db password='a b' user=app"), "host=db password=*** user=app");
/// assert_eq!(redact_url("file:///var/lib/agents"), "file:///var/lib/agents");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url_scheme_end(url) else {
        return redact_key_values(url);
    };
    let (scheme, rest) = url.split_at(scheme_end);
    let (authority, tail) = match user_info_end(rest) {
        None => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        }
        Some(at) => {
            let user_info = &rest[..at];
            let after = &rest[at..];
            let host_end = after[1..]
                .find(['/', '?', '#'])
                .map_or(after.len(), |end| end + 1);
            let shown = match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:{REDACTED}"),
                None if user_info.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            };
            (format!("{shown}{}", &after[..host_end]), &after[host_end..])
        }
    };
    format!("{scheme}{authority}{}", redact_query(tail))
}

/// The byte index just past `scheme://`, when `text` starts with a URL scheme.
fn url_scheme_end(text: &str) -> Option<usize> {
    let colon = text.find("://")?;
    let scheme = &text[..colon];
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(colon + 3)
}

/// Where the user info ends (the index of its `@`) in what follows `scheme://`, if there
/// is user info.
fn user_info_end(rest: &str) -> Option<usize> {
    // An empty authority (`file:///path`) has no user info; the path may hold `@`.
    if rest.starts_with('/') {
        return None;
    }
    let plausible_host = |from: usize| {
        let host = &rest[from + 1..];
        let end = host.find(['/', '?', '#']).unwrap_or(host.len());
        host[..end].chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']' | '%' | ',')
        })
    };
    let ats: Vec<usize> = rest.match_indices('@').map(|(at, _)| at).collect();
    ats.iter()
        .rev()
        .copied()
        .find(|&at| plausible_host(at))
        // No `@` is followed by a host: hide everything up to the last one.
        .or_else(|| ats.last().copied())
}

/// Hides the value of every secret query parameter.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(&percent_decode(key)) => {
                format!("{key}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{path}?{query}")
}

/// `%XX` escapes decoded (invalid ones kept), for matching query parameter names.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Hides the value of every secret pair in a libpq-style `key = value` string.
///
/// Follows libpq's rules: pairs are separated by whitespace, spaces may surround `=`, a
/// value is either a run of non-space characters or a single-quoted string, and in both a
/// backslash escapes the next character. Everything else is kept byte for byte. A quote
/// that is never closed hides the rest of the string.
fn redact_key_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        // Skip whitespace.
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        // The key: up to `=` or whitespace.
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &text[key_start..i];
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j == bytes.len() || bytes[j] != b'=' {
            // A word without a value: not a pair; go on after it.
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let value_start = j;
        let mut closed = true;
        if j < bytes.len() && bytes[j] == b'\'' {
            j += 1;
            closed = false;
            while j < bytes.len() {
                match bytes[j] {
                    b'\\' => j += 2,
                    b'\'' => {
                        j += 1;
                        closed = true;
                        break;
                    }
                    _ => j += 1,
                }
            }
        } else {
            while j < bytes.len() && !bytes[j].is_ascii_whitespace() {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
        }
        let value_end = j.min(bytes.len());
        if is_secret_key(key) || !closed {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_end;
        }
        i = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_every_form_of_password() {
        let cases = [
            ("redis://pw@h:1", "redis://***@h:1"),
            ("redis://user:pw@h:1", "redis://user:***@h:1"),
            ("rediss://u:p@w@h/0", "rediss://u:***@h/0"),
            ("postgres://u:p/a#b@host/db", "postgres://u:***@host/db"),
            (
                "postgres://u:p?x@host:5432/db",
                "postgres://u:***@host:5432/db",
            ),
            ("postgres://u:p@/x@host/db", "postgres://u:***@host/db"),
            (
                "postgres://u:p w@/db?host=/run",
                "postgres://u:***@/db?host=/run",
            ),
            (
                "postgres://h/db?user=a&password=pw",
                "postgres://h/db?user=a&password=***",
            ),
            (
                "postgres://u:pw@h:5432/db?sslmode=require",
                "postgres://u:***@h:5432/db?sslmode=require",
            ),
            (
                "s3://bucket/prefix?secret_access_key=abc",
                "s3://bucket/prefix?secret_access_key=***",
            ),
            (
                "s3://b?aws_access_key_id=id&aws_secret_access_key=k&aws_session_token=t",
                "s3://b?aws_access_key_id=id&aws_secret_access_key=***&aws_session_token=***",
            ),
            ("az://c/p?sv=1&sig=abc", "az://c/p?sv=1&sig=***"),
            (
                "host=h password=pw dbname=d",
                "host=h password=*** dbname=d",
            ),
            (
                "host=h password='a b' dbname=d",
                "host=h password=*** dbname=d",
            ),
            (
                r"host=h password='a\' b' dbname=d",
                "host=h password=*** dbname=d",
            ),
            (r"password=a\ b user=u", "password=*** user=u"),
            (
                "host=h password = 'x y'  user=u",
                "host=h password = ***  user=u",
            ),
            ("host=h password='unterminated x", "host=h password=***"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://@h", "redis://@h"),
            ("memory://", "memory://"),
            ("file:///data/a@b", "file:///data/a@b"),
            ("plain text, no secret", "plain text, no secret"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }

    #[test]
    fn secret_names() {
        for secret in [
            "password",
            "sslpassword",
            "aws_secret_access_key",
            "aws_session_token",
            "aws_token",
            "azure_storage_account_key",
            "azure_storage_access_key",
            "azure_storage_master_key",
            "azure_storage_sas_key",
            "azure_storage_sas_token",
            "azure_storage_token",
            "azure_client_secret",
            "azure_federated_token_file",
            "google_service_account_key",
            "google_service_account",
            "google_application_credentials",
            "bearer_token",
            "x.y.PASSWORD",
        ] {
            assert!(is_secret_key(secret), "{secret}");
        }
        for plain in [
            "aws_access_key_id",
            "azure_storage_account_name",
            "aws_region",
            "aws_endpoint",
            "redis.key_prefix",
            "redis.url",
            "namespace",
            "passes",
        ] {
            assert!(!is_secret_key(plain), "{plain}");
        }
    }

    #[test]
    fn values_by_key() {
        use serde_json::json;
        assert_eq!(redact_value("postgres.password", json!("x")), json!("***"));
        assert_eq!(
            redact_value("redis.url", json!("redis://:pw@h:1")),
            json!("redis://:***@h:1")
        );
        assert_eq!(
            redact_value(
                "object.options",
                json!({"azure_storage_account_key": "k", "aws_region": "r"})
            ),
            json!({"azure_storage_account_key": "***", "aws_region": "r"})
        );
        assert_eq!(redact_value("x.password", json!(null)), json!(null));
        assert_eq!(
            redact_named("aws_endpoint", "http://minio:pw@127.0.0.1:9000"),
            "http://minio:***@127.0.0.1:9000"
        );
        assert_eq!(redact_named("aws_region", "us-east-1"), "us-east-1");
        assert_eq!(redact_named("azure_storage_account_key", "k"), "***");
    }
}
