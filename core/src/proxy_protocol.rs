//! The PROXY protocol (HAProxy's, versions 1 and 2): the header an L4 load balancer puts in
//! front of a connection to say whom it came from, and the one tlsgate puts in front of an
//! upstream connection to pass the client on.
//!
//! Parsing is incremental and never reads past the header: [`parse`] says how many bytes it
//! needs in total before it can say more, so a host reads exactly that many and the TLS
//! ClientHello behind the header stays unread in the socket. Both directions are pure functions
//! over bytes (no I/O), which is what the fuzz target and the unit tests drive.
//!
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The twelve bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header the specification allows, CRLF included.
pub const V1_MAX: usize = 107;
/// The longest version 2 header tlsgate accepts (16 fixed bytes, addresses and TLVs). The
/// format allows 64 KiB of TLVs; load balancers send a few dozen bytes, and a header is read
/// before the peer has proven anything, so the bound stays small.
pub const V2_MAX: usize = 16 + 1024;

const V1_PREFIX: &[u8] = b"PROXY ";

/// PROXY protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Text: `PROXY TCP4 203.0.113.7 192.0.2.1 4711 443\r\n`.
    V1,
    /// Binary, with optional TLVs.
    V2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "1",
            Self::V2 => "2",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.as_str())
    }
}

/// Where the connection really came from and went to, as the load balancer saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    /// `None` for a v2 `LOCAL` command (the balancer's own health check) or an `UNKNOWN` /
    /// `UNSPEC` family: the connection's own addresses stand.
    pub addresses: Option<Addresses>,
}

/// How far [`parse`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The header is not complete: have at least this many bytes in total, then call again.
    /// Never more than the header is long, so nothing behind it is read.
    Need(usize),
    /// A complete header of `length` bytes.
    Done { header: Header, length: usize },
}

/// Why a header was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol v1 header: {0}")]
    V1(&'static str),
    #[error("malformed PROXY protocol v2 header: {0}")]
    V2(&'static str),
    #[error("PROXY protocol v2 header of {0} bytes; tlsgate accepts at most {V2_MAX}")]
    TooLong(usize),
    #[error("PROXY protocol v2 header for {0}: only TCP over IPv4 and IPv6 is supported")]
    Unsupported(&'static str),
}

impl Error {
    /// A label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "proxy_protocol_missing",
            Self::V1(_) | Self::V2(_) | Self::TooLong(_) => "proxy_protocol_malformed",
            Self::Unsupported(_) => "proxy_protocol_unsupported",
        }
    }
}

/// Parses the header at the start of `buf`. Call with the bytes read so far; on
/// [`Progress::Need`] read up to that total and call again.
pub fn parse(buf: &[u8]) -> Result<Progress, Error> {
    // Eight bytes tell the versions apart and are shorter than either header can be.
    const PROBE: usize = 8;
    if buf.len() < PROBE {
        let v1 = V1_PREFIX.starts_with(&buf[..buf.len().min(V1_PREFIX.len())]);
        let v2 = V2_SIGNATURE.starts_with(buf);
        return if v1 || v2 {
            Ok(Progress::Need(PROBE))
        } else {
            Err(Error::Missing)
        };
    }
    if buf.starts_with(V1_PREFIX) {
        parse_v1(buf)
    } else if V2_SIGNATURE.starts_with(&buf[..PROBE]) {
        parse_v2(buf)
    } else {
        Err(Error::Missing)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Progress, Error> {
    // The shortest line is `PROXY UNKNOWN\r\n`; past that, one byte at a time up to the CRLF.
    const SHORTEST: usize = 15;
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(Error::V1("no CRLF within 107 bytes"));
        }
        if buf.contains(&b'\n') || buf.contains(&b'\0') {
            return Err(Error::V1("stray control character"));
        }
        return Ok(Progress::Need((buf.len() + 1).max(SHORTEST)));
    };
    let line =
        std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| Error::V1("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let addresses = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, Error> {
                let ip = if *family == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| Error::V1("an address does not match its family"))
            };
            let port = |s: &str| -> Result<u16, Error> {
                let leading_zero = s.len() > 1 && s.starts_with('0');
                match s.parse::<u16>() {
                    Ok(p) if !leading_zero && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
                    _ => Err(Error::V1("a port is not a number 0-65535")),
                }
            };
            Some(Addresses {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            })
        }
        [family, ..] if !matches!(*family, "TCP4" | "TCP6") => {
            return Err(Error::V1("the protocol is not TCP4, TCP6 or UNKNOWN"))
        }
        _ => return Err(Error::V1("wrong number of fields")),
    };
    Ok(Progress::Done {
        header: Header {
            version: Version::V1,
            addresses,
        },
        length: end + 2,
    })
}

fn parse_v2(buf: &[u8]) -> Result<Progress, Error> {
    if buf.len() < 16 {
        return Ok(Progress::Need(16));
    }
    if buf[..12] != V2_SIGNATURE {
        return Err(Error::Missing);
    }
    let length = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if length > V2_MAX {
        return Err(Error::TooLong(length));
    }
    if buf[12] >> 4 != 2 {
        return Err(Error::V2("version nibble is not 2"));
    }
    let local = match buf[12] & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::V2("command is neither LOCAL nor PROXY")),
    };
    if buf.len() < length {
        return Ok(Progress::Need(length));
    }
    let body = &buf[16..length];
    let addresses = match buf[13] {
        // AF_INET, STREAM
        0x11 => {
            let a = body
                .get(..12)
                .ok_or(Error::V2("too short for IPv4 addresses"))?;
            let v4 = |o: usize| Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]);
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            Some(Addresses {
                source: SocketAddr::new(IpAddr::V4(v4(0)), port(8)),
                destination: SocketAddr::new(IpAddr::V4(v4(4)), port(10)),
            })
        }
        // AF_INET6, STREAM
        0x21 => {
            let a = body
                .get(..36)
                .ok_or(Error::V2("too short for IPv6 addresses"))?;
            let v6 = |o: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[o..o + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            Some(Addresses {
                source: SocketAddr::new(IpAddr::V6(v6(0)), port(32)),
                destination: SocketAddr::new(IpAddr::V6(v6(16)), port(34)),
            })
        }
        0x00 => None,
        _ if local => None,
        0x31 | 0x32 => return Err(Error::Unsupported("a UNIX socket")),
        0x12 | 0x22 => return Err(Error::Unsupported("UDP")),
        _ => return Err(Error::V2("unknown address family or transport")),
    };
    Ok(Progress::Done {
        header: Header {
            version: Version::V2,
            addresses: if local { None } else { addresses },
        },
        length,
    })
}

/// Type-length-value entries a v2 header may carry (section 2.2 of the specification).
pub mod tlv {
    /// The application protocol negotiated (ALPN), e.g. `h2`.
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (TLS SNI).
    pub const AUTHORITY: u8 = 0x02;
    /// TLS facts: a `client` bit field, a 32-bit `verify` result (0: the client certificate
    /// verified) and sub-TLVs.
    pub const SSL: u8 = 0x20;
    /// Sub-TLV of [`SSL`]: the TLS version, e.g. `TLSv1.3`.
    pub const SSL_VERSION: u8 = 0x21;
    /// Sub-TLV of [`SSL`]: the client certificate's subject common name.
    pub const SSL_CN: u8 = 0x22;
    /// [`SSL`] `client` bit: the connection is TLS.
    pub const CLIENT_SSL: u8 = 0x01;
    /// [`SSL`] `client` bit: a client certificate was presented on this connection.
    pub const CLIENT_CERT_CONN: u8 = 0x02;
    /// [`SSL`] `client` bit: a client certificate was presented in this TLS session (this
    /// connection, or the one whose session it resumed).
    pub const CLIENT_CERT_SESS: u8 = 0x04;
}

/// The header for a connection from `source` to `destination`, with `tlvs` (v2 only; a TLV
/// longer than 65535 bytes, or TLVs past [`V2_MAX`], are left out). Mixed address families are
/// sent as IPv6, an IPv4 address mapped (`::ffff:a.b.c.d`), as HAProxy does.
pub fn encode(
    version: Version,
    source: SocketAddr,
    destination: SocketAddr,
    tlvs: &[(u8, Vec<u8>)],
) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    match version {
        Version::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        Version::V2 => {
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11);
                    out.extend_from_slice(&[0, 0]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21);
                    out.extend_from_slice(&[0, 0]);
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
            for (kind, value) in tlvs {
                let Ok(len) = u16::try_from(value.len()) else {
                    continue;
                };
                if out.len() + 3 + value.len() > V2_MAX {
                    continue;
                }
                out.push(*kind);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(value);
            }
            let body = u16::try_from(out.len() - 16).unwrap_or(u16::MAX);
            out[14..16].copy_from_slice(&body.to_be_bytes());
            out
        }
    }
}

/// The TLVs `upstream.proxy_protocol_tlvs` puts in a v2 header, in the layout HAProxy's
/// `send-proxy-v2-ssl-cn` uses, so upstreams that read HAProxy's read tlsgate's:
///
/// - [`tlv::AUTHORITY`]: the server name the client asked for (SNI), when it sent one;
/// - [`tlv::ALPN`]: the protocol negotiated with the client, when there is one;
/// - [`tlv::SSL`]: the `client` bits (TLS; a certificate presented on this connection, or in
///   the resumed session), `verify` (0 only for a certificate that verified: chained to the
///   endpoint's CAs, in its validity period, not revoked), then sub-TLVs: the TLS version
///   (`TLSv1.3`) and, for a verified certificate with one, its subject's common name.
///
/// An unverified certificate's name is never sent: the upstream could take it for an identity.
pub fn tls_tlvs(facts: &crate::facts::TlsFacts) -> Vec<(u8, Vec<u8>)> {
    use crate::facts::{ClientCert, TlsVersion};
    let mut out = Vec::with_capacity(3);
    if let Some(sni) = &facts.sni {
        out.push((tlv::AUTHORITY, sni.as_bytes().to_vec()));
    }
    if let Some(alpn) = &facts.alpn {
        out.push((tlv::ALPN, alpn.as_bytes().to_vec()));
    }
    let mut client = tlv::CLIENT_SSL;
    if !matches!(facts.client_cert, ClientCert::Absent) {
        client |= if facts.resumed {
            tlv::CLIENT_CERT_SESS
        } else {
            tlv::CLIENT_CERT_CONN | tlv::CLIENT_CERT_SESS
        };
    }
    let verified = match &facts.client_cert {
        ClientCert::Verified(cert) => Some(cert.subject.common_name.as_str()),
        _ => None,
    };
    let verify: u32 = if verified.is_some() { 0 } else { 1 };
    let mut ssl = vec![client];
    ssl.extend_from_slice(&verify.to_be_bytes());
    let mut sub = |kind: u8, value: &[u8]| {
        if let Ok(len) = u16::try_from(value.len()) {
            ssl.push(kind);
            ssl.extend_from_slice(&len.to_be_bytes());
            ssl.extend_from_slice(value);
        }
    };
    let version = match facts.version {
        TlsVersion::Tls12 => "TLSv1.2",
        TlsVersion::Tls13 => "TLSv1.3",
    };
    sub(tlv::SSL_VERSION, version.as_bytes());
    if let Some(cn) = verified.filter(|cn| !cn.is_empty()) {
        sub(tlv::SSL_CN, cn.as_bytes());
    }
    out.push((tlv::SSL, ssl));
    out
}

fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |a: SocketAddr| SocketAddr::new(crate::net::canonical(a.ip()), a.port());
    let (s, d) = (canonical(source), canonical(destination));
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (
            SocketAddr::new(IpAddr::V6(v6(s.ip())), s.port()),
            SocketAddr::new(IpAddr::V6(v6(d.ip())), d.port()),
        )
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Feeds `bytes` as a host does: only as many as `parse` asks for.
    fn read_as_host(bytes: &[u8]) -> (Result<Header, Error>, usize) {
        let mut have = 0;
        loop {
            match parse(&bytes[..have]) {
                Ok(Progress::Need(n)) => {
                    assert!(n > have, "no progress at {have}");
                    if n > bytes.len() {
                        return (Err(Error::Missing), have);
                    }
                    have = n;
                }
                Ok(Progress::Done { header, length }) => {
                    assert_eq!(length, have, "a host reads exactly the header");
                    return (Ok(header), length);
                }
                Err(e) => return (Err(e), have),
            }
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6_and_unknown() {
        let mut bytes = b"PROXY TCP4 203.0.113.7 192.0.2.1 4711 443\r\n".to_vec();
        let header_len = bytes.len();
        bytes.extend_from_slice(&[0x16, 0x03, 0x01]); // a ClientHello behind it
        let (header, read) = read_as_host(&bytes);
        assert_eq!(read, header_len);
        assert_eq!(
            header,
            Ok(Header {
                version: Version::V1,
                addresses: Some(Addresses {
                    source: addr("203.0.113.7:4711"),
                    destination: addr("192.0.2.1:443"),
                })
            })
        );
        let (header, _) = read_as_host(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n");
        assert_eq!(
            header.map(|h| h.addresses.map(|a| a.source)),
            Ok(Some(addr("[2001:db8::1]:1")))
        );
        let (header, read) = read_as_host(b"PROXY UNKNOWN\r\n\x16");
        assert_eq!((header.map(|h| h.addresses), read), (Ok(None), 15));
    }

    #[test]
    fn v1_refuses_what_the_specification_does_not_allow() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 192.0.2.1 4711\r\n"[..],
            b"PROXY TCP4 ::1 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 1\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 01 1\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 1\r\n",
            b"PROXY UDP4 1.2.3.4 1.2.3.4 1 1\r\n",
            b"PROXY TCP4  1.2.3.4 1.2.3.4 1 1\r\n",
        ] {
            let (header, _) = read_as_host(bad);
            assert!(
                matches!(header, Err(Error::V1(_))),
                "{:?}: {header:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(read_as_host(&long).0, Err(Error::V1(_))));
        assert_eq!(parse(b"\x16\x03\x01\x02"), Err(Error::Missing));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::Missing));
        assert_eq!(parse(b"PRO"), Ok(Progress::Need(8)));
    }

    #[test]
    fn v2_round_trips_and_skips_tlvs() {
        let cases = [
            ("203.0.113.7:4711", "192.0.2.1:443"),
            ("[2001:db8::7]:4711", "[2001:db8::1]:443"),
            // Mixed families go as IPv6, the IPv4 one mapped.
            ("203.0.113.7:4711", "[2001:db8::1]:443"),
        ];
        for (s, d) in cases {
            let tlvs = vec![(tlv::AUTHORITY, b"app.test".to_vec())];
            let mut bytes = encode(Version::V2, addr(s), addr(d), &tlvs);
            let length = bytes.len();
            bytes.push(0x16);
            let (header, read) = read_as_host(&bytes);
            assert_eq!(read, length);
            let got = header.ok().and_then(|h| h.addresses);
            let (ws, wd) = same_family(addr(s), addr(d));
            assert_eq!(
                got,
                Some(Addresses {
                    source: ws,
                    destination: wd
                }),
                "{s} {d}"
            );
        }
        for (s, d) in cases {
            let bytes = encode(Version::V1, addr(s), addr(d), &[]);
            let got = read_as_host(&bytes).0.ok().and_then(|h| h.addresses);
            let (ws, wd) = same_family(addr(s), addr(d));
            assert_eq!(
                got,
                Some(Addresses {
                    source: ws,
                    destination: wd
                })
            );
        }
    }

    #[test]
    fn v2_local_unspec_and_refusals() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            read_as_host(&local).0,
            Ok(Header {
                version: Version::V2,
                addresses: None
            })
        );
        let with = |cmd: u8, fam: u8, body: &[u8]| {
            let mut v = V2_SIGNATURE.to_vec();
            v.extend_from_slice(&[cmd, fam]);
            v.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
            v.extend_from_slice(body);
            v
        };
        // LOCAL with addresses: they are ignored.
        assert_eq!(
            read_as_host(&with(0x20, 0x11, &[1; 12]))
                .0
                .map(|h| h.addresses),
            Ok(None)
        );
        let refused = [
            (with(0x11, 0x11, &[1; 12]), "version 1 in a v2 header"),
            (with(0x22, 0x11, &[1; 12]), "an unknown command"),
            (with(0x21, 0x11, &[1; 8]), "too short for its addresses"),
        ];
        for (bytes, why) in refused {
            assert!(matches!(read_as_host(&bytes).0, Err(Error::V2(_))), "{why}");
        }
        for (bytes, why) in [
            (with(0x21, 0x31, &[1; 216]), "a UNIX socket"),
            (with(0x21, 0x12, &[1; 12]), "UDP"),
        ] {
            let got = read_as_host(&bytes).0;
            assert!(matches!(got, Err(Error::Unsupported(_))), "{why}: {got:?}");
        }
        assert_eq!(
            parse(&with(0x21, 0x11, &[0; 2000])[..16]),
            Err(Error::TooLong(2016))
        );
    }

    #[test]
    fn tls_tlvs_are_haproxys_and_name_only_a_verified_client() {
        use crate::facts::{ClientCert, ClientCertFacts, TlsFacts, TlsVersion, Unverified};
        let ca = tlsgate_test_support::Authority::root("Example Root");
        let alice = ca.client("alice");
        let cert = || {
            ClientCertFacts::from_der(&tlsgate_test_support::pem_to_der(&alice.cert_pem))
                .map(Box::new)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let facts = |client_cert, resumed| TlsFacts {
            version: TlsVersion::Tls13,
            cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
            sni: Some("app.example.com".into()),
            alpn: Some("h2".into()),
            client_ip: IpAddr::from([203, 0, 113, 7]),
            client_port: 4711,
            server: addr("127.0.0.1:443"),
            client_cert,
            started: std::time::UNIX_EPOCH,
            resumed,
            key_exchange_group: "",
            ja4: String::new(),
        };
        let ssl = |tlvs: &[(u8, Vec<u8>)]| {
            tlvs.iter()
                .find(|(k, _)| *k == tlv::SSL)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        // client bits, verify, then version and common name as sub-TLVs.
        let verified = tls_tlvs(&facts(ClientCert::Verified(cert()), false));
        assert_eq!(verified[0], (tlv::AUTHORITY, b"app.example.com".to_vec()));
        assert_eq!(verified[1], (tlv::ALPN, b"h2".to_vec()));
        let mut expected = vec![0x07, 0, 0, 0, 0, 0x21, 0, 7];
        expected.extend_from_slice(b"TLSv1.3");
        expected.extend_from_slice(&[0x22, 0, 5]);
        expected.extend_from_slice(b"alice");
        assert_eq!(ssl(&verified), expected);

        let resumed = tls_tlvs(&facts(ClientCert::Verified(cert()), true));
        assert_eq!(
            ssl(&resumed)[0],
            0x05,
            "a certificate of the session, not this connection"
        );

        for why in [Unverified::NotChecked, Unverified::Revoked] {
            let unverified = tls_tlvs(&facts(ClientCert::Unverified(cert(), why), false));
            let value = ssl(&unverified);
            assert_eq!(&value[..5], &[0x07, 0, 0, 0, 1], "{why:?}");
            assert!(!value.windows(5).any(|w| w == b"alice"), "{why:?}: no name");
        }
        let absent = tls_tlvs(&facts(ClientCert::Absent, false));
        assert_eq!(&ssl(&absent)[..5], &[0x01, 0, 0, 0, 1]);

        // In a header an upstream (here: this module's parser) reads past.
        let header = encode(
            Version::V2,
            addr("203.0.113.7:4711"),
            addr("127.0.0.1:443"),
            &verified,
        );
        match parse(&header) {
            Ok(Progress::Done { length, header }) => {
                assert_eq!(length, header_len(&verified));
                assert_eq!(
                    header.addresses.map(|a| a.source),
                    Some(addr("203.0.113.7:4711"))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    fn header_len(tlvs: &[(u8, Vec<u8>)]) -> usize {
        16 + 12 + tlvs.iter().map(|(_, v)| 3 + v.len()).sum::<usize>()
    }
}
