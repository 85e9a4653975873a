//! PROXY protocol on the wire: the header a load balancer sends before the ClientHello, read
//! exactly (never a byte of the TLS record behind it), under the ClientHello deadline.
//! Parsing is core's ([`tlsgate_core::proxy_protocol`]); so is the header tlsgate sends
//! upstream ([`upstream_header`]).

use std::io;

use tlsgate_core::config::Upstream;
use tlsgate_core::proxy_protocol::{self, Header, Progress, V2_MAX};
use tlsgate_core::TlsFacts;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Why no header was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Header(#[from] proxy_protocol::Error),
    #[error("the connection closed after {0} bytes of a PROXY protocol header")]
    Closed(usize),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// A label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Header(e) => e.as_str(),
            Self::Closed(_) | Self::Io(_) => "proxy_protocol_incomplete",
        }
    }
}

/// Reads the header at the start of `stream`. The caller bounds it with a deadline.
pub async fn read_header(stream: &mut TcpStream) -> Result<Header, ReadError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match proxy_protocol::parse(&buf)? {
            Progress::Done { header, .. } => return Ok(header),
            Progress::Need(total) => {
                // `parse` asks for more than it has, and never past the longest header it
                // accepts; anything else would be a bug there, answered as a bad header.
                if total <= buf.len() || total > V2_MAX {
                    return Err(proxy_protocol::Error::V2("unbounded header").into());
                }
                let from = buf.len();
                buf.resize(total, 0);
                let mut at = from;
                while at < buf.len() {
                    match stream.read(&mut buf[at..]).await? {
                        0 => return Err(ReadError::Closed(at)),
                        n => at += n,
                    }
                }
            }
        }
    }
}

/// The header an upstream with `proxy_protocol` gets in front of a connection made for the
/// client of `facts`: the client's address, the one it connected to and, with
/// `proxy_protocol_tlvs`, its TLS facts ([`proxy_protocol::tls_tlvs`]).
pub fn upstream_header(upstream: &Upstream, facts: &TlsFacts) -> Option<Vec<u8>> {
    let version = upstream.proxy_protocol?;
    let client = std::net::SocketAddr::new(facts.client_ip, facts.client_port);
    let tlvs = if upstream.proxy_protocol_tlvs {
        proxy_protocol::tls_tlvs(facts)
    } else {
        Vec::new()
    };
    Some(proxy_protocol::encode(version, client, facts.server, &tlvs))
}
