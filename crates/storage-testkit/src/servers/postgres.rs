//! Throwaway PostgreSQL clusters.
//!
//! [`postgres_url`] gives what tests connect to: `STORAGE_TEST_POSTGRES_URL` if set, else a
//! cluster started once per test process. Fault tests start their own [`PostgresServer`]
//! and stop and restart it; they never touch a shared one, nor the machine's own server.
//!
//! A cluster is `initdb`-ed into a temporary directory, listens on a free loopback port
//! (trust authentication, `127.0.0.1` only) and on a unix socket inside that directory.
//! `initdb` refuses to run as root, so as root the binaries run as the `postgres` system
//! user (`runuser -u postgres --`) and the directory is handed to that user. `pg_ctl`
//! daemonizes the server, so a watchdog started with the cluster shuts it down and removes
//! the directory as soon as the test process is gone, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::{free_port, wait_for_port};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL: &str = "apt-get install -y postgresql";

/// A throwaway PostgreSQL cluster on a loopback port.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    bindir: PathBuf,
    run_as_postgres: bool,
    running: Mutex<bool>,
    watchdog: Mutex<Child>,
}

impl PostgresServer {
    /// Creates a cluster in a temporary directory and starts it on a free port.
    ///
    /// Panics with the install command when the PostgreSQL server binaries are missing.
    pub fn start() -> Self {
        let bindir = server_bindir();
        let run_as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("storage-test-postgres-")
            .tempdir()
            .expect("cannot create a temporary directory")
            .keep();
        if run_as_postgres {
            run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(&dir),
                "chown",
            );
        }
        let data = dir.join("data");
        let mut initdb = tool(run_as_postgres, &bindir.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb, "initdb");
        let watchdog = spawn_watchdog(&dir, &data);
        let server = PostgresServer {
            port: free_port(),
            dir,
            bindir,
            run_as_postgres,
            running: Mutex::new(false),
            watchdog: Mutex::new(watchdog),
        };
        server.resume();
        server
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server at once (`immediate` shutdown, as a crash would), keeping its data.
    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap();
        if !*running {
            return;
        }
        let mut pg_ctl = tool(self.run_as_postgres, &self.bindir.join("pg_ctl"));
        pg_ctl
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w"]);
        run(&mut pg_ctl, "pg_ctl stop");
        *running = false;
    }

    /// Starts the server again on the same port, with the same data (after
    /// [`PostgresServer::stop`]).
    pub fn resume(&self) {
        let mut running = self.running.lock().unwrap();
        if *running {
            return;
        }
        let options = format!(
            "-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            port = self.port,
            socket_dir = self.dir.display(),
        );
        let mut pg_ctl = tool(self.run_as_postgres, &self.bindir.join("pg_ctl"));
        pg_ctl
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "30", "-o", &options]);
        run(&mut pg_ctl, "pg_ctl start");
        assert!(
            wait_for_port(self.port, START_TIMEOUT),
            "postgres did not accept connections on 127.0.0.1:{} within {START_TIMEOUT:?}; \
             see {}",
            self.port,
            self.dir.join("server.log").display()
        );
        *running = true;
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        // The watchdog exits once the directory is gone; reap it.
        let _ = self.watchdog.lock().unwrap().wait();
    }
}

/// The PostgreSQL URL tests use: `STORAGE_TEST_POSTGRES_URL`, or a throwaway cluster shared
/// by the whole test process.
pub fn postgres_url() -> String {
    static SHARED: OnceLock<PostgresServer> = OnceLock::new();
    std::env::var("STORAGE_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| SHARED.get_or_init(PostgresServer::start).url())
}

/// Shuts the cluster down (immediate mode, then SIGKILL if needed) and removes its
/// directory once the test process is gone or the directory was removed by `Drop`.
fn spawn_watchdog(dir: &Path, data: &Path) -> Child {
    let script = format!(
        "while [ -d /proc/{parent} ] && [ -d '{dir}' ]; do sleep 0.2; done; \
         pidfile='{data}/postmaster.pid'; \
         if [ -f \"$pidfile\" ]; then \
           pid=$(head -n 1 \"$pidfile\"); kill -QUIT \"$pid\" 2>/dev/null; \
           for _ in 1 2 3 4 5 6 7 8 9 10; do [ -d /proc/\"$pid\" ] || break; sleep 0.2; done; \
           kill -9 \"$pid\" 2>/dev/null; \
         fi; \
         rm -rf '{dir}'",
        parent = std::process::id(),
        dir = dir.display(),
        data = data.display(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the postgres watchdog (sh)")
}

/// A PostgreSQL tool, run as the `postgres` user when we are root.
fn tool(as_postgres: bool, binary: &Path) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(binary);
        command
    } else {
        Command::new(binary)
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {what}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `pg_config --bindir` if it has
/// them (pg_config may come from a client-only package), else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn server_bindir() -> PathBuf {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| has_server(dir)) {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).unwrap_or_else(|| {
        panic!(
            "the PostgreSQL server binaries (initdb, pg_ctl) are not installed; tests start a \
             throwaway cluster from them. Install them with: {INSTALL}"
        )
    })
}
