//! Ports on the loopback interface.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// `127.0.0.1:port`: every process under test listens there and nowhere else.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The kernel picks it and the socket is closed again, so another process could in principle
/// take it before the process under test binds it; ephemeral ports are handed out in sequence,
/// which makes that rare enough for tests.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(localhost(0))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("reading the port of 127.0.0.1:0: {e}"))
        .port()
}

/// Waits until something accepts TCP connections on `addr`, or `timeout` passes.
pub fn wait_port(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last_error;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(250)) {
            Ok(_) => return Ok(()),
            Err(e) => last_error = e,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing accepted connections on {addr} within {timeout:?} (last error: {last_error})"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
