//! `storectl ui` (issue 17): the built binary serving a SQLite file and a local directory
//! seeded through the library, with hostile ids and content (markup, script, bidi and
//! zero-width characters).
//!
//! Over raw HTTP: the loopback-only rule, the token, GET only, the `Host` check, the
//! security headers, JSON that carries markup as escaped text, downloads. In a browser:
//! `tests/browser/ui.mjs` drives Debian's Chromium headless through Playwright
//! (`playwright-core`, installed by `npm ci` under the target directory) across sessions,
//! conversation, checkpoint chain, artifact download and health, and checks that no stored
//! script ran. Set `STORECTL_UI_SCREENSHOTS=DIR` (e.g. `docs/images`) to keep the
//! screenshots of the main views there; otherwise they go to a temporary directory.

mod cli_support;
mod ui_support;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use storage::config::BackendName;
use storage::{Storage, StorageConfig};
use storage_core::prelude::*;
use ui_support::{
    browser_test_dir, chromium, encode, http, npm_ci_done, run_with_deadline, workspace_root,
    Lines, Response,
};

/// The namespace the store is seeded in; `storectl --namespace` must find it.
const NAMESPACE: &str = "inspected";

/// A session id that is markup, script and a right-to-left override.
const HOSTILE_ID: &str = "s1<script>window.__pwned='id'</script>\u{202E}exe.txt";
/// How the page (and the CLI) shows it: the override as a visible escape.
const HOSTILE_ID_SHOWN: &str = "s1<script>window.__pwned='id'</script>\\u{202E}exe.txt";
const HOSTILE_METADATA: &str = "<img src=x onerror=\"window.__pwned='metadata'\">\u{200B}";
const HOSTILE_CONTENT: &str = "hello <script>window.__pwned='content'</script> \u{202E}dlrow";
const TOKEN: &str = "test-token-0123456789abcdef";
/// Messages in the hostile session: more than the page's first 50, so "older" pages.
const MESSAGES: u64 = 55;
/// Sessions of the user `bob`: more than a page of 10.
const BOB_SESSIONS: usize = 11;
/// The content of the report's second version (v1: versions count from 0), checked byte
/// for byte after download.
const REPORT_V1: &str = "{\"v\":2,\"note\":\"<b>bold</b>\"}";
/// A thread whose checkpoints' parents form cycles.
const LOOP_THREAD: &str = "loop";
/// A stored HTML page: it must be downloaded, never rendered.
const PAGE_HTML: &str = "<script>window.__pwned='artifact'</script>";
/// The API's page of artifact names (`ARTIFACTS_PAGE` in `commands/ui/api.rs`).
const ARTIFACTS_PAGE: usize = 50;
/// The most checkpoints the API draws (`MAX_CHECKPOINTS` in `commands/ui/api.rs`).
const MAX_CHECKPOINTS: usize = 200;
/// The size of the artifact downloaded over raw HTTP: several chunks of any backend.
const BIG_ARTIFACT_LEN: usize = 3 * 1024 * 1024 + 17;
/// How long storectl ui may take to print its URL (it opens and initializes the store
/// first) on a busy machine.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the whole browser test may take before node and its browser are killed.
const BROWSER_TEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A SQLite file and an artifact directory, and the environment pointing storectl at them.
struct Store {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What the browser test is told to expect.
struct Seeded {
    checkpoints: Vec<String>,
    write_checkpoint: String,
    /// The checkpoint of `LOOP_THREAD` that is its own parent.
    loop_checkpoint: String,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("STORAGE_BACKEND".to_owned(), "sqlite".to_owned()),
            (
                "STORAGE_SQLITE__PATH".to_owned(),
                dir.path().join("store.db").display().to_string(),
            ),
            ("STORAGE_ROUTES__ARTIFACTS".to_owned(), "object".to_owned()),
            (
                "STORAGE_OBJECT__URL".to_owned(),
                format!("file://{}", dir.path().join("objects").display()),
            ),
        ];
        Store { dir, env }
    }

    async fn storage(&self) -> Storage {
        let mut config = StorageConfig {
            backend: BackendName::Sqlite,
            ..StorageConfig::default()
        };
        config.routes.artifacts = Some(BackendName::Object);
        config.sqlite.path = self.dir.path().join("store.db");
        config.sqlite.namespace = NAMESPACE.to_owned();
        config.object.url = format!("file://{}", self.dir.path().join("objects").display());
        config.object.namespace = NAMESPACE.to_owned();
        let storage = Storage::from_config(config).unwrap();
        storage.initialize().await.unwrap();
        storage
    }

    /// `storectl` in the store's directory with only the store's `STORAGE_*` variables
    /// (and `extra_env`).
    fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(cli_support::storectl_path());
        command.current_dir(self.dir.path()).args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("STORAGE_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.envs(extra_env.iter().copied());
        command
    }

    /// Starts `storectl --namespace inspected ui --port 0 <args>` and reads its URL.
    fn serve(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Server {
        let mut all = vec!["--namespace", NAMESPACE, "ui", "--port", "0"];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all, extra_env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("storectl starts");
        let lines = Lines::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        let first = match lines.next_before(deadline) {
            Ok(line) => line,
            Err(timed_out) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                let why = if timed_out {
                    format!("within {SERVER_START_TIMEOUT:?} (killed)")
                } else {
                    "before it exited".to_owned()
                };
                panic!("storectl ui printed no URL {why}; stderr:\n{stderr}");
            }
        };
        let url = first.trim().to_owned();
        let address = url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("not a URL: {url:?}"))
            .to_owned();
        // The lines after the URL, up to the last one (stdout stays open while it serves).
        let mut rest = String::new();
        while !rest.contains("Ctrl-C stops it") {
            match lines.next_before(deadline) {
                Ok(line) => rest.push_str(&line),
                Err(true) => panic!("storectl ui's banner stopped after {rest:?}"),
                Err(false) => break,
            }
        }
        Server {
            child,
            _stdout: lines,
            url,
            address,
            banner: rest,
        }
    }
}

/// A running `storectl ui`, stopped when dropped.
struct Server {
    child: Child,
    /// Kept open while it serves.
    _stdout: Lines,
    url: String,
    address: String,
    banner: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Stops the server and returns what it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }

    fn get(&self, path: &str) -> Response {
        http(&self.address, "GET", path, &[])
    }
}

fn checkpoint(thread: &str, parent: Option<&str>, step: i64) -> Checkpoint {
    let mut checkpoint = Checkpoint::new(thread, "", storage_core::new_checkpoint_id());
    checkpoint.parent_id = parent.map(str::to_owned);
    checkpoint
        .channel_versions
        .insert("messages".into(), step.to_string());
    checkpoint.channel_values.insert(
        "messages".into(),
        json!(format!(
            "step {step} <script>window.__pwned='channel'</script>"
        ))
        .into(),
    );
    checkpoint.metadata.insert("step".into(), json!(step));
    checkpoint.metadata.insert("source".into(), json!("loop"));
    checkpoint
}

/// The hostile session with a conversation of every role, a task context at version 2, a
/// forked checkpoint chain with pending writes, and two artifacts (one an HTML page); and
/// bob's sessions, for paging.
async fn seed(storage: &Storage) -> Seeded {
    let mut metadata = storage_core::Metadata::new();
    metadata.insert("note".into(), json!(HOSTILE_METADATA));
    storage
        .create_session(NewSession::new(HOSTILE_ID, "alice").with_metadata(metadata))
        .await
        .unwrap();
    let roles = ["system", "user", "assistant", "tool"];
    for i in 1..=MESSAGES {
        let role = roles[(i as usize) % roles.len()];
        let content = match i {
            MESSAGES => json!(HOSTILE_CONTENT),
            n if n == MESSAGES - 1 => {
                json!({"html": "<b onmouseover=\"window.__pwned='json'\">x</b>"})
            }
            n => json!(format!("message {n}")),
        };
        storage
            .append_message(HOSTILE_ID, NewMessage::new(role, content))
            .await
            .unwrap();
    }
    storage
        .store_task_context(HOSTILE_ID, json!({"plan": 1}), ExpectedVersion::Absent)
        .await
        .unwrap();
    storage
        .store_task_context(
            HOSTILE_ID,
            json!({"plan": "<script>window.__pwned='context'</script>", "step": 2}),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let root = checkpoint(HOSTILE_ID, None, 0);
    let middle = checkpoint(HOSTILE_ID, Some(&root.id), 1);
    let left = checkpoint(HOSTILE_ID, Some(&middle.id), 2);
    let right = checkpoint(HOSTILE_ID, Some(&middle.id), 2);
    let checkpoints: Vec<String> = [&root, &middle, &left, &right]
        .iter()
        .map(|c| c.id.clone())
        .collect();
    for c in [root, middle, left, right] {
        let versions = c.all_versions();
        storage.put_checkpoint(c, versions).await.unwrap();
    }
    // Corrupt but possible: a checkpoint that is its own parent (with a channel named
    // __proto__), and two that are each other's parent.
    let mut own = checkpoint(LOOP_THREAD, None, 0);
    own.parent_id = Some(own.id.clone());
    own.channel_values
        .insert("__proto__".into(), json!("not a prototype").into());
    own.channel_versions.insert("__proto__".into(), "7".into());
    let mut one = checkpoint(LOOP_THREAD, None, 1);
    let mut two = checkpoint(LOOP_THREAD, Some(&one.id), 2);
    one.parent_id = Some(two.id.clone());
    two.parent_id = Some(one.id.clone());
    let loop_checkpoint = own.id.clone();
    for c in [own, one, two] {
        let versions = c.all_versions();
        storage.put_checkpoint(c, versions).await.unwrap();
    }
    let write_checkpoint = checkpoints[3].clone();
    storage
        .put_writes(
            CheckpointKey {
                thread_id: HOSTILE_ID.into(),
                namespace: String::new(),
                checkpoint_id: write_checkpoint.clone(),
            },
            "task-1",
            "path",
            vec![(
                "messages".into(),
                json!("pending <img src=x onerror=\"window.__pwned='write'\">").into(),
            )],
        )
        .await
        .unwrap();
    for content in ["{\"v\":1}", REPORT_V1] {
        storage
            .save_artifact(
                HOSTILE_ID,
                "report.json",
                NewArtifact::new("application/json", content.as_bytes().to_vec()),
            )
            .await
            .unwrap();
    }
    storage
        .save_artifact(
            HOSTILE_ID,
            "page<svg onload=alert(1)>.html",
            NewArtifact::new("text/html", PAGE_HTML.as_bytes().to_vec()),
        )
        .await
        .unwrap();
    for i in 0..BOB_SESSIONS {
        storage
            .create_session(NewSession::new(format!("bob-{i:02}"), "bob"))
            .await
            .unwrap();
    }
    Seeded {
        checkpoints,
        write_checkpoint,
        loop_checkpoint,
    }
}

async fn seeded_store() -> (Store, Seeded) {
    let store = Store::new();
    let storage = store.storage().await;
    let seeded = seed(&storage).await;
    storage.close().await.unwrap();
    (store, seeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_addresses_need_allow_remote_and_a_token() {
    let store = Store::new();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["ui", "--port", "0"];
        all.extend_from_slice(args);
        store.command(&all, env).output().unwrap()
    };
    let refused = run(&["--bind", "0.0.0.0"], &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0: not a loopback address"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty());

    let no_token = run(&["--bind", "0.0.0.0", "--allow-remote"], &[]);
    let stderr = String::from_utf8_lossy(&no_token.stderr);
    assert_eq!(no_token.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-remote needs a token"), "{stderr}");

    let weak = run(&["--token", "short"], &[]);
    assert_eq!(weak.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 16 characters"));

    let json_error = run(&["--json", "--bind", "::"], &[]);
    let error: Value = serde_json::from_slice(&json_error.stderr).unwrap();
    assert_eq!(error["error"]["exit_code"], 2, "{error}");

    // Both given: it serves every address, over plain HTTP (which it warns about), and the
    // Host check gives way to the token.
    let server = store.serve(
        &["--bind", "0.0.0.0", "--allow-remote"],
        &[("STORAGE_UI_TOKEN", TOKEN)],
    );
    assert!(server.url.starts_with("http://0.0.0.0:"), "{}", server.url);
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let local = format!("127.0.0.1:{port}");
    let bearer = format!("Bearer {TOKEN}");
    let elsewhere = http(
        &local,
        "GET",
        "/api/info",
        &[("Host", "inspector.example:80"), ("Authorization", &bearer)],
    );
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text());
    assert_eq!(http(&local, "GET", "/api/info", &[]).status, 401);
    let stderr = server.stop();
    assert!(stderr.contains("plain HTTP"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token was printed: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_on_every_request() {
    let (store, _) = seeded_store().await;
    let server = store.serve(&[], &[("STORAGE_UI_TOKEN", TOKEN)]);
    assert!(!server.url.contains(TOKEN) && !server.banner.contains(TOKEN));
    assert!(
        server.banner.contains("token required"),
        "{}",
        server.banner
    );
    for path in ["/", "/app.js", "/api/info", "/api/sessions", "/nothing"] {
        let refused = server.get(path);
        assert_eq!(refused.status, 401, "{path}: {}", refused.text());
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        assert!(refused.header("content-security-policy").is_some());
    }
    let wrong = http(
        &server.address,
        "GET",
        "/api/info",
        &[("Authorization", "Bearer test-token-0123456789abcdeX")],
    );
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let right = http(
        &server.address,
        "GET",
        "/api/info",
        &[("Authorization", &bearer)],
    );
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(right.json()["namespace"], NAMESPACE);
    assert_eq!(right.header("set-cookie"), None);

    // The page opened once with ?token= is redirected to / with a session cookie: named
    // after the port (cookies are shared across ports), holding no token.
    let port = server.address.rsplit(':').next().unwrap();
    let login = server.get(&format!("/?token={TOKEN}"));
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.header("location"), Some("/"));
    let cookie = login.header("set-cookie").expect("a cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds the token: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, format!("storectl_ui_{port}"));
    assert_eq!(value.len(), 64, "{value}");
    // Every cookie of that name is tried (a stale one from an earlier run may come first).
    let stale_first = format!("{name}=0123; other=1; {pair}");
    for path in ["/app.js", "/api/info", "/"] {
        let with_cookie = http(&server.address, "GET", path, &[("Cookie", &stale_first)]);
        assert_eq!(with_cookie.status, 200, "{path}: {}", with_cookie.text());
    }
    for refused in [
        format!("{name}=guess-guess-guess-guess"),
        format!("{name}={TOKEN}"),
        format!("storectl_ui_token={TOKEN}"),
        format!("storectl_ui_1={value}"),
    ] {
        let response = http(&server.address, "GET", "/app.js", &[("Cookie", &refused)]);
        assert_eq!(response.status, 401, "{refused}");
    }
    // The token in the query string of anything but the page is not taken.
    let api_query = server.get(&format!("/api/info?token={TOKEN}"));
    assert_eq!(api_query.status, 401, "{}", api_query.text());
    assert_eq!(
        server.get("/?token=test-token-0123456789abcdeX").status,
        401
    );
    let stderr = server.stop();
    assert!(!stderr.contains(TOKEN), "the token was printed: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_read_only_and_carries_markup_as_text() {
    let (store, seeded) = seeded_store().await;
    // An artifact of many chunks, streamed to the client.
    let big: Vec<u8> = (0..BIG_ARTIFACT_LEN).map(|i| (i * 7 % 251) as u8).collect();
    let storage = store.storage().await;
    storage
        .save_artifact(
            "big",
            "big.bin",
            NewArtifact::new("application/octet-stream", big.clone()),
        )
        .await
        .unwrap();
    // More artifact names than a page, and more checkpoints than are drawn.
    for i in 0..=ARTIFACTS_PAGE {
        storage
            .save_artifact(
                "many",
                &format!("n{i:03}"),
                NewArtifact::new("text/plain", b"x".to_vec()),
            )
            .await
            .unwrap();
    }
    let mut parent: Option<String> = None;
    for step in 0..=MAX_CHECKPOINTS {
        let c = checkpoint("long", parent.as_deref(), step as i64);
        parent = Some(c.id.clone());
        let versions = c.all_versions();
        storage.put_checkpoint(c, versions).await.unwrap();
    }
    storage.close().await.unwrap();
    let server = store.serve(&[], &[]);

    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-security-policy"),
        Some(
            "default-src 'self'; script-src 'self'; object-src 'none'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));

    for method in ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
        for path in ["/", "/api/sessions", "/api/session?id=s1"] {
            let refused = http(&server.address, method, path, &[]);
            assert_eq!(refused.status, 405, "{method} {path}");
            assert_eq!(refused.header("allow"), Some("GET"));
        }
    }

    // A site that points its own name at 127.0.0.1 (DNS rebinding) is not answered.
    let rebound = http(
        &server.address,
        "GET",
        "/api/sessions",
        &[("Host", "attacker.example:80")],
    );
    assert_eq!(rebound.status, 403, "{}", rebound.text());
    let by_name = http(
        &server.address,
        "GET",
        "/api/info",
        &[("Host", "localhost:1")],
    );
    assert_eq!(by_name.status, 200);

    let session = server.get(&format!("/api/session?id={}", encode(HOSTILE_ID)));
    assert_eq!(session.status, 200, "{}", session.text());
    assert_eq!(
        session.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let text = session.text();
    assert!(!text.contains('<') && !text.contains('>'), "{text}");
    assert!(text.contains("\\u003cscript\\u003e"), "{text}");
    let value = session.json();
    assert_eq!(value["id"], HOSTILE_ID);
    assert_eq!(value["metadata"]["note"], HOSTILE_METADATA);

    let messages = server.get(&format!(
        "/api/messages?session={}&limit=2",
        encode(HOSTILE_ID)
    ));
    let messages = messages.json();
    assert_eq!(messages["messages"][1]["content"], HOSTILE_CONTENT);
    assert_eq!(messages["messages"][1]["sequence"], MESSAGES);

    let chain = server
        .get(&format!("/api/checkpoints?thread={}", encode(HOSTILE_ID)))
        .json();
    let mut ids: Vec<&str> = chain["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, seeded.checkpoints);
    let tuple = server
        .get(&format!(
            "/api/checkpoint?thread={}&id={}",
            encode(HOSTILE_ID),
            seeded.write_checkpoint
        ))
        .json();
    assert_eq!(tuple["pending_writes"][0]["task_id"], "task-1");

    // A stored HTML page is a download, never a page of the inspector's origin.
    let download = server.get(&format!(
        "/api/artifact?scope={}&name={}",
        encode(HOSTILE_ID),
        encode("page<svg onload=alert(1)>.html")
    ));
    assert_eq!(download.status, 200, "{}", download.text());
    assert_eq!(download.body, PAGE_HTML.as_bytes());
    assert_eq!(
        download.header("content-type"),
        Some("application/octet-stream")
    );
    let disposition = download.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"page_svg_onload_alert_1__.v0.html\""),
        "{disposition}"
    );

    let download = server.get("/api/artifact?scope=big&name=big.bin");
    assert_eq!(download.status, 200);
    let length = BIG_ARTIFACT_LEN.to_string();
    assert_eq!(download.header("content-length"), Some(length.as_str()));
    assert!(download.body == big, "the streamed download differs");
    let absent = server.get("/api/artifact?scope=big&name=nothing");
    assert_eq!(absent.status, 404, "{}", absent.text());

    // Bounded reads: a page of artifact names, then the rest; the newest checkpoints only.
    let first = server.get("/api/artifacts?scope=many").json();
    assert_eq!(first["artifacts"].as_array().unwrap().len(), ARTIFACTS_PAGE);
    let after = first["next_after"]
        .as_str()
        .expect("a next page")
        .to_owned();
    assert_eq!(after, format!("n{:03}", ARTIFACTS_PAGE - 1));
    let rest = server
        .get(&format!("/api/artifacts?scope=many&after={after}"))
        .json();
    assert_eq!(
        rest["artifacts"][0]["name"],
        format!("n{ARTIFACTS_PAGE:03}")
    );
    assert_eq!(rest["artifacts"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_after"], Value::Null);
    let long = server.get("/api/checkpoints?thread=long").json();
    assert_eq!(long["truncated"], true);
    assert_eq!(long["limit"], MAX_CHECKPOINTS);
    assert_eq!(
        long["checkpoints"].as_array().unwrap().len(),
        MAX_CHECKPOINTS
    );

    let missing = server.get("/api/session?id=nobody");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["kind"], "not_found");
    let bad = server.get("/api/sessions?status=sleeping");
    assert_eq!(bad.status, 400, "{}", bad.text());
    // Query strings that do not decode are JSON errors too, not axum's plain text.
    for path in [
        "/api/session",
        "/api/messages?session=s1&after=yesterday",
        "/api/sessions?limit=-1",
    ] {
        let bad = server.get(path);
        assert_eq!(bad.status, 400, "{path}: {}", bad.text());
        assert_eq!(bad.json()["error"]["kind"], "bad_input", "{path}");
    }
    assert_eq!(server.get("/etc/passwd").status, 404);

    // Nothing was written: the sessions are those seeded.
    let sessions = server.get("/api/sessions?limit=100").json();
    assert_eq!(
        sessions["items"].as_array().unwrap().len(),
        BOB_SESSIONS + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_chromium_shows_everything_and_runs_no_stored_script() {
    let chromium = chromium();
    let test_dir = browser_test_dir();
    let (store, seeded) = seeded_store().await;
    let server = store.serve(&[], &[("STORAGE_UI_TOKEN", TOKEN)]);
    let screenshots = match std::env::var_os("STORECTL_UI_SCREENSHOTS") {
        Some(dir) => workspace_root().join(dir),
        None => store.dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&screenshots).unwrap();
    let expect = json!({
        "url": server.url,
        "token": TOKEN,
        "chromium": chromium,
        "screenshots": screenshots,
        "session": HOSTILE_ID,
        "session_shown": HOSTILE_ID_SHOWN,
        "content": HOSTILE_CONTENT,
        "messages": MESSAGES,
        "bob_sessions": BOB_SESSIONS,
        "checkpoints": seeded.checkpoints,
        "write_checkpoint": seeded.write_checkpoint,
        "loop_thread": LOOP_THREAD,
        "loop_checkpoint": seeded.loop_checkpoint,
        "report_v1": REPORT_V1,
        "page_html": PAGE_HTML,
    });
    let expect_file = store.dir.path().join("expect.json");
    std::fs::write(&expect_file, expect.to_string()).unwrap();

    let started = Instant::now();
    let output = run_with_deadline(
        Command::new("node")
            .arg(test_dir.join("ui.mjs"))
            .arg(&expect_file)
            .current_dir(&test_dir),
        BROWSER_TEST_TIMEOUT,
    );
    let elapsed = started.elapsed();
    let (stdout, stderr) = (&output.stdout, &output.stderr);
    let status = output.status.unwrap_or_else(|| {
        panic!(
            "the browser test did not finish within {BROWSER_TEST_TIMEOUT:?} (node and its \
             browser were killed):\n{stdout}\n{stderr}"
        )
    });
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("browser test passed"), "{stdout}\n{stderr}");
    eprintln!("browser test: {:.1} s\n{stdout}", elapsed.as_secs_f64());
    for view in ["sessions", "session", "checkpoints", "health"] {
        let shot = screenshots.join(format!("storectl-ui-{view}.png"));
        let size = std::fs::metadata(&shot)
            .unwrap_or_else(|err| panic!("{}: {err}", shot.display()))
            .len();
        assert!(size > 10_000, "{} is only {size} bytes", shot.display());
    }
    let server_stderr = server.stop();
    assert!(!server_stderr.contains(TOKEN), "{server_stderr}");
}

/// The deadlines themselves: a child that hangs fails the test in time, and its process
/// group (node and what it started) is gone afterwards.
#[test]
fn a_hung_child_is_killed_at_the_deadline_with_its_process_group() {
    let started = Instant::now();
    let hung = run_with_deadline(
        Command::new("sh").args(["-c", "echo started; sleep 300 & echo $!; wait"]),
        Duration::from_secs(1),
    );
    assert!(hung.status.is_none(), "{hung:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let grandchild = hung.stdout.lines().nth(1).unwrap().trim().to_owned();
    // Gone, or a zombie nobody reaped yet (in a container, PID 1 may never reap it). A
    // SIGKILL is delivered asynchronously: the process may still show as running for a
    // moment after the kill, so its end is awaited for a few seconds.
    let killed_by = Instant::now() + Duration::from_secs(5);
    let stat = loop {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        if matches!(state, None | Some("Z")) || Instant::now() > killed_by {
            break stat;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
    assert!(
        matches!(state, None | Some("Z")),
        "the sleep {grandchild} outlived the deadline: {stat}"
    );

    let done = run_with_deadline(
        Command::new("sh").args(["-c", "echo out; echo err >&2"]),
        Duration::from_secs(60),
    );
    assert!(done.status.unwrap().success());
    assert_eq!(
        (done.stdout.as_str(), done.stderr.as_str()),
        ("out\n", "err\n")
    );

    let mut silent = Command::new("sh")
        .args(["-c", "echo one; sleep 300"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(silent.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(1);
    assert_eq!(lines.next_before(deadline), Ok("one\n".to_owned()));
    assert_eq!(lines.next_before(deadline), Err(true));
    silent.kill().unwrap();
    silent.wait().unwrap();
}

/// `npm ci` is skipped only while what it installed is there.
#[test]
fn npm_ci_is_skipped_only_while_playwright_core_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let lock = b"{\"lockfileVersion\": 3}";
    assert!(!npm_ci_done(dir.path(), lock));
    std::fs::write(dir.path().join("installed-package-lock.json"), lock).unwrap();
    assert!(!npm_ci_done(dir.path(), lock), "node_modules is missing");
    let package = dir.path().join("node_modules/playwright-core");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(package.join("package.json"), "{}").unwrap();
    assert!(npm_ci_done(dir.path(), lock));
    assert!(!npm_ci_done(dir.path(), b"{\"changed\": true}"));
}
