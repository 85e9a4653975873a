//! Plays a scenario's client against a host and classifies what happened.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tlsgate_e2e::{curl, run_bounded, tool};

use crate::hosts::{Host, HANDSHAKE_TIMEOUT_SECS};
use crate::table::{Client, Expect, ProxyHeader};

mod balancer;
mod curl;
mod openssl;

use balancer::Balancer;
use curl::{websocket, with_curl};
use openssl::{h2_ping_flood, raw, resume, s_client, staple};

/// What a client saw. The strings are client output, read through `Debug` in failure reports.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub enum Observed {
    /// An HTTP response; `upstream` is the echo's account of the request when it got one.
    Status {
        code: u16,
        body: String,
        upstream: Option<Value>,
    },
    /// The TLS handshake failed (alert, or the server hung up during it).
    Refused(String),
    /// The handshake completed and the connection closed without a response.
    Closed(String),
    /// An openssl client completed the handshake.
    Handshake,
    /// An openssl client resumed the session of a previous connection (`resume: true`).
    Resumed,
    /// The handshake came with an OCSP staple saying `good` (`ocsp_status: true`).
    Stapled,
    /// The client refused the server's certificate (curl exit 60).
    ServerUntrusted,
    /// The server kept a connection open past the deadline it should enforce.
    Hung,
    /// The client could not run as intended (a harness problem, not a host outcome).
    Broken(String),
}

impl Observed {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { code, .. } => write!(f, "{code}"),
            Self::Refused(_) => f.write_str("refused"),
            Self::Closed(_) => f.write_str("closed"),
            Self::Handshake => f.write_str("handshake"),
            Self::Resumed => f.write_str("resumed"),
            Self::Stapled => f.write_str("stapled"),
            Self::ServerUntrusted => f.write_str("server-untrusted"),
            Self::Hung => f.write_str("hung"),
            Self::Broken(why) => write!(f, "broken ({why})"),
        }
    }
}

impl Expect {
    /// Whether `observed` is what this expects, and if not, why.
    pub fn check(&self, observed: &Observed) -> (bool, String) {
        let fail = |why: String| (false, why);
        match (self, observed) {
            (Expect::Class(c) | Expect::ClassLogged { outcome: c, .. }, o)
                if *c == o.to_string() =>
            {
                (true, String::new())
            }
            (Expect::Status(s), Observed::Status { code, .. }) if s == code => {
                (true, String::new())
            }
            (
                Expect::Detailed {
                    status,
                    upstream,
                    body,
                    path,
                    ..
                },
                Observed::Status {
                    code,
                    upstream: seen,
                    body: got,
                },
            ) => {
                if status != code {
                    return fail(format!("expected {status}, got {code}"));
                }
                if let Some(b) = body {
                    if !got.contains(b.as_str()) {
                        return fail(format!("body does not contain {b:?}: {got:?}"));
                    }
                }
                if let Some(want) = path {
                    let have = seen.as_ref().and_then(|v| v["path"].as_str());
                    if have != Some(want.as_str()) {
                        return fail(format!("upstream path: wanted {want:?}, saw {have:?}"));
                    }
                }
                for (name, want) in upstream {
                    let have = seen
                        .as_ref()
                        .and_then(|v| v["headers"].get(name.as_str()))
                        .and_then(Value::as_str);
                    let ok = match (want, have) {
                        (Value::Null, None) => true,
                        (Value::Null, Some(_)) => false,
                        (Value::String(w), Some(h)) if w == "*" => !h.is_empty(),
                        (Value::String(w), Some(h)) => match w.strip_prefix('~') {
                            Some(part) => h.contains(part),
                            None => h == w,
                        },
                        _ => false,
                    };
                    if !ok {
                        return fail(format!(
                            "upstream header {name}: wanted {want}, saw {have:?}"
                        ));
                    }
                }
                (true, String::new())
            }
            (e, o) => fail(format!("expected {}, got {o}", e.summary())),
        }
    }
}

pub fn play(client: &Client, host: &Host, dir: &Path) -> Observed {
    // Through a load balancer, the client talks to the balancer, which connects from `from`.
    let balancer = match &client.proxy {
        Some(header) => match Balancer::start(header, client.from.as_deref(), host.port) {
            Ok(b) => Some(b),
            Err(e) => return Observed::Broken(format!("starting the load balancer: {e}")),
        },
        None => None,
    };
    let port = balancer.as_ref().map_or(host.port, |b| b.port);
    let direct;
    let client = if balancer.is_some() {
        direct = Client {
            from: None,
            ..client.clone()
        };
        &direct
    } else {
        client
    };
    if let Some(send) = &client.send {
        return raw(send, port);
    }
    if client.resume {
        return resume(client, port, dir);
    }
    if client.websocket || client.websocket_h2 {
        return websocket(client, port, dir);
    }
    if client.ocsp_status {
        return staple(client, port, dir);
    }
    if client.h2_ping_flood {
        return h2_ping_flood(client, port, dir);
    }
    let openssl = matches!(client.tls.as_deref(), Some("1.0" | "1.1"))
        || client.sni.as_deref() == Some("none");
    if openssl {
        s_client(client, port, dir)
    } else {
        with_curl(client, port, dir)
    }
}

fn file(dir: &Path, name: &str, ext: &str) -> String {
    dir.join(format!("{name}.{ext}")).display().to_string()
}
