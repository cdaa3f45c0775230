//! The throwaway servers fault tests kill and restart: `stop()` kills them (nothing is
//! left listening), a restart comes back on the same port with the same data, and only a
//! durable server keeps what it acknowledged before the kill.

use std::process::Command;

use storage_testkit::servers::postgres::PostgresServer;
use storage_testkit::servers::redis::RedisServer;
use storage_testkit::servers::{require_binary, wait_for_port};

fn redis_cli(server: &RedisServer, args: &[&str]) -> String {
    require_binary("redis-cli", "redis-tools");
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(args)
        .output()
        .expect("cannot run redis-cli");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn psql(server: &PostgresServer, sql: &str) -> String {
    require_binary("psql", "postgresql-client");
    let output = Command::new("psql")
        .args([
            &server.url(),
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("cannot run psql");
    assert!(output.status.success(), "psql {sql:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn assert_not_listening(port: u16) {
    assert!(
        !wait_for_port(port, std::time::Duration::from_millis(300)),
        "something still listens on {port} after stop()"
    );
}

/// Writes a key, kills the server, restarts it and reads the key back.
fn redis_value_after_a_kill(server: &RedisServer) -> String {
    assert_eq!(redis_cli(server, &["SET", "acknowledged", "yes"]), "OK");
    server.stop();
    assert_not_listening(server.port());
    server.restart();
    // A durable server may still be loading its append-only file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while redis_cli(server, &["PING"]) != "PONG" {
        assert!(std::time::Instant::now() < deadline, "redis kept loading");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    redis_cli(server, &["GET", "acknowledged"])
}

#[test]
fn a_durable_redis_keeps_an_acknowledged_write_across_a_kill() {
    let server = RedisServer::durable();
    assert_eq!(redis_value_after_a_kill(&server), "yes");
}

#[test]
fn the_default_redis_keeps_nothing_across_a_kill() {
    let server = RedisServer::start();
    assert_eq!(redis_value_after_a_kill(&server), "");
}

#[test]
fn a_durable_postgres_keeps_a_commit_across_a_kill_of_every_process() {
    let server = PostgresServer::durable();
    assert_eq!(psql(&server, "SHOW synchronous_commit"), "on");
    psql(
        &server,
        "CREATE TABLE acknowledged (id int); INSERT INTO acknowledged VALUES (1)",
    );
    // A session busy in a query: its backend dies with the server, so the query fails
    // (it would succeed after 30 s if the backend survived).
    let mut busy = Command::new("psql")
        .args([&server.url(), "-X", "-c", "SELECT pg_sleep(30)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot run psql");
    std::thread::sleep(std::time::Duration::from_millis(300));
    server.stop();
    assert_not_listening(server.port());
    assert!(!busy.wait().unwrap().success());
    server.resume();
    assert_eq!(psql(&server, "SELECT count(*) FROM acknowledged"), "1");
}
