//! Throwaway test servers: started from the installed binaries on free loopback ports when
//! the environment names no server, and unable to outlive the test process.
//!
//! Every process is started with a watchdog (a small `sh` loop) that kills it and removes
//! its data directory as soon as the test process is gone, so a test binary that exits, is
//! killed or panics leaves nothing running.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod hung;
pub mod postgres;
pub mod proxy;
pub mod redis;
pub mod s3;
pub mod tls;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind a loopback port")
}

/// Waits until something accepts connections on the loopback `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Panics with the install command when `binary` is not on the `PATH`.
pub fn require_binary(binary: &str, apt_package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{binary}` is not installed; tests start a throwaway server from it. \
             Install it with: apt-get install -y {apt_package}"
        )
    })
}

/// Sends `signal` (a name: `STOP`, `CONT`, `KILL`) to `pids` with `kill(1)`. A process may
/// exit by itself in between, so the answer of `kill` is not checked: callers check the
/// outcome.
pub(crate) fn signal(signal: &str, pids: &[u32]) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A server process with its watchdog. Dropping it stops both.
#[derive(Debug)]
pub struct Managed {
    server: Child,
    watchdog: Child,
}

impl Managed {
    /// Starts `command` and a watchdog that kills it when the current process exits, and
    /// then removes `cleanup_dir` (kept while the process lives, for restarts).
    pub fn spawn(mut command: Command, cleanup_dir: Option<&Path>) -> Self {
        let program = format!("{:?}", command.get_program());
        let server = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {program}: {err}"));
        let cleanup = cleanup_dir
            .map(|dir| format!("rm -rf '{}'", dir.display()))
            .unwrap_or_else(|| "true".to_owned());
        let script = format!(
            "while kill -0 {parent} 2>/dev/null && kill -0 {child} 2>/dev/null; do sleep 0.2; done; \
             kill -9 {child} 2>/dev/null; kill -0 {parent} 2>/dev/null || {{ {cleanup}; }}",
            parent = std::process::id(),
            child = server.id(),
        );
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the server watchdog (sh)");
        Managed { server, watchdog }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.id()
    }

    /// Kills the server at once with SIGKILL (`Child::kill`), as a crash would, and waits
    /// for it to be gone.
    pub fn kill(&mut self) {
        // A stopped process dies of SIGKILL too; SIGCONT first all the same, so that
        // nothing is left waiting on it.
        signal("CONT", &[self.server.id()]);
        let _ = self.server.kill();
        let _ = self.server.wait();
        // The watchdog notices the server is gone and exits; reap it.
        let _ = self.watchdog.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server process that a fault test can kill and start again on the same port.
#[derive(Debug, Default)]
pub struct Restartable {
    process: std::sync::Mutex<Option<Managed>>,
}

impl Restartable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Managed>> {
        self.process
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the process with SIGSTOP: it keeps its connections open and answers nothing,
    /// as a hung server would, until [`Restartable::unpause`]. Nothing happens when it is
    /// not running.
    pub fn pause(&self) {
        if let Some(process) = self.lock().as_ref() {
            signal("STOP", &[process.pid()]);
        }
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn unpause(&self) {
        if let Some(process) = self.lock().as_ref() {
            signal("CONT", &[process.pid()]);
        }
    }

    /// Kills the process, as a crash would; nothing happens when it is not running.
    pub fn stop(&self) {
        if let Some(mut process) = self.lock().take() {
            process.kill();
        }
    }

    /// Spawns `command` unless the process is running, and waits until `port` accepts
    /// connections; panics naming `what` if it does not within `timeout`.
    pub fn start(
        &self,
        what: &str,
        command: Command,
        cleanup_dir: Option<&Path>,
        port: u16,
        timeout: Duration,
    ) {
        let mut process = self.lock();
        if process.is_some() {
            return;
        }
        let started = Managed::spawn(command, cleanup_dir);
        assert!(
            wait_for_port(port, timeout),
            "{what} did not accept connections on 127.0.0.1:{port} within {timeout:?}"
        );
        *process = Some(started);
    }
}
