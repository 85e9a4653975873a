//! Envoy's attribute encodings, decoded without host calls (so they are tested natively).

use std::net::SocketAddr;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use tlsgate_core::policy::{endpoint_index, filter_chain_name};

/// Decodes `%XX` escapes. Envoy 1.40 returns `connection.peer_certificate` as plain PEM, while
/// its access-log and Lua forms of the same value are URL-encoded; PEM never contains `%`, so
/// decoding accepts both. A malformed escape is an error rather than passed through: the bytes
/// are about to be trusted as a certificate.
pub fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("malformed percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// The DER of the first certificate in `connection.peer_certificate` (PEM, possibly URL-encoded).
pub fn peer_certificate_der(url_encoded_pem: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(url_encoded_pem)
        .map_err(|_| "the peer certificate attribute is not text".to_owned())?;
    let pem = percent_decode(text)?;
    CertificateDer::from_pem_slice(&pem)
        .map(|der| der.as_ref().to_vec())
        .map_err(|e| format!("the peer certificate attribute is not PEM: {e}"))
}

/// A boolean attribute: Envoy serialises CEL booleans as one byte.
pub fn boolean(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

/// `source.address` / `destination.address` (`ip:port`, `[v6]:port`) as a socket address.
pub fn socket_addr(address: &[u8]) -> Option<SocketAddr> {
    std::str::from_utf8(address).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_chain_names_round_trip() {
        assert_eq!(endpoint_index(&filter_chain_name(0)), Some(0));
        assert_eq!(endpoint_index(&filter_chain_name(17)), Some(17));
    }

    #[test]
    fn foreign_filter_chain_names_are_not_endpoints() {
        for name in [
            "",
            "0",
            "0.0.0.0_8443",
            "tlsgate.endpoints[x]",
            "tlsgate.endpoints[1",
        ] {
            assert_eq!(endpoint_index(name), None, "{name}");
        }
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%20b%0A").as_deref(), Ok(&b"a b\n"[..]));
        assert_eq!(percent_decode("plain").as_deref(), Ok(&b"plain"[..]));
    }

    #[test]
    fn refuses_malformed_escapes() {
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%zz").is_err());
    }

    #[test]
    fn reads_a_url_encoded_pem_certificate() {
        let ca = tlsgate_test_support::Authority::root("Example Root");
        let client = ca.client("alice");
        let encoded: String = client
            .cert_pem
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        assert_eq!(
            peer_certificate_der(encoded.as_bytes()).as_deref(),
            Ok(client.cert_der.as_slice())
        );
    }

    #[test]
    fn reads_a_plain_pem_certificate_as_envoy_1_40_returns_it() {
        let client = tlsgate_test_support::Authority::root("Example Root").client("bob");
        assert_eq!(
            peer_certificate_der(client.cert_pem.as_bytes()).as_deref(),
            Ok(client.cert_der.as_slice())
        );
    }

    #[test]
    fn refuses_a_peer_certificate_that_is_not_pem() {
        assert!(peer_certificate_der(b"garbage").is_err());
        assert!(peer_certificate_der(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn decodes_booleans_strictly() {
        assert_eq!(boolean(&[1]), Some(true));
        assert_eq!(boolean(&[0]), Some(false));
        assert_eq!(boolean(b"true"), None);
        assert_eq!(boolean(&[]), None);
    }

    #[test]
    fn reads_addresses() {
        assert_eq!(
            socket_addr(b"127.0.0.1:4321"),
            Some(([127, 0, 0, 1], 4321).into())
        );
        assert_eq!(
            socket_addr(b"[::1]:4321"),
            Some((std::net::Ipv6Addr::LOCALHOST, 4321).into())
        );
        assert_eq!(socket_addr(b"10.0.0.1"), None, "a port is required");
        assert_eq!(socket_addr(b"nonsense"), None);
    }
}
