//! What `tests/storectl_ui.rs` needs besides storectl: a raw HTTP/1.1 client (no client
//! crate for a handful of requests whose every header is asserted), and the browser test's
//! tools (Chromium, Node.js, the npm packages of `tests/browser`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A response read to its end: status, headers in order, the body de-chunked.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Host` is the address unless `headers`
/// gives one).
pub fn http(address: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 4 + size..];
    }
}

/// `text` percent-encoded for a query string: the testkit's encoder of URL user info,
/// which escapes everything but unreserved characters.
pub use storage_testkit::servers::tls::percent_encode as encode;

/// The directory of this build's profile (`target/debug`), where the browser test's npm
/// packages are installed.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Chromium to drive: `$CHROMIUM`, else Debian's.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "{} is missing: the browser test drives Chromium headless. Install it with \
         `apt-get install -y --no-install-recommends chromium` (Debian), or set CHROMIUM to \
         a Chromium or Chrome binary",
        path.display()
    );
    path
}

/// Whether `npm ci` installed this `package-lock.json` in `dir` and its result is still
/// there: the marker written after it matches, and playwright-core is installed (a
/// `node_modules` removed or half-deleted since is installed again).
pub fn npm_ci_done(dir: &Path, lock: &[u8]) -> bool {
    let marker = dir.join("installed-package-lock.json");
    std::fs::read(marker).is_ok_and(|installed| installed == lock)
        && dir
            .join("node_modules/playwright-core/package.json")
            .is_file()
}

/// `tests/browser` copied under the target directory with its npm packages installed
/// (`npm ci`, again only when package-lock.json changed). Returns the copy's directory.
pub fn browser_test_dir() -> PathBuf {
    let node = Command::new("node").arg("--version").output();
    let version = match node {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        _ => panic!(
            "node is missing: the browser test runs Playwright on Node.js 18 or later. Install \
             it with `apt-get install -y --no-install-recommends nodejs npm` (Debian)"
        ),
    };
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 18,
        "node {version} is too old: Playwright needs 18 or later"
    );
    let source = workspace_root().join("tests/browser");
    let dir = profile_dir().join("browser-test");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["package.json", "package-lock.json", "ui.mjs"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let lock = std::fs::read(source.join("package-lock.json")).unwrap();
    let marker = dir.join("installed-package-lock.json");
    if !npm_ci_done(&dir, &lock) {
        // Output captured, so that it stays out of the test harness's report unless it fails.
        let npm = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|err| {
                panic!("npm does not run ({err}): install it with `apt-get install -y npm`")
            });
        assert!(
            npm.status.success(),
            "`npm ci` in {} failed: the npm registry must be reachable once to install \
             playwright-core\n{}\n{}",
            dir.display(),
            String::from_utf8_lossy(&npm.stdout),
            String::from_utf8_lossy(&npm.stderr)
        );
        std::fs::write(&marker, &lock).unwrap();
    }
    dir
}

/// The lines of a child's stdout, read by a thread so that the test can wait for them with
/// a deadline (a hung child must fail the test, not hang it).
pub struct Lines {
    receiver: Receiver<String>,
}

impl Lines {
    pub fn new(stdout: ChildStdout) -> Self {
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if sender.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Lines { receiver }
    }

    /// The next line, `Err(true)` when `deadline` passed first, `Err(false)` at the end of
    /// the output.
    pub fn next_before(&self, deadline: Instant) -> Result<String, bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.receiver.recv_timeout(left) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(true),
            Err(RecvTimeoutError::Disconnected) => Err(false),
        }
    }
}

/// What a command run under a deadline did.
#[derive(Debug)]
pub struct Finished {
    /// `None`: killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` in a process group of its own, with stdout and stderr captured; at
/// `timeout` the whole group is killed (node and the browser it started).
pub fn run_with_deadline(command: &mut Command, timeout: Duration) -> Finished {
    use std::os::unix::process::CommandExt;
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{command:?} does not start: {err}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Reads a pipe to its end on a thread (so that a chatty child never blocks on it).
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Stops the process group `child` leads: SIGTERM first (on which Playwright closes the
/// browser it launched, in a process group of its own), SIGKILL after 5 s. `kill` the
/// command: no libc for two calls.
fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let grace = Instant::now() + Duration::from_secs(5);
    while Instant::now() < grace && child.try_wait().ok().flatten().is_none() {
        thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.kill();
    let _ = child.wait();
}
