//! The L4 load balancer a scenario's client can sit behind: it connects from the scenario's source,
//! writes the PROXY header by hand and relays.

use super::*;

/// An L4 load balancer in front of the host, as HAProxy or an AWS NLB is: for each client
/// connection it connects to the host (from `from` when given), sends a PROXY protocol header
/// naming the scenario's source as the client — written here by hand, not by tlsgate's code —
/// and relays bytes both ways, half-closes included. It stops accepting when dropped.
pub(super) struct Balancer {
    pub(super) port: u16,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Balancer {
    pub(super) fn start(
        header: &ProxyHeader,
        from: Option<&str>,
        host_port: u16,
    ) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let host: SocketAddr = ([127, 0, 0, 1], host_port).into();
        let bytes = header_bytes(header, host)?;
        let from: Option<std::net::Ipv4Addr> = match from {
            Some(f) => Some(
                f.parse()
                    .map_err(|_| invalid_input(format!("from `{f}`")))?,
            ),
            None => None,
        };
        let stopping = std::sync::Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let bytes = bytes.clone();
                std::thread::spawn(move || {
                    let Ok(mut upstream) = connect_from(from, host) else {
                        return;
                    };
                    if upstream.write_all(&bytes).is_err() {
                        return;
                    }
                    relay(client, upstream);
                });
            }
        });
        Ok(Self { port, stopping })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
    }
}

fn invalid_input(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, what)
}

/// The PROXY protocol header for a client at `header.source` reaching `host`.
fn header_bytes(header: &ProxyHeader, host: SocketAddr) -> std::io::Result<Vec<u8>> {
    let source: Option<SocketAddr> = match header.source.as_str() {
        "local" => None,
        s => Some(
            s.parse()
                .map_err(|_| invalid_input(format!("source `{s}`")))?,
        ),
    };
    match (header.version, source) {
        (1, None) => Ok(b"PROXY UNKNOWN\r\n".to_vec()),
        (1, Some(src)) => Ok(format!(
            "PROXY {} {} {} {} {}\r\n",
            if src.is_ipv4() { "TCP4" } else { "TCP6" },
            src.ip(),
            host.ip(),
            src.port(),
            host.port()
        )
        .into_bytes()),
        (2, source) => {
            let mut v = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            match source {
                None => v.extend_from_slice(&[0x20, 0x00, 0, 0]),
                Some(SocketAddr::V4(src)) => {
                    v.extend_from_slice(&[0x21, 0x11, 0, 12]);
                    v.extend_from_slice(&src.ip().octets());
                    v.extend_from_slice(&[127, 0, 0, 1]);
                    v.extend_from_slice(&src.port().to_be_bytes());
                    v.extend_from_slice(&host.port().to_be_bytes());
                }
                Some(SocketAddr::V6(src)) => {
                    v.extend_from_slice(&[0x21, 0x21, 0, 36]);
                    v.extend_from_slice(&src.ip().octets());
                    v.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
                    v.extend_from_slice(&src.port().to_be_bytes());
                    v.extend_from_slice(&host.port().to_be_bytes());
                }
            }
            Ok(v)
        }
        (other, _) => Err(invalid_input(format!("PROXY protocol version {other}"))),
    }
}

/// A TCP connection to `to`, from the loopback address `from` when given.
fn connect_from(from: Option<std::net::Ipv4Addr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let Some(from) = from else {
        return TcpStream::connect_timeout(&to, Duration::from_secs(5));
    };
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    rustix::net::bind(&fd, &SocketAddr::from((from, 0)))?;
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// Bytes both ways until both directions are done; each end's FIN is passed on.
fn relay(client: TcpStream, upstream: TcpStream) {
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let a = pipe(client, u2);
    let b = pipe(upstream, c2);
    let _ = a.join();
    let _ = b.join();
}
