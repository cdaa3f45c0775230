//! The page: plain HTML, CSS and JS from `crates/storage-cli/ui/`, compiled into the
//! binary so that `storectl ui` needs no files beside it and no build step.

use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../../ui/index.html");
const APP_JS: &str = include_str!("../../../ui/app.js");
const STYLE_CSS: &str = include_str!("../../../ui/style.css");
const FAVICON_SVG: &str = include_str!("../../../ui/favicon.svg");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// The page itself (every view is drawn by `app.js` from the API's answers).
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// The page's script.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// The page's style sheet.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// The tab's icon (served, rather than inlined as a `data:` URL the policy would refuse).
pub async fn icon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}
