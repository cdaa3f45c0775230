//! A server that accepts TCP connections and never answers, for tests that check every
//! connection attempt is bounded by the configured connect timeout.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A loopback listener that accepts every connection and never writes a byte. The
/// accepted sockets are kept open until it is dropped.
#[derive(Debug)]
pub struct HungServer {
    port: u16,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
}

impl HungServer {
    /// Binds `127.0.0.1:0` and accepts in a background thread.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                kept.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(stream);
            }
        });
        HungServer { port, accepted }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        for stream in self
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}
