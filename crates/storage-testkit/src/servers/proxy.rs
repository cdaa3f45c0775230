//! A loopback TCP proxy that a test re-points, as a failover re-points a DNS name or a load
//! balancer: connections made after [`SwitchProxy::switch_to`] reach the new server, those
//! made before stay with the old one.
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
use std::sync::atomic::{AtomicU16, Ordering};
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
                let to = target.load(Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let (Ok(client_out), Ok(server_out)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                pipe(client, server_out);
                pipe(server, client_out);
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
