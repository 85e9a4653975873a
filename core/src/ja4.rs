//! JA4 TLS client fingerprints (FoxIO's JA4, `t13d1516h2_8daaf6152771_b186095e22b6`) from the
//! ClientHello as it arrived on the wire.
//!
//! The three parts: `a` says what the client offered in the clear (transport, highest TLS
//! version, whether it named a server, how many cipher suites and extensions, the first and
//! last character of its first ALPN protocol); `b` is the first 12 hex digits of the SHA-256 of
//! its cipher suites, sorted; `c` the same of its extensions, sorted, without SNI and ALPN,
//! followed by its signature algorithms in the order sent. GREASE values (RFC 8701) are left
//! out everywhere, so a browser's randomized GREASE does not change its fingerprint.
//!
//! The native host computes it from the bytes its TLS acceptor read; Envoy's `tls_inspector`
//! computes its own (`enable_ja4_fingerprinting`), and the conformance suite checks the two agree.

use sha2::{Digest, Sha256};

/// The variable rules read it as; a host computes the fingerprint only when one does.
pub const VARIABLE: &str = "conn.tls.ja4_fingerprint";

/// The handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// TLS record content type `handshake`.
const HANDSHAKE_RECORD: u8 = 22;
/// The longest ClientHello this reads (rustls refuses longer ones anyway).
const MAX_HELLO: usize = 64 * 1024;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// The fingerprint of the ClientHello at the start of `records` (TLS records as read from the
/// connection; a ClientHello may span several). `None` when the bytes do not start with a
/// complete, well-formed ClientHello.
pub fn from_records(records: &[u8]) -> Option<String> {
    let mut message = Vec::new();
    let mut rest = records;
    loop {
        let (header, after) = split(rest, 5)?;
        if header[0] != HANDSHAKE_RECORD {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let (fragment, after) = split(after, len)?;
        message.extend_from_slice(fragment);
        rest = after;
        if message.len() >= 4 {
            if message[0] != CLIENT_HELLO {
                return None;
            }
            let body_len = usize::from(message[1]) << 16
                | usize::from(message[2]) << 8
                | usize::from(message[3]);
            if body_len > MAX_HELLO {
                return None;
            }
            if message.len() >= 4 + body_len {
                return from_client_hello(&message[4..4 + body_len]);
            }
        }
    }
}

/// The fingerprint of a ClientHello handshake message body (after its type and length).
pub fn from_client_hello(body: &[u8]) -> Option<String> {
    let hello = ClientHello::parse(body)?;
    Some(hello.fingerprint())
}

struct ClientHello {
    legacy_version: u16,
    ciphers: Vec<u16>,
    /// Extension types in the order sent, GREASE included.
    extensions: Vec<u16>,
    supported_versions: Vec<u16>,
    signature_algorithms: Vec<u16>,
    first_alpn: Option<Vec<u8>>,
}

impl ClientHello {
    fn parse(body: &[u8]) -> Option<Self> {
        let mut r = Reader(body);
        let legacy_version = r.u16()?;
        r.take(32)?; // random
        let session_id_len = r.u8()?;
        r.take(usize::from(session_id_len))?;
        let mut suites = Reader(r.vec16()?);
        let mut ciphers = Vec::new();
        while !suites.0.is_empty() {
            ciphers.push(suites.u16()?);
        }
        let compression_len = r.u8()?;
        r.take(usize::from(compression_len))?;
        let mut hello = Self {
            legacy_version,
            ciphers,
            extensions: Vec::new(),
            supported_versions: Vec::new(),
            signature_algorithms: Vec::new(),
            first_alpn: None,
        };
        if r.0.is_empty() {
            return Some(hello); // no extensions at all (TLS 1.0-era clients)
        }
        let mut extensions = Reader(r.vec16()?);
        while !extensions.0.is_empty() {
            let kind = extensions.u16()?;
            let data = extensions.vec16()?;
            hello.extensions.push(kind);
            match kind {
                EXT_SUPPORTED_VERSIONS => {
                    let mut list = Reader(Reader(data).vec8()?);
                    while !list.0.is_empty() {
                        hello.supported_versions.push(list.u16()?);
                    }
                }
                EXT_SIGNATURE_ALGORITHMS => {
                    let mut list = Reader(Reader(data).vec16()?);
                    while !list.0.is_empty() {
                        hello.signature_algorithms.push(list.u16()?);
                    }
                }
                EXT_ALPN => {
                    let mut list = Reader(Reader(data).vec16()?);
                    if !list.0.is_empty() {
                        hello.first_alpn = Some(list.vec8()?.to_vec());
                    }
                }
                _ => {}
            }
        }
        Some(hello)
    }

    fn fingerprint(&self) -> String {
        let version = without_grease(&self.supported_versions)
            .into_iter()
            .max()
            .unwrap_or(self.legacy_version);
        let version = match version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0200 => "s2",
            0x0100 => "s1",
            0xfeff => "d1",
            0xfefd => "d2",
            0xfefc => "d3",
            _ => "00",
        };
        let sni = if self.extensions.contains(&EXT_SERVER_NAME) {
            'd'
        } else {
            'i'
        };
        let ciphers = without_grease(&self.ciphers);
        let extensions = without_grease(&self.extensions);
        let a = format!(
            "t{version}{sni}{:02}{:02}{}",
            ciphers.len().min(99),
            extensions.len().min(99),
            alpn_chars(self.first_alpn.as_deref()),
        );
        let b = truncated_hash(&sorted_hex(&ciphers));
        let c = {
            let kept: Vec<u16> = extensions
                .iter()
                .copied()
                .filter(|e| *e != EXT_SERVER_NAME && *e != EXT_ALPN)
                .collect();
            let algorithms = without_grease(&self.signature_algorithms);
            let mut text = sorted_hex(&kept);
            if !algorithms.is_empty() {
                text.push('_');
                text.push_str(&hex_list(&algorithms));
            }
            if kept.is_empty() && algorithms.is_empty() {
                String::new()
            } else {
                text
            }
        };
        format!("{a}_{b}_{}", truncated_hash(&c))
    }
}

fn without_grease(values: &[u16]) -> Vec<u16> {
    values.iter().copied().filter(|v| !is_grease(*v)).collect()
}

/// RFC 8701: 0x0a0a, 0x1a1a, … 0xfafa.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// The first and last character of the first ALPN protocol; the first and last hex digit of it
/// when either byte is not an ASCII letter or digit; `00` without one.
fn alpn_chars(alpn: Option<&[u8]>) -> String {
    let (Some(first), Some(last)) = (alpn.and_then(<[u8]>::first), alpn.and_then(<[u8]>::last))
    else {
        return "00".to_owned();
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        format!("{}{}", char::from(*first), char::from(*last))
    } else {
        format!("{:x}{:x}", first >> 4, last & 0x0f)
    }
}

fn hex_list(values: &[u16]) -> String {
    values
        .iter()
        .map(|v| format!("{v:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn sorted_hex(values: &[u16]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    hex_list(&sorted)
}

/// The first 12 hex digits of the SHA-256 of `text`; twelve zeros for nothing.
fn truncated_hash(text: &str) -> String {
    if text.is_empty() {
        return "000000000000".to_owned();
    }
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn split(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= at).then(|| bytes.split_at(at))
}

/// A bounds-checked cursor over a handshake message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = split(self.0, n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record built field by field.
    fn hello(ciphers: &[u16], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend(u16::try_from(ciphers.len() * 2).unwrap().to_be_bytes());
        for c in ciphers {
            body.extend(c.to_be_bytes());
        }
        body.extend([1, 0]);
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend(kind.to_be_bytes());
            ext.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
            ext.extend(data);
        }
        body.extend(u16::try_from(ext.len()).unwrap().to_be_bytes());
        body.extend(ext);
        let mut message = vec![CLIENT_HELLO, 0];
        message.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
        message.extend(body);
        message
    }

    fn records(message: &[u8], fragment: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in message.chunks(fragment) {
            out.extend([HANDSHAKE_RECORD, 0x03, 0x01]);
            out.extend(u16::try_from(chunk.len()).unwrap().to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    fn list16(values: &[u16]) -> Vec<u8> {
        let mut out = u16::try_from(values.len() * 2)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        for v in values {
            out.extend(v.to_be_bytes());
        }
        out
    }

    fn alpn(protocols: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for p in protocols {
            list.push(u8::try_from(p.len()).unwrap());
            list.extend(*p);
        }
        let mut out = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
        out.extend(list);
        out
    }

    #[test]
    fn fingerprints_a_tls13_hello_and_ignores_grease_and_fragmenting() {
        let versions = {
            let mut v = vec![4u8];
            v.extend([0x3a, 0x3a, 0x03, 0x04]);
            v
        };
        let message = hello(
            &[0x1a1a, 0x1301, 0x1302, 0xc02b],
            &[
                (0x0a0a, Vec::new()),
                (EXT_SERVER_NAME, vec![0, 0]),
                (EXT_ALPN, alpn(&[b"h2", b"http/1.1"])),
                (EXT_SUPPORTED_VERSIONS, versions),
                (EXT_SIGNATURE_ALGORITHMS, list16(&[0x0403, 0x0804])),
                (0x000a, list16(&[0x001d])),
            ],
        );
        let whole = from_records(&records(&message, 16_384)).unwrap();
        // a: TLS 1.3, SNI, 3 ciphers and 5 extensions without GREASE, ALPN h2.
        assert!(whole.starts_with("t13d0305h2_"), "{whole}");
        let b = truncated_hash("1301,1302,c02b");
        let c = truncated_hash("000a,000d,002b_0403,0804");
        assert_eq!(whole, format!("t13d0305h2_{b}_{c}"));
        // The same hello split over many records fingerprints the same.
        assert_eq!(
            from_records(&records(&message, 7)).as_deref(),
            Some(whole.as_str())
        );
        // Cut short, it is no fingerprint.
        let full = records(&message, 16_384);
        assert_eq!(from_records(&full[..full.len() - 1]), None);
    }

    #[test]
    fn the_ja4_readme_example_hashes() {
        // The cipher and extension strings of FoxIO's worked example (Chrome).
        assert_eq!(
            truncated_hash(
                "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
            ),
            "8daaf6152771"
        );
        assert_eq!(
            truncated_hash(
                "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
                 0403,0804,0401,0503,0805,0501,0806,0601"
            ),
            "e5627efa2ab1"
        );
    }

    #[test]
    fn no_sni_no_alpn_tls12() {
        let message = hello(&[0xc02f], &[(EXT_SIGNATURE_ALGORITHMS, list16(&[0x0401]))]);
        let fp = from_records(&records(&message, 16_384)).unwrap();
        assert!(fp.starts_with("t12i010100_"), "{fp}");
        // No extensions at all: the hash of nothing is zeros.
        let mut bare = hello(&[0x002f], &[]);
        // Drop the (empty) extensions block entirely, as old clients do.
        bare.truncate(bare.len() - 2);
        let len = bare.len() - 4;
        bare[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        let fp = from_records(&records(&bare, 16_384)).unwrap();
        assert!(fp.ends_with("_000000000000"), "{fp}");
        assert!(fp.starts_with("t12i010000_"), "{fp}");
    }

    #[test]
    fn alpn_characters() {
        assert_eq!(alpn_chars(Some(b"h2")), "h2");
        assert_eq!(alpn_chars(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_chars(Some(b"x")), "xx");
        assert_eq!(alpn_chars(Some(&[0xab])), "ab");
        assert_eq!(alpn_chars(Some(&[0xab, 0xcd])), "ad");
        assert_eq!(alpn_chars(None), "00");
    }

    #[test]
    fn refuses_what_is_not_a_client_hello() {
        assert_eq!(from_records(b""), None);
        assert_eq!(from_records(b"GET / HTTP/1.1\r\n\r\n"), None);
        let mut server_hello = hello(&[0x1301], &[]);
        server_hello[0] = 2;
        assert_eq!(from_records(&records(&server_hello, 16_384)), None);
    }
}
