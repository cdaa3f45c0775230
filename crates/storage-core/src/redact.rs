//! Hiding secrets in what is printed: `Debug`, logs, error messages, `storectl config show`.

/// What a hidden secret is shown as.
pub const REDACTED: &str = "***";

/// A connection string with its password hidden.
///
/// Covers URLs (`scheme://user:password@host/...`, and a lone user info
/// `scheme://secret@host`, which some schemes read as the password, so it is hidden too),
/// a `password` query parameter, and libpq's `key=value` form (`password=...`).
///
/// ```
/// use storage_core::redact::redact_url;
///
/// assert_eq!(redact_url("redis://:hunter2@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
/// assert_eq!(redact_url("postgres://app:hunter2@db/agents"), "postgres://app:***@db/agents");
/// assert_eq!(redact_url("host=db user=app password=hunter2"), "host=db user=app password=***");
/// assert_eq!(redact_url("file:///var/lib/agents"), "file:///var/lib/agents");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_key_values(url);
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        None => authority.to_owned(),
        Some(at) => {
            let (user_info, host) = authority.split_at(at);
            match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:{REDACTED}{host}"),
                None if user_info.is_empty() => authority.to_owned(),
                None => format!("{REDACTED}{host}"),
            }
        }
    };
    format!("{scheme}{authority}{}", redact_query(tail))
}

/// Hides the value of every `password` query parameter.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{path}?{query}")
}

/// Hides the value of every `password=` pair in a whitespace-separated string.
fn redact_key_values(text: &str) -> String {
    text.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_secret_key(key: &str) -> bool {
    [
        "password",
        "passwd",
        "secret",
        "token",
        "access_key",
        "secret_access_key",
    ]
    .iter()
    // Provider-prefixed names too: `aws_secret_access_key`, `aws_session_token`.
    .any(|secret| {
        let key = key.to_ascii_lowercase();
        key == *secret || key.ends_with(&format!("_{secret}"))
    })
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
            (
                "host=h password=pw dbname=d",
                "host=h password=*** dbname=d",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://@h", "redis://@h"),
            ("memory://", "memory://"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }
}
