//! Loopback proxies that put a fault between a client and a real server.
//!
//! [`SwitchProxy`] is re-pointed as a failover re-points a DNS name or a load balancer:
//! connections made after [`SwitchProxy::switch_to`] reach the new server, those made before
//! stay with the old one. [`ThrottlingProxy`] answers `503 SlowDown`, as a throttling S3
//! does, while told to.
//!
//! ```no_run
//! use storage_testkit::servers::proxy::SwitchProxy;
//!
//! let proxy = SwitchProxy::to(6379);
//! let url = format!("redis://127.0.0.1:{}", proxy.port());
//! // ... connect through `url`, then fail over:
//! proxy.switch_to(6380);
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// The proxy; it listens until the test process ends.
#[derive(Debug)]
pub struct SwitchProxy {
    port: u16,
    upstream: Arc<AtomicU16>,
}

impl SwitchProxy {
    /// Listens on a free loopback port and forwards new connections to loopback
    /// `upstream_port`.
    pub fn to(upstream_port: u16) -> SwitchProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        let port = listener.local_addr().expect("a bound address").port();
        let upstream = Arc::new(AtomicU16::new(upstream_port));
        let target = Arc::clone(&upstream);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                forward(client, target.load(Ordering::SeqCst));
            }
        });
        SwitchProxy { port, upstream }
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends connections made from now on to loopback `upstream_port`.
    pub fn switch_to(&self, upstream_port: u16) {
        self.upstream.store(upstream_port, Ordering::SeqCst);
    }
}

/// Connects `client` to loopback `upstream_port`, both ways; a client whose server cannot
/// be reached is dropped (its connection closes).
fn forward(client: TcpStream, upstream_port: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
        return;
    };
    let (Ok(client_out), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    pipe(client, server_out);
    pipe(server, client_out);
}

/// Copies `from` into `to` on a thread of its own until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// A loopback HTTP proxy that can throttle, as S3 does with `503 SlowDown`: while
/// throttling, every new connection gets one `503` answer (its request read whole first,
/// then `Connection: close`); otherwise connections are forwarded to the upstream port.
/// Connections forwarded before throttling starts stay forwarded, so a test throttles
/// a client that has not connected yet, or a new one.
#[derive(Debug)]
pub struct ThrottlingProxy {
    port: u16,
    throttled: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

impl ThrottlingProxy {
    /// Listens on a free loopback port, throttling from the start when `throttled`.
    pub fn to(upstream_port: u16, throttled: bool) -> ThrottlingProxy {
        Self::answering(
            upstream_port,
            throttled,
            503,
            "Service Unavailable",
            "SlowDown",
        )
    }

    /// The same proxy answering another S3 error while refusing, e.g. `507` with MinIO's
    /// `XMinioStorageFull`.
    pub fn answering(
        upstream_port: u16,
        throttled: bool,
        status: u16,
        reason: &'static str,
        code: &'static str,
    ) -> ThrottlingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        let port = listener.local_addr().expect("a bound address").port();
        let proxy = ThrottlingProxy {
            port,
            throttled: Arc::new(AtomicBool::new(throttled)),
            refused: Arc::new(AtomicU64::new(0)),
        };
        let (throttled, refused) = (Arc::clone(&proxy.throttled), Arc::clone(&proxy.refused));
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if throttled.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    thread::spawn(move || answer_refusal(client, status, reason, code));
                    continue;
                }
                forward(client, upstream_port);
            }
        });
        proxy
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts or stops throttling new connections.
    pub fn throttle(&self, on: bool) {
        self.throttled.store(on, Ordering::SeqCst);
    }

    /// How many connections were answered `503` so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP request (headers, then `Content-Length` bytes of body) and answers it
/// with an S3 error. Reading the body first matters: closing a socket with unread data
/// resets it, and the client would see a lost connection instead of the answer.
fn answer_refusal(mut client: TcpStream, status: u16, reason: &str, code: &str) {
    let _ = client.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let header_end = loop {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let headers = String::from_utf8_lossy(&received[..header_end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body_read = received.len() - header_end;
    while body_read < length {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => body_read += n,
        }
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{reason}</Message></Error>"
    );
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes());
    let _ = client.shutdown(Shutdown::Write);
    // Let the client read the answer and close first.
    let _ = client.read(&mut buffer);
}
