//! Throwaway S3-protocol servers: moto's server mode, run single-threaded.
//!
//! [`s3_target`] gives what tests connect to: the endpoint in `STORAGE_TEST_S3_URL` (with
//! the bucket in `STORAGE_TEST_S3_BUCKET`, default `storage-test`, which must exist) if set,
//! else a moto server started once per test process on a free loopback port, with the
//! bucket created, and stopped when the process exits.
//!
//! moto's S3 application is run through werkzeug with `threaded=False`: one request at a
//! time, which makes its conditional writes (`If-None-Match`, `If-Match`) atomic under
//! concurrent writers.
//! When no Python on the `PATH` can import moto, it is installed with pip into a virtualenv
//! under the target directory (`<target>/moto-venv`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{free_port, Restartable};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a durable server may take to replay its request log and open its port.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_BUCKET: &str = "storage-test";

/// Runs moto's S3 application single-threaded on the host and port given as arguments.
///
/// Three changes make it faster without changing an answer (CI spent minutes waiting on
/// moto's CPU): the S3 application is served directly, not through moto's dispatcher of
/// every service, which looked the service up per request (about 2.7 ms of each request's
/// 4); a timestamp string with an offset is parsed by the standard library instead of
/// dateutil (about a third of a listing's time), to the same UTC datetime; and requests
/// are not logged, only warnings and errors.
///
/// With `MOTO_ENABLE_RECORDING` and `MOTO_RECORDER_FILEPATH` set (a [`MotoServer::durable`]
/// server), moto appends every request to that file before handling it; on start, the
/// requests already in the file are replayed into the new application, in order and without
/// recording them again, before the port opens. A line torn by a kill is skipped.
const LAUNCHER: &str = r#"
import base64, json, logging, os, sys
from datetime import datetime, timezone
from urllib.parse import urlsplit
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import create_backend_app
try:
    import moto.core.serialize as serialize
    slow_parse = serialize.parse_to_aware_datetime
    def parse(value):
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return slow_parse(value)
            if parsed.tzinfo is not None:
                return parsed.astimezone(timezone.utc)
        return slow_parse(value)
    serialize.parse_to_aware_datetime = parse
except (ImportError, AttributeError):
    pass
app = create_backend_app("s3")
# One log line per request cost a twentieth of the server's time; errors still print.
logging.getLogger("werkzeug").setLevel(logging.WARNING)
recording = os.environ.get("MOTO_RECORDER_FILEPATH")
if os.environ.get("MOTO_ENABLE_RECORDING") and recording and os.path.exists(recording):
    from werkzeug.test import Client
    from moto.moto_api import recorder
    recorder.stop_recording()
    client = Client(app)
    with open(recording) as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body)
            url = urlsplit(entry["url"])
            headers = {k: v for k, v in entry["headers"].items()
                       if k.lower() not in ("transfer-encoding", "content-length")}
            client.open(url.path, method=entry["method"], query_string=url.query,
                        headers=headers, data=body)
    recorder.start_recording()
run_simple(sys.argv[1], int(sys.argv[2]), app, threaded=False, use_reloader=False)
"#;

/// Where an S3-protocol server is and which bucket to use. moto accepts any credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// An existing bucket.
    pub bucket: String,
    /// Access key id to sign with.
    pub access_key_id: String,
    /// Secret access key to sign with.
    pub secret_access_key: String,
    /// Region to sign for.
    pub region: String,
}

/// A moto server on a loopback port.
#[derive(Debug)]
pub struct MotoServer {
    port: u16,
    python: PathBuf,
    /// The request log of a durable server, in a temporary directory of its own.
    recording: Option<tempfile::TempDir>,
    process: Restartable,
}

impl MotoServer {
    /// Starts moto on a free port (installing it first if needed). It keeps everything in
    /// memory: a kill loses it all.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts moto on a free port with its state made durable by moto's request recorder:
    /// every request is appended to a log before it is handled (so a kill loses no
    /// acknowledged write), and [`MotoServer::restart`] replays the log before accepting
    /// connections. Restarts get slower as the log grows.
    pub fn durable() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("storage-test-moto-")
            .tempdir()
            .expect("cannot create a temporary directory");
        Self::start_with(Some(dir))
    }

    fn start_with(recording: Option<tempfile::TempDir>) -> Self {
        let server = MotoServer {
            port: free_port(),
            python: moto_python(),
            recording,
            process: Restartable::default(),
        };
        server.restart();
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server, as a crash would. Only a [`MotoServer::durable`] server keeps its
    /// data across the kill.
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Stops the server with SIGSTOP: connections stay open and nothing is answered, as a
    /// hung server would, until [`MotoServer::unpause`].
    pub fn pause(&self) {
        self.process.pause();
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn unpause(&self) {
        self.process.unpause();
    }

    /// Starts the server again on the same port (after [`MotoServer::stop`]); a durable
    /// server replays its request log first.
    pub fn restart(&self) {
        let mut command = Command::new(&self.python);
        command
            .arg("-c")
            .arg(LAUNCHER)
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .env("MOTO_PORT", self.port.to_string())
            .env_remove("MOTO_ENABLE_RECORDING")
            .env_remove("MOTO_RECORDER_FILEPATH");
        let mut timeout = START_TIMEOUT;
        if let Some(dir) = &self.recording {
            command
                .env("MOTO_ENABLE_RECORDING", "true")
                .env("MOTO_RECORDER_FILEPATH", dir.path().join("requests.jsonl"));
            // The replay of the log comes before the port opens.
            timeout = REPLAY_TIMEOUT;
        }
        self.process
            .start("moto", command, None, self.port, timeout);
    }

    /// Creates `bucket` (moto checks no credentials, so an unsigned request does).
    pub fn create_bucket(&self, bucket: &str) {
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            port = self.port
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        stream.write_all(request.as_bytes()).expect("send to moto");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "moto did not create bucket {bucket}: {response}"
        );
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn imports_moto(python: &std::path::Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import moto.moto_server.werkzeug_app, werkzeug.serving",
        ])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

/// The target directory: `CARGO_TARGET_DIR`, or the workspace's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// A Python that can run moto: `python3` from the `PATH` if it has moto, else the
/// virtualenv under the target directory, created and filled with pip if missing.
fn moto_python() -> PathBuf {
    let system = PathBuf::from("python3");
    if imports_moto(&system) {
        return system;
    }
    let venv = target_dir().join("moto-venv");
    let python = venv.join("bin").join("python");
    if imports_moto(&python) {
        return python;
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    assert!(
        created,
        "cannot create a Python virtualenv for moto at {}; install Python with: \
         apt-get install -y python3 python3-venv",
        venv.display()
    );
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "moto[server]"])
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    assert!(
        installed && imports_moto(&python),
        "cannot install moto into {}; run: {} -m pip install 'moto[server]'",
        venv.display(),
        python.display()
    );
    python
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The S3 server tests use: `STORAGE_TEST_S3_URL` (+ `STORAGE_TEST_S3_BUCKET`), or a
/// throwaway moto server shared by the whole test process, with its bucket created.
pub fn s3_target() -> S3Target {
    static SHARED: OnceLock<MotoServer> = OnceLock::new();
    let (endpoint, bucket) = match env_value("STORAGE_TEST_S3_URL") {
        Some(url) => (
            url,
            env_value("STORAGE_TEST_S3_BUCKET").unwrap_or_else(|| DEFAULT_BUCKET.to_owned()),
        ),
        None => {
            let server = SHARED.get_or_init(|| {
                let server = MotoServer::start();
                server.create_bucket(DEFAULT_BUCKET);
                server
            });
            (server.endpoint(), DEFAULT_BUCKET.to_owned())
        }
    };
    S3Target {
        endpoint,
        bucket,
        access_key_id: env_value("STORAGE_TEST_S3_ACCESS_KEY_ID")
            .unwrap_or_else(|| "testing".into()),
        secret_access_key: env_value("STORAGE_TEST_S3_SECRET_ACCESS_KEY")
            .unwrap_or_else(|| "testing".into()),
        region: env_value("STORAGE_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
    }
}
