//! `storectl ui`: a read-only web inspector of the configured storage.
//!
//! An HTTP server (axum) on a loopback address by default, answering `GET` only: a page
//! (plain HTML, CSS and JS embedded in the binary, [`assets`]) and the JSON endpoints under
//! `/api/` that it fetches ([`api`]), each a read operation of the facade. The security
//! rules every request passes are in [`guard`].

mod api;
mod assets;
mod guard;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use storage::{Storage, StorageConfig};
use storage_core::StorageBackend;

use crate::cli::{UiArgs, UI_TOKEN_ENV};
use crate::failure::{Failure, Outcome};
use crate::output::Output;

use guard::Access;

/// The shortest token accepted: a guessable token on a network port is no protection.
const MIN_TOKEN_LEN: usize = 16;

/// What the handlers share: the opened storage and who may ask it.
#[derive(Debug)]
struct Inspector {
    storage: Storage,
    access: Access,
}

/// Serves the inspector until Ctrl-C (or SIGTERM), then closes the storage.
pub async fn run(config: StorageConfig, args: &UiArgs, out: &Output) -> Outcome {
    let token = checked_token(args)?;
    if !args.bind.is_loopback() {
        out.warn(
            "plain_http",
            "the inspector speaks plain HTTP: the token and the data cross the network \
             unencrypted; put a TLS proxy in front of it",
            serde_json::json!({}),
        );
    }
    let storage = crate::open(config).await?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .map_err(|err| {
            Failure::BadInput(format!(
                "cannot listen on {}: {err}",
                SocketAddr::new(args.bind, args.port)
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|err| Failure::Failed(format!("cannot read the listening address: {err}")))?;
    let url = format!("http://{address}/");
    // The first line of stdout, for people and for scripts that started it with --port 0.
    // The token is never printed: whoever set it knows it.
    if out.json() {
        println!(
            "{}",
            serde_json::json!({"url": url, "token_required": token.is_some()})
        );
    } else {
        println!("{url}");
        if token.is_some() {
            println!("token required: open {url}?token=<your token> once");
        }
        println!("read-only inspector; Ctrl-C stops it");
    }
    let inspector = Arc::new(Inspector {
        storage,
        access: Access::new(token, address.port(), args.bind.is_loopback()),
    });
    let served = axum::serve(listener, router(inspector.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    let _ = inspector.storage.close().await;
    served.map_err(|err| Failure::Failed(format!("the inspector's server failed: {err}")))
}

/// The token, after refusing a listening address that would expose the data without one.
fn checked_token(args: &UiArgs) -> Result<Option<String>, Failure> {
    let token = args.token.clone();
    if let Some(token) = &token {
        validate_token(token)?;
    }
    check_bind(args.bind, args.allow_remote, token.is_some())?;
    Ok(token)
}

/// Loopback addresses are served as they are; any other only with `--allow-remote` and a
/// token, as the inspector shows every stored conversation to whoever reaches it.
fn check_bind(bind: IpAddr, allow_remote: bool, has_token: bool) -> Result<(), Failure> {
    if bind.is_loopback() {
        return Ok(());
    }
    if !allow_remote {
        return Err(Failure::BadInput(format!(
            "refusing to listen on {bind}: not a loopback address, and the inspector shows \
             all stored data to whoever reaches it. Serve another host with --allow-remote \
             and a token (--token or {UI_TOKEN_ENV})"
        )));
    }
    if !has_token {
        return Err(Failure::BadInput(format!(
            "--allow-remote needs a token (--token or {UI_TOKEN_ENV}): without one anybody \
             who reaches {bind} reads all stored data"
        )));
    }
    Ok(())
}

/// Long enough to resist guessing, and of URL-safe characters only, so that `?token=` and
/// the cookie carry it unchanged.
fn validate_token(token: &str) -> Result<(), Failure> {
    let url_safe = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if token.len() < MIN_TOKEN_LEN || !url_safe {
        return Err(Failure::BadInput(format!(
            "the token must be at least {MIN_TOKEN_LEN} characters of A-Z, a-z, 0-9, \
             '-', '.', '_' or '~' (e.g. from `openssl rand -hex 32`)"
        )));
    }
    Ok(())
}

fn router(inspector: Arc<Inspector>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/style.css", get(assets::style))
        .route("/favicon.svg", get(assets::icon))
        .route("/api/info", get(api::info))
        .route("/api/sessions", get(api::sessions))
        .route("/api/session", get(api::session))
        .route("/api/messages", get(api::messages))
        .route("/api/context", get(api::context))
        .route("/api/checkpoints", get(api::checkpoints))
        .route("/api/checkpoint", get(api::checkpoint))
        .route("/api/artifacts", get(api::artifacts))
        .route("/api/artifact", get(api::artifact_content))
        .route("/api/health", get(api::health))
        .route("/api/metrics", get(api::metrics))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            inspector.clone(),
            guard::check,
        ))
        .with_state(inspector)
}

/// Ctrl-C, or SIGTERM (how service managers and test harnesses stop a server).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_served_without_allow_remote_and_a_token() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let loopback6: IpAddr = "::1".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(check_bind(loopback, false, false).is_ok());
        assert!(check_bind(loopback6, false, false).is_ok());
        let refused = check_bind(any, false, true).unwrap_err();
        assert_eq!(refused.code(), 2);
        assert!(refused.message().contains("--allow-remote"), "{refused:?}");
        let no_token = check_bind(any, true, false).unwrap_err();
        assert!(no_token.message().contains("needs a token"), "{no_token:?}");
        assert!(check_bind(any, true, true).is_ok());
    }

    #[test]
    fn the_flags_debug_print_hides_the_token() {
        let args = UiArgs {
            port: 1,
            bind: "127.0.0.1".parse().unwrap(),
            allow_remote: false,
            token: Some("secret-secret-secret".into()),
        };
        let printed = format!("{args:?}");
        assert!(
            !printed.contains("secret") && printed.contains("***"),
            "{printed}"
        );
    }

    #[test]
    fn short_or_unsafe_tokens_are_refused() {
        assert!(validate_token("0123456789abcdef").is_ok());
        assert!(validate_token("short").is_err());
        assert!(validate_token("0123456789abcdef;x").is_err());
        assert!(validate_token("0123456789 abcdef").is_err());
    }
}
