//! Connections to an endpoint's upstream: plain TCP or TLS (with tlsgate's client certificate),
//! under the connect deadline, and the pooled HTTP client built on them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tlsgate_core::config::{Upstream, UpstreamProtocol};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::limits::UPSTREAM_POOL_IDLE;
use crate::watched::Watched;

/// Why the upstream could not be reached. `as_str` labels logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("connecting to {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls { addr: String, source: io::Error },
}

impl ConnectError {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "connect_timeout",
            Self::Io { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused => {
                "connection_refused"
            }
            Self::Io { .. } => "connect_failed",
            Self::Tls { source, .. } => match tls_error(source) {
                Some(rustls::Error::InvalidCertificate(_)) => "upstream_certificate_invalid",
                Some(rustls::Error::AlertReceived(_)) => "upstream_tls_alert",
                _ => "upstream_tls_failed",
            },
        }
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it is.
pub fn tls_error(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
}

/// A connection to the upstream.
#[derive(Debug)]
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Where and how to connect; cheap to clone (the TLS config is shared).
#[derive(Clone, Debug)]
pub struct Dialer {
    inner: Arc<DialerInner>,
}

#[derive(Clone)]
struct DialerInner {
    host: String,
    port: u16,
    /// `--resolve`: connect here instead of resolving `host`.
    address: Option<std::net::SocketAddr>,
    /// `host:port` for messages.
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    /// A PROXY protocol header sent first on every connection (for one client's connections).
    proxy_header: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for DialerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("addr", &self.addr)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Dialer {
    pub fn new(
        upstream: &Upstream,
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
        timeout: Duration,
    ) -> Self {
        let mut addr = if upstream.host.contains(':') {
            format!("[{}]:{}", upstream.host, upstream.port)
        } else {
            format!("{}:{}", upstream.host, upstream.port)
        };
        if let Some(address) = upstream.address {
            addr = format!("{addr} (at {address})");
        }
        Self {
            inner: Arc::new(DialerInner {
                host: upstream.host.clone(),
                port: upstream.port,
                address: upstream.address,
                addr,
                tls: tls.map(|(config, name)| (TlsConnector::from(config), name)),
                timeout,
                proxy_header: None,
            }),
        }
    }

    /// This dialer for one client's connections: each starts with `header` (PROXY protocol),
    /// before TLS.
    pub fn with_proxy_header(&self, header: Vec<u8>) -> Self {
        let mut inner = (*self.inner).clone();
        inner.proxy_header = Some(header.into());
        Self {
            inner: Arc::new(inner),
        }
    }

    /// `host:port` of the upstream.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// TCP connect and, for TLS upstreams, the handshake, all within the connect deadline.
    pub async fn connect(&self) -> Result<UpstreamStream, ConnectError> {
        let inner = &self.inner;
        let attempt = async {
            let mut tcp = match inner.address {
                Some(address) => TcpStream::connect(address).await,
                None => TcpStream::connect((inner.host.as_str(), inner.port)).await,
            }
            .map_err(|source| ConnectError::Io {
                addr: inner.addr.clone(),
                source,
            })?;
            // Latency matters more than packet count for proxied requests.
            let _ = tcp.set_nodelay(true);
            if let Some(header) = &inner.proxy_header {
                tokio::io::AsyncWriteExt::write_all(&mut tcp, header)
                    .await
                    .map_err(|source| ConnectError::Io {
                        addr: inner.addr.clone(),
                        source,
                    })?;
            }
            match &inner.tls {
                None => Ok(UpstreamStream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|s| UpstreamStream::Tls(Box::new(s)))
                    .map_err(|source| ConnectError::Tls {
                        addr: inner.addr.clone(),
                        source,
                    }),
            }
        };
        match tokio::time::timeout(inner.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout {
                addr: inner.addr.clone(),
                after: inner.timeout,
            }),
        }
    }
}

impl tower_service::Service<http::Uri> for Dialer {
    type Response = TokioIo<UpstreamStream>;
    type Error = ConnectError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// The URI only keys the pool: an endpoint has exactly one upstream.
    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move { dialer.connect().await.map(TokioIo::new) })
    }
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        match self {
            Self::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                connected.negotiated_h2()
            }
            _ => connected,
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A client request's body on its way upstream, cut if it stops moving.
/// A request without a body goes as `Empty`, so it can be sent again
/// (`http::closed_before_response`).
pub type UploadBody =
    Watched<http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>>;

/// The pooled HTTP client of one endpoint.
pub type HttpClient = Client<Dialer, UploadBody>;

pub fn http_client(dialer: Dialer, protocol: UpstreamProtocol) -> HttpClient {
    client(dialer, protocol, usize::MAX)
}

/// A client that keeps no connection: each request gets a new one. For sending a request
/// again after a pooled connection closed under it, when the pool's other connections may be
/// closing too (an upstream that reloads closes them all).
pub fn fresh_connection_client(dialer: Dialer, protocol: UpstreamProtocol) -> HttpClient {
    client(dialer, protocol, 0)
}

fn client(dialer: Dialer, protocol: UpstreamProtocol, max_idle: usize) -> HttpClient {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(UPSTREAM_POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(protocol == UpstreamProtocol::Http2);
    builder.build(dialer)
}

/// The [`ConnectError`] behind a client error, if connecting is what failed.
pub fn connect_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConnectError> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ConnectError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
