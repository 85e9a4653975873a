//! Ports on the loopback interface.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// `127.0.0.1:port`: every process under test listens there and nowhere else.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A TCP port on 127.0.0.1 that was free a moment ago, and that nothing else will be handed.
///
/// The socket is closed again before the process under test binds the port, so the port must
/// come from where the kernel never picks on its own: below the ephemeral range
/// (`ip_local_port_range`), which `bind(:0)` and every outgoing connection draw from. A port
/// picked from inside that range was once taken by a listener started in between (a CI run
/// lost an OCSP responder that way: the certificates named its port, which a native host
/// then got from `bind(:0)`). Within one process no port is handed out twice; processes start
/// at different offsets (their pid), and each candidate is bound once to check it is free.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some((low, high)) = reserved_range() else {
        // No room outside the ephemeral range: the kernel's pick, as before.
        let listener = TcpListener::bind(localhost(0))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 to find a free port: {e}"));
        return listener
            .local_addr()
            .unwrap_or_else(|e| panic!("reading the port of 127.0.0.1:0: {e}"))
            .port();
    };
    let size = high - low;
    let start = std::process::id().wrapping_mul(7919) % size;
    for _ in 0..size {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % size;
        // Fits: low + offset < high <= 65536.
        let port = u16::try_from(low + offset).unwrap_or(0);
        if port != 0 && TcpListener::bind(localhost(port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {low}..{high}");
}

/// Ports outside the kernel's ephemeral range, which tests hand out themselves: below it from
/// 10000 (Linux's default range starts at 32768), else above it; `None` when neither side has
/// a thousand.
fn reserved_range() -> Option<(u32, u32)> {
    const LOW: u32 = 10_000;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let mut bounds = range
        .iter()
        .flat_map(|r| r.split_whitespace())
        .filter_map(|n| n.parse::<u32>().ok());
    let (first, last) = (
        bounds.next().unwrap_or(32_768),
        bounds.next().unwrap_or(60_999),
    );
    if first >= LOW + 1_000 {
        Some((LOW, first))
    } else if last + 1_000 < 65_536 {
        Some((last + 1, 65_536))
    } else {
        None
    }
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
