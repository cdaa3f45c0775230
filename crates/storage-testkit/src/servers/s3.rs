//! Throwaway S3-protocol servers: moto's server mode, run single-threaded.
//!
//! [`s3_target`] gives what tests connect to: the endpoint in `STORAGE_TEST_S3_URL` (with
//! the bucket in `STORAGE_TEST_S3_BUCKET`, default `storage-test`, which must exist) if set,
//! else a moto server started once per test process on a free loopback port, with the
//! bucket created, and stopped when the process exits.
//!
//! moto is run through werkzeug with `threaded=False`: one request at a time, which makes
//! its conditional writes (`If-None-Match`, `If-Match`) atomic under concurrent writers.
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
const DEFAULT_BUCKET: &str = "storage-test";

/// Runs moto's WSGI application single-threaded on the host and port given as arguments.
const LAUNCHER: &str = r#"
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
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
    process: Restartable,
}

impl MotoServer {
    /// Starts moto on a free port (installing it first if needed).
    pub fn start() -> Self {
        let server = MotoServer {
            port: free_port(),
            python: moto_python(),
            process: Restartable::default(),
        };
        server.restart();
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server, as a crash would. moto keeps nothing.
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Starts the server again on the same port (after [`MotoServer::stop`]).
    pub fn restart(&self) {
        let mut command = Command::new(&self.python);
        command
            .arg("-c")
            .arg(LAUNCHER)
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .env("MOTO_PORT", self.port.to_string());
        self.process
            .start("moto", command, None, self.port, START_TIMEOUT);
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
