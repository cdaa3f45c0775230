//! Property: whatever characters a password holds, `redact_url` never shows it, in a URL's
//! user info (raw or percent-encoded), in a query parameter, or in a libpq `key=value`
//! string (quoted or with backslash escapes).

use proptest::prelude::*;
use storage_core::redact::redact_url;

/// Passwords of the characters URLs and connection strings trip on, ASCII and not.
pub fn password() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '/', '#', '?', '@', ':', '\'', '"', ' ', '%', '\\', '&', '=', '+', 'é', '漢', '🙂',
    ]);
    let plain = prop::char::range('a', 'z');
    prop::collection::vec(prop_oneof![special, plain], 6..24)
        .prop_map(|chars| format!("Zq{}", chars.into_iter().collect::<String>()))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn libpq_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn libpq_unquoted(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, ' ' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

proptest! {
    #[test]
    fn redact_url_never_shows_the_password(pw in password()) {
        let encoded = percent_encode(&pw);
        let mut inputs = Vec::new();
        for scheme in ["postgres", "postgresql", "redis", "rediss"] {
            inputs.push(format!("{scheme}://app:{pw}@db.example:5432/agents?sslmode=disable"));
            inputs.push(format!("{scheme}://app:{pw}@db.example/agents#frag"));
            inputs.push(format!("{scheme}://app:{pw}@/agents?host=/run/pg"));
            inputs.push(format!("{scheme}://app:{encoded}@db.example:5432/agents"));
            inputs.push(format!("{scheme}://{encoded}@db.example:5432"));
            inputs.push(format!("{scheme}://db.example/agents?user=app&password={encoded}"));
        }
        inputs.push(format!("host=db user=app password={} dbname=x", libpq_quoted(&pw)));
        inputs.push(format!("host=db password = {} user=app", libpq_quoted(&pw)));
        inputs.push(format!("password={} host=db", libpq_unquoted(&pw)));
        for input in inputs {
            let shown = redact_url(&input);
            prop_assert!(!shown.contains(&pw), "{input} -> {shown}");
            prop_assert!(!shown.contains(&encoded), "{input} -> {shown}");
        }
    }
}
