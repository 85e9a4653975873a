//! What a host knows about a connection once its handshake is over.
//!
//! Hosts translate their own view (rustls' `ServerConnection`, Envoy's `connection.*`
//! attributes) into these types; the policy decides on nothing else. A client certificate is an
//! enum that says *why* it is what it is, never an `Option` plus flags.

use std::fmt;
use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::encoding::hex;

/// A TLS protocol version tlsgate speaks. Older versions are refused at load time and by both
/// hosts' handshakes; there is no variant for them on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// ngrok's spelling, used in policies and in `conn.tls.version`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls12 => "1.2",
            Self::Tls13 => "1.3",
        }
    }

    /// Envoy's `connection.tls_version` spelling (`TLSv1.3`).
    pub fn from_envoy(s: &str) -> Option<Self> {
        match s {
            "TLSv1.2" => Some(Self::Tls12),
            "TLSv1.3" => Some(Self::Tls13),
            _ => None,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key-exchange groups both hosts offer, most preferred first, by their IANA/OpenSSL names:
/// the post-quantum hybrid first (what current Chrome, Firefox, Go and OpenSSL 3.5 send), then
/// classical groups for older clients. The native host's provider (aws-lc-rs with
/// `prefer-post-quantum`) has this order; the Envoy generator renders it as `ecdh_curves`.
pub const KEY_EXCHANGE_GROUPS: [&str; 4] = ["X25519MLKEM768", "X25519", "P-256", "P-384"];

/// Everything the policy may look at for one connection.
#[derive(Clone, Debug)]
pub struct TlsFacts {
    pub version: TlsVersion,
    /// IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// Lowercased server name the client asked for, if it sent one.
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub client_ip: IpAddr,
    /// The client's TCP port.
    pub client_port: u16,
    /// The local address the connection arrived on.
    pub server: std::net::SocketAddr,
    pub client_cert: ClientCert,
    /// When the host accepted the connection (ngrok's `conn.ts.start`).
    pub started: std::time::SystemTime,
    /// Whether the handshake resumed an earlier session (`conn.tls.session_resumed`).
    pub resumed: bool,
    /// The negotiated key-exchange group as [`KEY_EXCHANGE_GROUPS`] names it; empty when the
    /// host cannot tell (`conn.tls.key_exchange_group`).
    pub key_exchange_group: &'static str,
    /// The ClientHello's JA4 fingerprint ([`crate::ja4`]); empty when the host has none
    /// (`conn.tls.ja4_fingerprint`).
    pub ja4: String,
}

/// The client certificate as the host's handshake left it.
#[derive(Clone, Debug)]
pub enum ClientCert {
    /// The client presented a certificate that chains to the endpoint's CAs and proved it holds
    /// the key.
    Verified(Box<ClientCertFacts>),
    /// The client presented a certificate and proved it holds the key, but the chain was not
    /// (or could not be) verified. Only `require-any` and `request` admit these.
    Unverified(Box<ClientCertFacts>, Unverified),
    /// No certificate was presented.
    Absent,
}

/// Why a presented certificate is not [`ClientCert::Verified`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unverified {
    /// The endpoint asked for a certificate without checking its chain (`require-any`,
    /// `request`), so nobody tried.
    NotChecked,
    /// The chain was checked and did not lead to a configured CA.
    UntrustedIssuer,
    /// The certificate is a CA certificate (basicConstraints CA=true), or an X.509 v1
    /// certificate that cannot say it is not one. A trust anchor "verifies" against itself and
    /// a v1 leaf under a trusted CA verifies too in BoringSSL, while webpki refuses both;
    /// tlsgate never takes either as a client's identity, in either host.
    NotEndEntity,
    /// The chain was trusted, but the certificate is not within its validity period now. TLS
    /// stacks check validity on a full handshake only: a session resumed after the
    /// certificate expired carries the old verdict, so core checks the time on every
    /// connection.
    OutsideValidity,
    /// The endpoint's CRL for the certificate's issuer lists it.
    Revoked,
    /// The endpoint checks revocation and has no current CRL for the certificate's issuer
    /// (the CRL is past its `nextUpdate`): its status is unknown, so it is no identity.
    RevocationUnknown,
    /// The endpoint requires an OCSP answer (`mutual_tls_ocsp`, mode `require`) and got no
    /// valid one: the responder is down, late, does not know the certificate, or answered
    /// something that does not check out.
    StatusUnavailable,
}

/// What the host's TLS stack found when it checked a presented certificate's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// It chains to a configured CA.
    Trusted,
    /// It was checked and does not.
    Untrusted,
    /// It was not checked.
    NotChecked,
}

impl ClientCert {
    /// Why the certificate is or is not an identity, as `conn.tls.client.verification` and
    /// logs spell it.
    pub fn verification(&self) -> &'static str {
        match self {
            Self::Verified(_) => "verified",
            Self::Unverified(_, Unverified::NotChecked) => "not_checked",
            Self::Unverified(_, Unverified::UntrustedIssuer) => "untrusted_issuer",
            Self::Unverified(_, Unverified::NotEndEntity) => "not_end_entity",
            Self::Unverified(_, Unverified::OutsideValidity) => "outside_validity",
            Self::Unverified(_, Unverified::Revoked) => "revoked",
            Self::Unverified(_, Unverified::RevocationUnknown) => "revocation_unknown",
            Self::Unverified(_, Unverified::StatusUnavailable) => "ocsp_unavailable",
            Self::Absent => "absent",
        }
    }

    /// How logs name the client: a verified certificate by its subject, any other by what it
    /// proves (its fingerprint) and why it is not an identity, so a self-signed certificate
    /// cannot write a trusted-looking name into an access log. Control characters are escaped,
    /// so a subject cannot forge a log line either.
    pub fn log_label(&self) -> String {
        match self {
            Self::Verified(facts) => escape_control(&facts.subject.rfc4514),
            Self::Unverified(facts, _) => format!(
                "unverified({}):sha256:{}",
                self.verification(),
                facts.fingerprint_sha256
            ),
            Self::Absent => "-".to_owned(),
        }
    }

    pub fn facts(&self) -> Option<&ClientCertFacts> {
        match self {
            Self::Verified(facts) | Self::Unverified(facts, _) => Some(facts),
            Self::Absent => None,
        }
    }
}

/// A distinguished name broken into the attributes ngrok exposes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DistinguishedName {
    pub common_name: String,
    pub organization: Vec<String>,
    pub organizational_unit: Vec<String>,
    pub country: Vec<String>,
    pub locality: Vec<String>,
    pub province: Vec<String>,
    /// RFC 4514 form, most specific attribute first (`CN=client,O=Example`), as Envoy prints it.
    pub rfc4514: String,
}

/// Subject alternative names by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectAltNames {
    pub dns_names: Vec<String>,
    pub email_addresses: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub uris: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionFact {
    /// Dotted OID.
    pub id: String,
    pub critical: bool,
}

/// Whether a certificate may be used for TLS client authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthUsage {
    /// An extendedKeyUsage extension lists clientAuth (or anyExtendedKeyUsage).
    Allowed,
    /// There is no extendedKeyUsage extension, which RFC 5280 reads as "any usage".
    Unrestricted,
    /// An extendedKeyUsage extension is present and does not list clientAuth.
    NotAllowed,
}

/// The fields of a client certificate, read once per connection from its DER.
#[derive(Clone, Debug)]
pub struct ClientCertFacts {
    pub subject: DistinguishedName,
    pub issuer: DistinguishedName,
    /// The issuer name's DER, to find the issuer's CRL.
    pub issuer_der: Vec<u8>,
    pub san: SubjectAltNames,
    /// Lowercase hex without separators.
    pub serial_number: String,
    /// Go's names (`SHA256-RSA`, `ECDSA-SHA256`), as ngrok reports them.
    pub signature_algorithm: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub extensions: Vec<ExtensionFact>,
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint_sha256: String,
    pub is_ca: bool,
    pub client_auth: ClientAuthUsage,
    /// X.509 version 1: no extensions, so nothing says what the key may be used for.
    pub legacy_v1: bool,
    pub der: Vec<u8>,
}

/// The certificate bytes are not a certificate x509-parser can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct CertificateParseError(pub String);

impl ClientCertFacts {
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateParseError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| CertificateParseError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertificateParseError(
                "trailing bytes after the certificate".into(),
            ));
        }
        let mut san = SubjectAltNames::default();
        let mut extensions = Vec::new();
        let mut is_ca = false;
        let mut client_auth = ClientAuthUsage::Unrestricted;
        for ext in cert.extensions() {
            extensions.push(ExtensionFact {
                id: ext.oid.to_id_string(),
                critical: ext.critical,
            });
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(names) => {
                    for name in &names.general_names {
                        match name {
                            GeneralName::DNSName(d) => san.dns_names.push((*d).to_owned()),
                            GeneralName::RFC822Name(e) => san.email_addresses.push((*e).to_owned()),
                            GeneralName::URI(u) => san.uris.push((*u).to_owned()),
                            GeneralName::IPAddress(bytes) => {
                                if let Some(ip) = ip_from_bytes(bytes) {
                                    san.ip_addresses.push(ip.to_string());
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    client_auth = if eku.client_auth || eku.any {
                        ClientAuthUsage::Allowed
                    } else {
                        ClientAuthUsage::NotAllowed
                    };
                }
                _ => {}
            }
        }
        Ok(Self {
            subject: distinguished_name(cert.subject()),
            issuer: distinguished_name(cert.issuer()),
            issuer_der: cert.issuer().as_raw().to_vec(),
            san,
            serial_number: serial_spelling(cert.raw_serial()),
            signature_algorithm: signature_algorithm_name(
                &cert.signature_algorithm.algorithm.to_id_string(),
            ),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            extensions,
            fingerprint_sha256: hex(&crate::encoding::sha256(der)),
            is_ca,
            client_auth,
            legacy_v1: cert.version().0 == 0,
            der: der.to_vec(),
        })
    }

    /// The certificate as PEM text.
    pub fn pem(&self) -> String {
        crate::encoding::pem("CERTIFICATE", &self.der)
    }
}

/// A serial number as [`ClientCertFacts::serial_number`] spells it: lowercase hex, leading
/// zero bytes dropped.
pub(crate) fn serial_spelling(bytes: &[u8]) -> String {
    hex(bytes).trim_start_matches("00").to_owned()
}

/// `text` with every control character written as `\u{…}`.
pub fn escape_control(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn distinguished_name(name: &X509Name<'_>) -> DistinguishedName {
    let mut dn = DistinguishedName::default();
    let mut parts = Vec::new();
    for rdn in name.iter() {
        for attr in rdn.iter() {
            let value = match attr.as_str() {
                Ok(s) => s.to_owned(),
                Err(_) => hex(attr.as_slice()),
            };
            let oid = attr.attr_type();
            let label = if *oid == oid_registry::OID_X509_COMMON_NAME {
                if dn.common_name.is_empty() {
                    dn.common_name = value.clone();
                }
                "CN".to_owned()
            } else if *oid == oid_registry::OID_X509_ORGANIZATION_NAME {
                dn.organization.push(value.clone());
                "O".to_owned()
            } else if *oid == oid_registry::OID_X509_ORGANIZATIONAL_UNIT {
                dn.organizational_unit.push(value.clone());
                "OU".to_owned()
            } else if *oid == oid_registry::OID_X509_COUNTRY_NAME {
                dn.country.push(value.clone());
                "C".to_owned()
            } else if *oid == oid_registry::OID_X509_LOCALITY_NAME {
                dn.locality.push(value.clone());
                "L".to_owned()
            } else if *oid == oid_registry::OID_X509_STATE_OR_PROVINCE_NAME {
                dn.province.push(value.clone());
                "ST".to_owned()
            } else if *oid == oid_registry::OID_PKCS9_EMAIL_ADDRESS {
                "emailAddress".to_owned()
            } else {
                oid.to_id_string()
            };
            parts.push(format!("{label}={}", escape_rfc4514(&value)));
        }
    }
    parts.reverse();
    dn.rfc4514 = parts.join(",");
    dn
}

fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let needs = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if c.is_control() {
            // RFC 4514's hex pairs, as OpenSSL's ESC_CTRL writes them: the string stays one
            // line and one header value whatever the certificate holds.
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
            continue;
        }
        if needs {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn signature_algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.5" => "SHA1-RSA",
        "1.2.840.113549.1.1.11" => "SHA256-RSA",
        "1.2.840.113549.1.1.12" => "SHA384-RSA",
        "1.2.840.113549.1.1.13" => "SHA512-RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.2.840.10045.4.3.2" => "ECDSA-SHA256",
        "1.2.840.10045.4.3.3" => "ECDSA-SHA384",
        "1.2.840.10045.4.3.4" => "ECDSA-SHA512",
        "1.3.101.112" => "Ed25519",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlsgate_test_support::{Authority, LeafSpec};

    #[test]
    fn reads_subject_issuer_and_sans() {
        let ca = Authority::root("Example Root");
        let spec = LeafSpec::client("alice")
            .with_organization("Example Org")
            .with_dns_name("alice.example.com")
            .with_uri("spiffe://example.com/alice")
            .with_email("alice@example.com");
        let issued = ca.issue(&spec);
        let facts = ClientCertFacts::from_der(&issued.cert_der).expect("parses");
        assert_eq!(facts.subject.common_name, "alice");
        assert_eq!(facts.subject.organization, vec!["Example Org".to_owned()]);
        // RFC 4514 prints the last encoded attribute first; rcgen encodes CN before O.
        assert_eq!(facts.subject.rfc4514, "O=Example Org,CN=alice");
        assert_eq!(facts.issuer.common_name, "Example Root");
        assert_eq!(facts.san.dns_names, vec!["alice.example.com".to_owned()]);
        assert_eq!(
            facts.san.uris,
            vec!["spiffe://example.com/alice".to_owned()]
        );
        assert_eq!(
            facts.san.email_addresses,
            vec!["alice@example.com".to_owned()]
        );
        assert_eq!(facts.client_auth, ClientAuthUsage::Allowed);
        assert_eq!(facts.signature_algorithm, "ECDSA-SHA256");
        assert_eq!(facts.fingerprint_sha256.len(), 64);
        assert!(facts.not_before < facts.not_after);
        assert!(!facts.is_ca);
        assert!(facts.pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    }

    #[test]
    fn server_only_usage_is_not_client_auth() {
        let ca = Authority::root("Example Root");
        let facts =
            ClientCertFacts::from_der(&ca.server(&["a.example.com"]).cert_der).expect("parses");
        assert_eq!(facts.client_auth, ClientAuthUsage::NotAllowed);
    }

    #[test]
    fn refuses_garbage() {
        assert!(ClientCertFacts::from_der(b"not a certificate").is_err());
    }

    #[test]
    fn log_labels_never_carry_control_characters_or_unverified_names() {
        assert_eq!(escape_control("CN=a\nb"), "CN=a\\u{a}b");
        assert_eq!(escape_control("CN=plain"), "CN=plain");
        let ca = Authority::root("Example Root");
        let facts = ClientCertFacts::from_der(&ca.client("alice").cert_der).expect("parses");
        let fingerprint = facts.fingerprint_sha256.clone();
        let unverified = ClientCert::Unverified(Box::new(facts), Unverified::UntrustedIssuer);
        let label = unverified.log_label();
        assert!(!label.contains("alice"), "{label}");
        assert!(label.contains(&fingerprint), "{label}");
        assert_eq!(ClientCert::Absent.log_label(), "-");
    }

    #[test]
    fn escapes_special_characters() {
        assert_eq!(escape_rfc4514("a,b"), "a\\,b");
        assert_eq!(escape_rfc4514(" x "), "\\ x\\ ");
    }
}
