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
//!
//! [`PostgresServer::start`] trades durability for speed (`synchronous_commit=off`: a
//! commit acknowledged just before a kill may be lost), which is what the conformance
//! suites want. [`PostgresServer::durable`] acknowledges a commit only once its WAL record
//! is written, so a killed server recovers every acknowledged commit on restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::tls::{percent_encode, Security, TestCerts};
use super::{free_port, signal, wait_for_port};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL: &str = "apt-get install -y postgresql";

/// A throwaway PostgreSQL cluster on a loopback port.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    durable: bool,
    bindir: PathBuf,
    run_as_postgres: bool,
    certs: Option<TestCerts>,
    running: Mutex<bool>,
    watchdog: Mutex<Child>,
}

impl PostgresServer {
    /// Creates a cluster in a temporary directory and starts it on a free port, without
    /// waiting for commits to reach the WAL: a kill may lose the last acknowledged commits.
    ///
    /// Panics with the install command when the PostgreSQL server binaries are missing.
    pub fn start() -> Self {
        Self::create(false)
    }

    /// Like [`PostgresServer::start`], but a commit is acknowledged only once its WAL
    /// record is written (`synchronous_commit=on`), so a kill loses no acknowledged commit.
    pub fn durable() -> Self {
        Self::create(true)
    }

    /// Like [`PostgresServer::start`], but requiring `security` on the loopback port: the
    /// `postgres` role gets the password (stored as scram-sha-256, checked by a
    /// `scram-sha-256` rule in `pg_hba.conf`), and with TLS the server has a certificate
    /// from a fresh [`TestCerts`] authority ([`PostgresServer::ca_file`]) and accepts
    /// TLS connections only (`hostssl`). The unix socket keeps trust authentication.
    pub fn secured(security: Security) -> Self {
        Self::create_secured(false, &security)
    }

    fn create(durable: bool) -> Self {
        Self::create_secured(durable, &Security::default())
    }

    fn create_secured(durable: bool, security: &Security) -> Self {
        let bindir = server_bindir();
        let run_as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("storage-test-postgres-")
            .tempdir()
            .expect("cannot create a temporary directory")
            .keep();
        let certs = security.tls.then(|| TestCerts::generate(&dir.join("tls")));
        let pwfile = dir.join("pwfile");
        if let Some(password) = &security.password {
            std::fs::write(&pwfile, password).expect("cannot write the password file");
        }
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
        if security.password.is_some() {
            initdb.arg(format!("--pwfile={}", pwfile.display()));
        }
        run(&mut initdb, "initdb");
        let _ = std::fs::remove_file(&pwfile);
        if security.password.is_some() || security.tls {
            let host = if security.tls { "hostssl" } else { "host" };
            let method = if security.password.is_some() {
                "scram-sha-256"
            } else {
                "trust"
            };
            std::fs::write(
                data.join("pg_hba.conf"),
                format!(
                    "local all all trust\n\
                     {host} all all 127.0.0.1/32 {method}\n"
                ),
            )
            .expect("cannot write pg_hba.conf");
        }
        let watchdog = spawn_watchdog(&dir, &data);
        let server = PostgresServer {
            port: free_port(),
            dir,
            durable,
            bindir,
            run_as_postgres,
            certs,
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

    /// [`PostgresServer::url`] with `password` (percent-encoded) in its user info.
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            percent_encode(password),
            self.port
        )
    }

    /// The CA certificate (PEM file) that signed the server's certificate, when the server
    /// requires TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.certs.as_ref().map(|certs| certs.ca_file.as_path())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Kills the postmaster and every process it forked with SIGKILL, as a crash would,
    /// keeping the data directory; returns once none of them runs any more.
    pub fn stop(&self) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*running {
            return;
        }
        let postmaster = postmaster_pid(&self.data());
        // Every child of the postmaster leads a process group of its own, so there is no
        // group to kill: the postmaster is stopped first (it cannot fork while stopped),
        // then it and its children are killed.
        signal("STOP", &[postmaster]);
        let mut doomed = children_of(postmaster);
        doomed.push(postmaster);
        signal("KILL", &doomed);
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while doomed.iter().any(|pid| running_process(*pid)) {
            assert!(
                std::time::Instant::now() < deadline,
                "postgres processes {doomed:?} survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The killed postmaster stays a zombie until whoever inherited it reaps it, and
        // PostgreSQL refuses to start while the pid in its lock files exists. Nothing of
        // the old server runs any more, so the lock files are stale: remove them, as an
        // operator would after a crash.
        for lock in [
            self.data().join("postmaster.pid"),
            self.dir.join(format!(".s.PGSQL.{}.lock", self.port)),
        ] {
            if let Err(err) = std::fs::remove_file(&lock) {
                assert!(
                    err.kind() == std::io::ErrorKind::NotFound,
                    "cannot remove {}: {err}",
                    lock.display()
                );
            }
        }
        *running = false;
    }

    /// Stops the postmaster and every process it forked with SIGSTOP: connections stay
    /// open and nothing is answered, as a hung server would, until
    /// [`PostgresServer::unpause`]. (Not [`PostgresServer::resume`], which starts a stopped
    /// server again.)
    pub fn pause(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*running {
            return;
        }
        let postmaster = postmaster_pid(&self.data());
        // The postmaster first, so that it forks no new backend in between.
        signal("STOP", &[postmaster]);
        signal("STOP", &children_of(postmaster));
    }

    /// Lets a paused server go on (SIGCONT to the postmaster and its children).
    pub fn unpause(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*running {
            return;
        }
        let postmaster = postmaster_pid(&self.data());
        signal("CONT", &children_of(postmaster));
        signal("CONT", &[postmaster]);
    }

    /// Starts the server again on the same port, with the same data (after
    /// [`PostgresServer::stop`]).
    pub fn resume(&self) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *running {
            return;
        }
        // fsync=off either way: tests kill the server process, never the machine, and the
        // WAL a process wrote survives it in the operating system's page cache. A durable
        // server writes a commit's WAL before acknowledging it, and keeps full page images
        // because a SIGKILL in the middle of writing a page can leave it torn.
        let durability = if self.durable {
            "-c synchronous_commit=on -c full_page_writes=on"
        } else {
            "-c synchronous_commit=off -c full_page_writes=off"
        };
        let mut options = format!(
            "-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off \
             {durability} -c max_connections=400",
            port = self.port,
            socket_dir = self.dir.display(),
        );
        if let Some(certs) = &self.certs {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certs.cert_file.display(),
                certs.key_file.display()
            ));
        }
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

/// The postmaster's pid, the first line of `postmaster.pid` in `data`.
fn postmaster_pid(data: &Path) -> u32 {
    let path = data.join("postmaster.pid");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("{} names no pid", path.display()))
}

/// (state, parent pid) of a process, from `/proc/<pid>/stat`.
fn process_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields follow its last `)`.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Whether `pid` runs (a zombie, dead but not yet reaped, does not).
fn running_process(pid: u32) -> bool {
    process_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The running children of `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            process_stat(*pid).is_some_and(|(state, ppid)| ppid == parent && state != 'Z')
        })
        .collect()
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
