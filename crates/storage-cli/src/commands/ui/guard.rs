//! The rules every request of the inspector passes, and the headers every response gets.
//!
//! - `GET` only: anything else is 405, so no request can change stored data.
//! - On a loopback address the `Host` header must name a loopback host: a web page of
//!   another site cannot read the API by pointing its own domain name at 127.0.0.1
//!   (DNS rebinding).
//! - With a token, every request proves it knows it: `Authorization: Bearer TOKEN`, or
//!   the session cookie. `/?token=TOKEN` (on `/` only) answers with a redirect to `/` that
//!   sets the cookie, so the token leaves the address bar at once. The cookie is named
//!   after the port (cookies are not told apart by port, so another local service must
//!   not receive it under a shared name) and holds a digest of the token and a salt drawn
//!   at start, never the token itself. Comparisons are in constant time; nothing is logged.
//! - Every response forbids scripts from elsewhere, inline scripts, plugins, framing and
//!   content sniffing, and is not cached.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ApiError;
use super::Inspector;

/// The policy of every response: scripts and styles from this server only, no inline
/// script, no plugins, no framing, no `<base>` redirection.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Who may ask: a token, if one is set, and whether the server is on a loopback address.
pub struct Access {
    secret: Option<Secret>,
    loopback_only: bool,
}

/// The token, and the session cookie that stands for it.
struct Secret {
    token: String,
    /// `storectl_ui_PORT`.
    cookie_name: String,
    /// Hex SHA-256 of a random salt (drawn at start) and the token: the browser never
    /// holds the token itself, and a cookie from an earlier run is worthless.
    cookie_value: String,
}

impl std::fmt::Debug for Access {
    /// Without the token or the cookie: a debug print must not disclose them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.secret.as_ref().map(|_| "***"))
            .field("loopback_only", &self.loopback_only)
            .finish()
    }
}

impl Access {
    /// The rules of a server listening on `port`: with `token`, every request must prove
    /// it knows it; with `loopback_only`, the `Host` header must name a loopback host.
    pub fn new(token: Option<String>, port: u16, loopback_only: bool) -> Self {
        let secret = token.map(|token| {
            let salt = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
            let mut digest = Sha256::new();
            for part in salt {
                digest.update(part.as_bytes());
            }
            digest.update(token.as_bytes());
            Secret {
                token,
                cookie_name: format!("storectl_ui_{port}"),
                cookie_value: hex::encode(digest.finalize()),
            }
        });
        Access {
            secret,
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
    /// `/?token=`: answered by a redirect to `/` that sets the cookie.
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
        Ok(Proof::Query) => login(&inspector.access),
        Ok(Proof::NotNeeded | Proof::Kept) => next.run(request).await,
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
    let Some(secret) = &access.secret else {
        return Ok(Proof::NotNeeded);
    };
    let headers = request.headers();
    if bearer(headers).is_some_and(|given| same(given, &secret.token))
        || cookies(headers, &secret.cookie_name).any(|given| same(given, &secret.cookie_value))
    {
        return Ok(Proof::Kept);
    }
    if request.uri().path() == "/"
        && query_token(request.uri()).is_some_and(|given| same(&given, &secret.token))
    {
        return Ok(Proof::Query);
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a token is required: send `Authorization: Bearer TOKEN`, or open the page once \
         as /?token=TOKEN",
    ))
}

/// The answer to `/?token=`: `303 See Other` to `/` (the browser keeps the `#` fragment)
/// with the session cookie, so the token leaves the address bar and the history at once.
fn login(access: &Access) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Some(secret) = &access.secret {
        // Plain HTTP: no `Secure` (a TLS proxy in front would add nothing the browser sees).
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            secret.cookie_name, secret.cookie_value
        );
        // A name of ASCII letters, digits and `_`, a value of hex digits: always valid.
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.insert(header::SET_COOKIE, value);
        }
    }
    response
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

/// The value of every cookie called `wanted` (a browser may send several of one name, of
/// different paths or domains: each is tried).
fn cookies<'a>(headers: &'a HeaderMap, wanted: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == wanted).then_some(value.trim())
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
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=b; storectl_ui_8737=xyz; storectl_ui_1=no"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("storectl_ui_8737=uvw"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        let found: Vec<&str> = cookies(&headers, "storectl_ui_8737").collect();
        assert_eq!(found, ["xyz", "uvw"]);
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
        let access = Access::new(Some("secret-secret-secret".into()), 8737, true);
        let printed = format!("{access:?}");
        assert!(!printed.contains("secret"), "{printed}");
        let cookie = &access.secret.as_ref().unwrap().cookie_value;
        assert!(!printed.contains(cookie.as_str()), "{printed}");
    }

    #[test]
    fn the_cookie_is_named_after_the_port_and_is_no_token() {
        let token = "secret-secret-secret";
        let first = Access::new(Some(token.into()), 8737, true);
        let again = Access::new(Some(token.into()), 8737, true);
        let (a, b) = (first.secret.unwrap(), again.secret.unwrap());
        assert_eq!(a.cookie_name, "storectl_ui_8737");
        assert!(!a.cookie_value.contains(token));
        assert_eq!(a.cookie_value.len(), 64);
        assert_ne!(a.cookie_value, b.cookie_value, "a fresh salt each start");
    }

    fn request(uri: &str, headers: &[(header::HeaderName, &str)]) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        *request.uri_mut() = uri.parse().unwrap();
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_static("127.0.0.1:8737"));
        for (name, value) in headers {
            request
                .headers_mut()
                .append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        request
    }

    #[test]
    fn the_query_token_is_taken_on_the_page_only_and_any_matching_cookie_admits() {
        let token = "secret-secret-secret";
        let access = Access::new(Some(token.into()), 8737, true);
        let cookie = access.secret.as_ref().unwrap().cookie_value.clone();
        let query = format!("/?token={token}");
        assert_eq!(
            admit(&access, &request(&query, &[])).ok(),
            Some(Proof::Query)
        );
        let elsewhere = format!("/api/info?token={token}");
        assert!(admit(&access, &request(&elsewhere, &[])).is_err());
        let stale = format!("storectl_ui_8737=0000; storectl_ui_8737={cookie}");
        assert_eq!(
            admit(&access, &request("/api/info", &[(header::COOKIE, &stale)])).ok(),
            Some(Proof::Kept)
        );
        let raw_token = format!("storectl_ui_8737={token}");
        assert!(admit(&access, &request("/", &[(header::COOKIE, &raw_token)])).is_err());
        let other_port = format!("storectl_ui_8738={cookie}");
        assert!(admit(&access, &request("/", &[(header::COOKIE, &other_port)])).is_err());
        let redirect = login(&access);
        assert_eq!(redirect.status(), StatusCode::SEE_OTHER);
        assert_eq!(redirect.headers()[header::LOCATION], "/");
        let set = redirect.headers()[header::SET_COOKIE].to_str().unwrap();
        assert_eq!(
            set,
            format!("storectl_ui_8737={cookie}; HttpOnly; SameSite=Strict; Path=/")
        );
    }
}
