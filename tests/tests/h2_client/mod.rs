//! An HTTP/2 load client that does what RFC 9113 lets every client do and h2load does not:
//! retry a request the server proves it never processed.
//!
//! When a server goes away gracefully it sends GOAWAY naming the last stream it may have
//! processed; streams above it "can be safely retried" (RFC 9113 §6.8, §8.7), and so can a
//! stream reset with `REFUSED_STREAM`. Browsers, gRPC and Envoy itself retry those. h2load
//! counts them as failed, so under a draining edge it reports losses no real client would see,
//! and hides whether there were real ones among them. This client tells them apart:
//!
//! - **unprocessed**: the stream's error is the peer's GOAWAY (the `h2` crate gives that error
//!   only to streams above the GOAWAY's last stream id) or a `REFUSED_STREAM` reset. Counted,
//!   and the request is sent again on a new connection.
//! - **failed**: anything else once a request was sent — a reset, a connection cut under a
//!   stream the server may have processed, no answer within the deadline, a broken body.
//!
//! A request that never left (the connection was already going away) is simply sent on the
//! next connection. Connection setup failures (TCP or TLS) count as failed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Each wait on the edge has this deadline; a request without an answer by then failed.
const DEADLINE: Duration = Duration::from_secs(15);

/// What a run saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Responses read to their end with a 2xx status.
    pub ok: u64,
    /// Responses read to their end with another status.
    pub not_2xx: u64,
    /// Requests the edge proved it never processed (GOAWAY or `REFUSED_STREAM`), sent again.
    pub unprocessed: u64,
    /// Requests lost: sent, possibly processed, never answered in full.
    pub failed: u64,
    /// Connections opened.
    pub connections: u64,
    /// The first few failures, for the assertion message.
    pub failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.failures.len() < 10 {
            self.failures.push(why);
        }
    }
}

/// Loads `https://{host}/` at `addr` for `duration` over `connections` HTTP/2 connections with
/// `streams` requests in flight on each. `tls` must offer ALPN `h2`.
pub fn run(
    addr: SocketAddr,
    host: &'static str,
    tls: TlsConnector,
    connections: usize,
    streams: usize,
    duration: Duration,
) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let end = Instant::now() + duration;
    runtime.block_on(async {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let job = Job {
                    addr,
                    host,
                    tls: tls.clone(),
                    streams,
                    end,
                    tally: Arc::clone(&tally),
                };
                tokio::spawn(job.connections())
            })
            .collect();
        for worker in workers {
            worker.await.expect("a load worker panicked");
        }
    });
    drop(runtime);
    Arc::try_unwrap(tally)
        .expect("every worker has ended")
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone)]
struct Job {
    addr: SocketAddr,
    host: &'static str,
    tls: TlsConnector,
    streams: usize,
    end: Instant,
    tally: Arc<Mutex<Tally>>,
}

/// How one stream ended.
enum Outcome {
    Answered(u16),
    /// Never processed, by the server's own word: send it again.
    Unprocessed,
    /// The connection can take no more requests; nothing was sent.
    ConnectionDone,
    Lost(String),
}

impl Job {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One connection after another until the end, each carrying `streams` request loops.
    async fn connections(self) {
        while Instant::now() < self.end {
            let sender = match self.connect().await {
                Ok(sender) => sender,
                Err(why) => {
                    self.tally().fail(why);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.tally().connections += 1;
            let loops: Vec<_> = (0..self.streams)
                .map(|_| tokio::spawn(self.clone().requests(sender.clone())))
                .collect();
            drop(sender);
            for stream in loops {
                stream.await.expect("a request loop panicked");
            }
        }
    }

    async fn connect(&self) -> Result<h2::client::SendRequest<Bytes>, String> {
        let setup = async {
            let tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let name = ServerName::try_from(self.host).map_err(|e| e.to_string())?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (sender, connection) = h2::client::handshake(tls)
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            // Drives the connection; ends when the server closes it or every sender is gone.
            tokio::spawn(connection);
            Ok(sender)
        };
        tokio::time::timeout(DEADLINE, setup)
            .await
            .unwrap_or_else(|_| Err(format!("no connection within {DEADLINE:?}")))
    }

    /// Requests one after another on `sender` until the end or until the connection goes away.
    async fn requests(self, sender: h2::client::SendRequest<Bytes>) {
        let mut sender = sender;
        while Instant::now() < self.end {
            match self.request(&mut sender).await {
                Outcome::Answered(status) if (200..300).contains(&status) => self.tally().ok += 1,
                Outcome::Answered(_) => self.tally().not_2xx += 1,
                Outcome::Unprocessed => {
                    self.tally().unprocessed += 1;
                    return;
                }
                Outcome::ConnectionDone => return,
                Outcome::Lost(why) => {
                    self.tally().fail(why);
                    return;
                }
            }
        }
    }

    async fn request(&self, sender: &mut h2::client::SendRequest<Bytes>) -> Outcome {
        let ready = match tokio::time::timeout(DEADLINE, sender.clone().ready()).await {
            Ok(Ok(ready)) => ready,
            // GOAWAY seen or connection closed before anything was sent: nothing to lose.
            Ok(Err(_)) => return Outcome::ConnectionDone,
            Err(_) => return Outcome::Lost(format!("no stream slot within {DEADLINE:?}")),
        };
        *sender = ready;
        let request = http::Request::get(format!("https://{}/", self.host))
            .body(())
            .expect("a static request");
        let response = match sender.send_request(request, true) {
            Ok((response, _)) => response,
            Err(_) => return Outcome::ConnectionDone,
        };
        let answer = async {
            let response = response.await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Ok::<_, h2::Error>(status)
        };
        match tokio::time::timeout(DEADLINE, answer).await {
            Ok(Ok(status)) => Outcome::Answered(status),
            Ok(Err(e)) if never_processed(&e) => Outcome::Unprocessed,
            Ok(Err(e)) => Outcome::Lost(describe(&e)),
            Err(_) => Outcome::Lost(format!("no answer within {DEADLINE:?}")),
        }
    }
}

/// True when the server has said it did not process the stream: its GOAWAY's last stream id
/// is below this stream (the only streams the `h2` crate fails with the peer's GOAWAY), or it
/// reset the stream with `REFUSED_STREAM`.
fn never_processed(e: &h2::Error) -> bool {
    e.is_remote() && (e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM))
}

fn describe(e: &h2::Error) -> String {
    let kind = if e.is_go_away() {
        "GOAWAY"
    } else if e.is_reset() {
        "RST_STREAM"
    } else if e.is_io() {
        "I/O"
    } else {
        "protocol"
    };
    let side = if e.is_remote() { "remote" } else { "local" };
    format!("{kind} ({side}, reason {:?}): {e}", e.reason())
}
