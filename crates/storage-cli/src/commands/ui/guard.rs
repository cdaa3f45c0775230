//! The rules every request of the inspector passes, and the headers every response gets.
//!
//! - `GET` only: anything else is 405, so no request can change stored data.
//! - On a loopback address the `Host` header must name a loopback host: a web page of
//!   another site cannot read the API by pointing its own domain name at 127.0.0.1
//!   (DNS rebinding).
//! - With a token, every request carries it: `Authorization: Bearer`, `?token=`, or the
//!   cookie set after a `?token=` request. It is compared in constant time, never logged.
//! - Every response forbids scripts from elsewhere, inline scripts, plugins, framing and
//!   content sniffing, and is not cached.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::api::ApiError;
use super::Inspector;

/// The cookie that keeps the token for the page's own requests (scripts, downloads).
const TOKEN_COOKIE: &str = "storectl_ui_token";

/// The policy of every response: scripts and styles from this server only, no inline
/// script, no plugins, no framing, no `<base>` redirection.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Who may ask: a token, if one is set, and whether the server is on a loopback address.
pub struct Access {
    token: Option<String>,
    loopback_only: bool,
}

impl std::fmt::Debug for Access {
    /// Without the token: a debug print must not disclose it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("loopback_only", &self.loopback_only)
            .finish()
    }
}

impl Access {
    pub fn new(token: Option<String>, loopback_only: bool) -> Self {
        Access {
            token,
            loopback_only,
        }
    }
}

/// How a request proved it knows the token.
#[derive(Debug, PartialEq, Eq)]
enum Proof {
    /// No token is set.
    NotNeeded,
    /// The header or the cookie.
    Kept,
    /// `?token=`: the response sets the cookie, so the page's further requests carry it.
    Query,
}

/// Middleware: refuses what the rules above refuse, and sets the security headers on
/// every response, refusals included.
pub async fn check(
    State(inspector): State<Arc<Inspector>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = match admit(&inspector.access, &request) {
        Err(refusal) => refusal.into_response(),
        Ok(proof) => {
            let set_cookie = proof == Proof::Query;
            let mut response = next.run(request).await;
            if let (true, Some(token)) = (set_cookie, &inspector.access.token) {
                // The token is URL-safe (checked at start), hence a valid cookie value.
                let cookie = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                }
            }
            response
        }
    };
    secure_headers(response.headers_mut());
    response
}

fn admit(access: &Access, request: &Request) -> Result<Proof, ApiError> {
    if request.method() != Method::GET {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the inspector is read-only: only GET is served",
        ));
    }
    if access.loopback_only && !host_is_loopback(request.headers()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            "the Host header names no loopback host: open the inspector as \
             http://127.0.0.1:PORT/ or http://localhost:PORT/",
        ));
    }
    let Some(token) = &access.token else {
        return Ok(Proof::NotNeeded);
    };
    let headers = request.headers();
    if bearer(headers).is_some_and(|given| same(given, token))
        || cookie(headers).is_some_and(|given| same(given, token))
    {
        return Ok(Proof::Kept);
    }
    if query_token(request.uri()).is_some_and(|given| same(&given, token)) {
        return Ok(Proof::Query);
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a token is required: send `Authorization: Bearer TOKEN`, or open the page once \
         as /?token=TOKEN",
    ))
}

/// Equal in constant time over the bytes (the lengths are not secret).
fn same(given: &str, token: &str) -> bool {
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == TOKEN_COOKIE).then_some(value)
        })
}

/// `?token=`, decoded as axum's `Query` decodes it; other parameters are the handler's.
fn query_token(uri: &Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct TokenParam {
        token: Option<String>,
    }
    Query::<TokenParam>::try_from_uri(uri).ok()?.0.token
}

/// Whether the `Host` header names `localhost` (or a name under it) or a loopback address.
fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn secure_headers(headers: &mut HeaderMap) {
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn loopback_hosts_are_told_from_others() {
        for ok in [
            "127.0.0.1:8737",
            "127.0.0.1",
            "localhost:1",
            "LOCALHOST",
            "app.localhost:9",
            "[::1]:8737",
        ] {
            assert!(host_is_loopback(&host(ok)), "{ok}");
        }
        for refused in [
            "evil.example:8737",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "10.0.0.1:80",
        ] {
            assert!(!host_is_loopback(&host(refused)), "{refused}");
        }
        assert!(!host_is_loopback(&HeaderMap::new()));
    }

    #[test]
    fn the_token_is_read_from_header_cookie_or_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; storectl_ui_token=xyz"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        assert_eq!(cookie(&headers), Some("xyz"));
        let uri = |text: &str| text.parse::<Uri>().unwrap();
        assert_eq!(query_token(&uri("/?x=1&token=t-1")), Some("t-1".to_owned()));
        assert_eq!(query_token(&uri("/api/info?x=1")), None);
        assert_eq!(query_token(&uri("/")), None);
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
    }

    #[test]
    fn the_debug_print_hides_the_token() {
        let access = Access::new(Some("secret-secret-secret".into()), true);
        assert!(!format!("{access:?}").contains("secret"));
    }
}
