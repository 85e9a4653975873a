//! An HTTP/1.1 upstream that tells the test what it received.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::net::localhost;

/// How long a connection may sit idle before the upstream closes it. Longer than any test
/// request, short enough that a leaked connection thread ends on its own.
const IDLE: Duration = Duration::from_secs(30);
const MAX_LINE: usize = 16 * 1024;
const MAX_HEADERS: usize = 128;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoedRequest {
    /// e.g. `GET`
    pub method: String,
    /// The request target as sent, query included.
    pub path: String,
    /// Header fields in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl EchoedRequest {
    /// The values of header `name` joined with `", "` as HTTP allows, or `None` if absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// The JSON document the upstream answers with:
    /// `{"method": .., "path": .., "headers": {name: value, ..}, "body": ..}`.
    pub fn to_json(&self) -> Value {
        let mut headers = Map::new();
        for (name, _) in &self.headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), Value::from(self.header(name)));
            }
        }
        json!({
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": String::from_utf8_lossy(&self.body),
        })
    }
}

/// A running echo upstream; it stops accepting connections when dropped.
pub struct EchoUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<EchoedRequest>>>,
    stopping: Arc<AtomicBool>,
}

impl fmt::Debug for EchoUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoUpstream")
            .field("addr", &self.addr)
            .field("requests", &self.requests().len())
            .finish()
    }
}

/// Starts an HTTP/1.1 server on a free port of 127.0.0.1 that answers every request with
/// `200 OK` and a JSON body describing it (see [`EchoedRequest::to_json`]), so a test can
/// assert exactly what tlsgate forwarded, e.g. the client-certificate headers it added.
///
/// Connections are kept alive as HTTP/1.1 allows, because proxies pool upstream connections.
/// The server runs on plain threads, one per connection, and needs no async runtime.
pub fn echo_upstream() -> EchoUpstream {
    start(false)
}

/// [`echo_upstream`] behind a PROXY protocol header: every connection must start with one (v1
/// or v2, read by this module's own parser, not tlsgate's), and every request on it is
/// reported with a `:proxy` entry among its headers, `v1 203.0.113.7:4711 > 192.0.2.1:443`
/// (`v2 LOCAL` or `v1 UNKNOWN` when the header names no addresses; a v2 header's TLVs after
/// the addresses). A connection without a
/// header is answered 400.
pub fn echo_upstream_expecting_proxy_protocol() -> EchoUpstream {
    start(true)
}

fn start(proxied: bool) -> EchoUpstream {
    let listener = TcpListener::bind(localhost(0))
        .unwrap_or_else(|e| panic!("binding the echo upstream to 127.0.0.1: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("reading the echo upstream's address: {e}"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stopping = Arc::new(AtomicBool::new(false));
    let (accept_seen, accept_stopping) = (Arc::clone(&seen), Arc::clone(&stopping));
    thread::spawn(move || {
        for stream in listener.incoming() {
            if accept_stopping.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let seen = Arc::clone(&accept_seen);
            thread::spawn(move || {
                // A broken connection only matters to the test through what the client saw.
                let _ = serve(stream, &seen, proxied);
            });
        }
    });
    EchoUpstream {
        addr,
        seen,
        stopping,
    }
}

impl EchoUpstream {
    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`, for an upstream URL in a config.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order of completion.
    pub fn requests(&self) -> Vec<EchoedRequest> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `count` requests have been received and returns them all.
    pub fn wait_for_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<EchoedRequest>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return Ok(requests);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the echo upstream on {} received {} of {count} requests within {timeout:?}: {requests:#?}",
                    self.addr,
                    requests.len()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag; if this fails the loop is already gone.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<EchoedRequest>>, proxied: bool) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let proxy = if proxied {
        match read_proxy_header(&mut reader) {
            Ok(header) => Some(header),
            Err(e) => {
                let body = format!("no PROXY protocol header: {e}\n");
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                writer.write_all(response.as_bytes())?;
                return Ok(());
            }
        }
    } else {
        None
    };
    while let Some((mut request, keep_alive)) = read_request(&mut reader, &mut writer)? {
        if let Some(header) = &proxy {
            request.headers.push((":proxy".into(), header.clone()));
        }
        if request
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        {
            let key = request.header("sec-websocket-key").unwrap_or_default();
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request);
            return websocket_echo(&key, &mut reader, &mut writer);
        }
        let body = request.to_json().to_string();
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        let connection = if keep_alive { "keep-alive" } else { "close" };
        // One write, as servers do: `write!` on the bare socket sent each piece as its own
        // segment, and with Nagle's algorithm the last ones waited for the edge's delayed ACK
        // (40 ms a request on a long-lived connection; the soak found it).
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: {connection}\r\n\r\n{body}",
            body.len()
        );
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if !keep_alive {
            break;
        }
    }
    Ok(())
}

/// Answers a WebSocket upgrade (RFC 6455) and echoes every data frame back, unmasked, until
/// the client closes. What tlsgate forwarded in the upgrade request is recorded like any
/// other request.
fn websocket_echo(key: &str, reader: &mut impl Read, writer: &mut impl Write) -> io::Result<()> {
    use base64::Engine as _;
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    write!(
        writer,
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {accept}\r\n\r\n"
    )?;
    writer.flush()?;
    loop {
        let mut head = [0u8; 2];
        reader.read_exact(&mut head)?;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                reader.read_exact(&mut b)?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                reader.read_exact(&mut b)?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        if len > MAX_BODY as u64 {
            return Err(invalid("websocket frame too large"));
        }
        let mut mask = [0u8; 4];
        if masked {
            reader.read_exact(&mut mask)?;
        }
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload)?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        // A server's frames are unmasked; echo the frame's opcode (text, binary, ping→pong).
        let reply_opcode = if opcode == 0x9 { 0xA } else { opcode };
        let mut frame = vec![0x80 | reply_opcode];
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&payload);
        writer.write_all(&frame)?;
        writer.flush()?;
        if opcode == 0x8 {
            return Ok(());
        }
    }
}

/// Reads one request; `None` when the peer closed the connection between requests.
fn read_request(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
) -> io::Result<Option<(EchoedRequest, bool)>> {
    let Some(request_line) = read_line(reader)? else {
        return Ok(None);
    };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };

    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| invalid("connection closed in headers"))?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(invalid("too many headers"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }

    let mut request = EchoedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body: Vec::new(),
    };
    let has_token = |name: &str, token: &str| {
        request
            .header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let keep_alive = if version == "HTTP/1.0" {
        has_token("connection", "keep-alive")
    } else {
        !has_token("connection", "close")
    };
    if has_token("expect", "100-continue") {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let body = if has_token("transfer-encoding", "chunked") {
        read_chunked(reader)?
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
        read_exact(reader, length)?
    } else {
        Vec::new()
    };
    request.body = body;
    Ok(Some((request, keep_alive)))
}

/// A PROXY protocol header (v1 or v2) as `v1 SRC > DST`, `v2 SRC > DST` followed by its TLVs
/// ([`describe_tlvs`]), `v1 UNKNOWN` or `v2 LOCAL`.
fn read_proxy_header(reader: &mut impl BufRead) -> io::Result<String> {
    const V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
    let first = reader.fill_buf()?.first().copied();
    if first == Some(b'P') {
        let line = read_line(reader)?.ok_or_else(|| invalid("closed in the header"))?;
        let fields: Vec<&str> = line.split(' ').collect();
        return match fields.as_slice() {
            ["PROXY", "UNKNOWN", ..] => Ok("v1 UNKNOWN".into()),
            ["PROXY", "TCP4" | "TCP6", src, dst, sport, dport] => {
                let join = |ip: &str, port: &str| {
                    if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    }
                };
                Ok(format!("v1 {} > {}", join(src, sport), join(dst, dport)))
            }
            _ => Err(invalid(format!("bad v1 header {line:?}"))),
        };
    }
    let mut fixed = [0u8; 16];
    reader.read_exact(&mut fixed)?;
    if &fixed[..12] != V2 {
        return Err(invalid("neither a v1 nor a v2 header"));
    }
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([fixed[14], fixed[15]]))];
    reader.read_exact(&mut body)?;
    if fixed[12] == 0x20 {
        return Ok("v2 LOCAL".into());
    }
    let ip4 = |b: &[u8]| std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string();
    let ip6 = |b: &[u8]| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[..16]);
        format!("[{}]", std::net::Ipv6Addr::from(o))
    };
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let (addresses, tlvs) = match (fixed[12], fixed[13]) {
        (0x21, 0x11) if body.len() >= 12 => (
            format!(
                "v2 {}:{} > {}:{}",
                ip4(&body[0..4]),
                port(&body[8..10]),
                ip4(&body[4..8]),
                port(&body[10..12])
            ),
            &body[12..],
        ),
        (0x21, 0x21) if body.len() >= 36 => (
            format!(
                "v2 {}:{} > {}:{}",
                ip6(&body[0..16]),
                port(&body[32..34]),
                ip6(&body[16..32]),
                port(&body[34..36])
            ),
            &body[36..],
        ),
        (cmd, fam) => {
            return Err(invalid(format!(
                "unexpected v2 command/family {cmd:#04x}/{fam:#04x}"
            )))
        }
    };
    Ok(format!("{addresses}{}", describe_tlvs(tlvs)?))
}

/// A v2 header's TLVs as ` authority=… alpn=… ssl=[client:0x07,verify:0,version:TLSv1.3,cn:…]`
/// (HAProxy's types, read by this parser, not tlsgate's); any other type as `tlv0xNN=LEN`.
fn describe_tlvs(mut tlvs: &[u8]) -> io::Result<String> {
    fn split(tlvs: &mut &[u8]) -> io::Result<Option<(u8, Vec<u8>)>> {
        let Some((&[kind, hi, lo], rest)) = tlvs.split_first_chunk::<3>() else {
            return if tlvs.is_empty() {
                Ok(None)
            } else {
                Err(invalid("a truncated TLV"))
            };
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let value = rest
            .get(..len)
            .ok_or_else(|| invalid("a TLV past the header"))?;
        *tlvs = &rest[len..];
        Ok(Some((kind, value.to_vec())))
    }
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let mut out = String::new();
    while let Some((kind, value)) = split(&mut tlvs)? {
        match kind {
            0x01 => out.push_str(&format!(" alpn={}", text(&value))),
            0x02 => out.push_str(&format!(" authority={}", text(&value))),
            0x20 if value.len() >= 5 => {
                let verify = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
                out.push_str(&format!(" ssl=[client:{:#04x},verify:{verify}", value[0]));
                let mut sub = &value[5..];
                while let Some((kind, value)) = split(&mut sub)? {
                    match kind {
                        0x21 => out.push_str(&format!(",version:{}", text(&value))),
                        0x22 => out.push_str(&format!(",cn:{}", text(&value))),
                        other => out.push_str(&format!(",sub{other:#04x}={}", value.len())),
                    }
                }
                out.push(']');
            }
            other => out.push_str(&format!(" tlv{other:#04x}={}", value.len())),
        }
    }
    Ok(out)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| invalid("connection closed in chunk"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailer fields, up to the blank line that ends the message.
            while read_line(reader)?.is_some_and(|l| !l.is_empty()) {}
            return Ok(body);
        }
        body.extend(read_exact(reader, size)?);
        read_line(reader)?;
        if body.len() > MAX_BODY {
            return Err(invalid("body too large"));
        }
    }
}

fn read_exact(reader: &mut impl Read, length: usize) -> io::Result<Vec<u8>> {
    if length > MAX_BODY {
        return Err(invalid("body too large"));
    }
    let mut buf = vec![0; length];
    reader.read_exact(&mut buf)?;
    Ok(buf)
}

/// One CRLF- (or LF-) terminated line without its terminator; `None` at end of stream.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid("line too long or truncated"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("line is not UTF-8"))
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}
