//! What a certificate should say: [`LeafSpec`] and the small enums it is made of.

use std::net::IpAddr;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::KeyKind;

/// An extended key usage purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Eku {
    /// `id-kp-serverAuth`: the certificate may identify a TLS server.
    ServerAuth,
    /// `id-kp-clientAuth`: the certificate may identify a TLS client (mTLS).
    ClientAuth,
}

impl From<Eku> for ExtendedKeyUsagePurpose {
    fn from(eku: Eku) -> Self {
        match eku {
            Eku::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Eku::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        }
    }
}

/// The validity window of a certificate, relative to the moment it is generated.
///
/// Windows are whole days away from "now" so that clock skew between the test and the process
/// under test can never turn a good certificate into a bad one or the other way round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validity {
    /// From one day ago until 365 days from now.
    #[default]
    Current,
    /// From 366 days ago until one day ago.
    Expired,
    /// From one day from now until 366 days from now.
    NotYetValid,
    /// An explicit window, e.g. a certificate that expires in an hour.
    Window {
        /// Start of validity (`notBefore`).
        not_before: SystemTime,
        /// End of validity (`notAfter`).
        not_after: SystemTime,
    },
}

impl Validity {
    /// The window as (`notBefore`, `notAfter`), truncated to whole seconds as X.509 stores them.
    pub(crate) fn window(self) -> (OffsetDateTime, OffsetDateTime) {
        let now = OffsetDateTime::now_utc();
        let (from, to) = match self {
            Validity::Current => (now - Duration::days(1), now + Duration::days(365)),
            Validity::Expired => (now - Duration::days(366), now - Duration::days(1)),
            Validity::NotYetValid => (now + Duration::days(1), now + Duration::days(366)),
            Validity::Window {
                not_before,
                not_after,
            } => (not_before.into(), not_after.into()),
        };
        (whole_seconds(from), whole_seconds(to))
    }
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Everything that varies between the certificates tlsgate's tests need.
///
/// Despite the name it also describes authorities (see [`LeafSpec::ca`] and
/// [`Authority::subordinate`](crate::Authority::subordinate)). Start from a constructor and adjust
/// with the `with_*` methods:
///
/// ```
/// use tlsgate_test_support::{Authority, Eku, LeafSpec, Validity};
///
/// let ca = Authority::root("Test CA");
/// // A client certificate that is only good for servers: the "no clientAuth EKU" bad case.
/// let bad = ca.issue(&LeafSpec::client("alice").with_eku([Eku::ServerAuth]));
/// // An expired server certificate for an IP address.
/// let old = ca.issue(&LeafSpec::server(&["127.0.0.1"]).with_validity(Validity::Expired));
/// # let _ = (bad, old);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// Subject CN.
    pub common_name: String,
    /// Subject O.
    pub organization: Option<String>,
    /// Subject OU.
    pub organizational_unit: Option<String>,
    /// Subject C (two letters).
    pub country: Option<String>,
    /// DNS subjectAltNames; wildcards such as `*.example.test` are allowed.
    pub dns_names: Vec<String>,
    /// IP subjectAltNames.
    pub ip_addresses: Vec<IpAddr>,
    /// URI subjectAltNames, e.g. SPIFFE IDs.
    pub uris: Vec<String>,
    /// Email (rfc822Name) subjectAltNames.
    pub emails: Vec<String>,
    /// Extended key usages; empty means the certificate has no EKU extension at all.
    pub eku: Vec<Eku>,
    /// Validity window.
    pub validity: Validity,
    /// Key type of the subject.
    pub key: KeyKind,
    /// basicConstraints `CA` flag. Certificates always carry basicConstraints, so `false` is an
    /// explicit `CA:FALSE` rather than a missing extension.
    pub is_ca: bool,
    /// Serial number; `None` picks a random one that is unique within the process.
    pub serial: Option<u64>,
    /// An OCSP responder URL, in an Authority Information Access extension.
    pub ocsp_url: Option<String>,
}

impl Default for LeafSpec {
    fn default() -> Self {
        LeafSpec::new("tlsgate test")
    }
}

impl LeafSpec {
    /// A certificate with only a CN: no SANs, no EKU, not a CA.
    pub fn new(common_name: &str) -> LeafSpec {
        LeafSpec {
            common_name: common_name.to_owned(),
            organization: None,
            organizational_unit: None,
            country: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            eku: Vec::new(),
            validity: Validity::Current,
            key: KeyKind::default(),
            is_ca: false,
            serial: None,
            ocsp_url: None,
        }
    }

    /// A TLS server certificate for `hosts`: each host becomes an IP SAN if it parses as an IP
    /// address and a DNS SAN otherwise, the CN is the first host, and the EKU is serverAuth.
    pub fn server(hosts: &[&str]) -> LeafSpec {
        let mut spec = LeafSpec::new(hosts.first().copied().unwrap_or_default());
        for host in hosts {
            spec = spec.with_host(host);
        }
        spec.with_eku([Eku::ServerAuth])
    }

    /// A TLS client certificate: CN `common_name`, EKU clientAuth, no SANs.
    pub fn client(common_name: &str) -> LeafSpec {
        LeafSpec::new(common_name).with_eku([Eku::ClientAuth])
    }

    /// A certificate authority: CN `common_name`, `CA:TRUE`, no EKU.
    pub fn ca(common_name: &str) -> LeafSpec {
        LeafSpec::new(common_name).with_ca(true)
    }

    /// Replaces the subject CN.
    pub fn with_common_name(mut self, common_name: &str) -> Self {
        common_name.clone_into(&mut self.common_name);
        self
    }

    /// Sets the subject O.
    pub fn with_organization(mut self, organization: &str) -> Self {
        self.organization = Some(organization.to_owned());
        self
    }

    /// Sets the subject OU.
    pub fn with_organizational_unit(mut self, unit: &str) -> Self {
        self.organizational_unit = Some(unit.to_owned());
        self
    }

    /// Sets the subject C.
    pub fn with_country(mut self, country: &str) -> Self {
        self.country = Some(country.to_owned());
        self
    }

    /// Adds a SAN for `host`: an IP SAN if it parses as an IP address, a DNS SAN otherwise.
    pub fn with_host(self, host: &str) -> Self {
        match host.parse::<IpAddr>() {
            Ok(ip) => self.with_ip_address(ip),
            Err(_) => self.with_dns_name(host),
        }
    }

    /// Adds a DNS SAN.
    pub fn with_dns_name(mut self, name: &str) -> Self {
        self.dns_names.push(name.to_owned());
        self
    }

    /// Adds an IP SAN.
    pub fn with_ip_address(mut self, ip: IpAddr) -> Self {
        self.ip_addresses.push(ip);
        self
    }

    /// Adds a URI SAN.
    pub fn with_uri(mut self, uri: &str) -> Self {
        self.uris.push(uri.to_owned());
        self
    }

    /// Adds an email SAN.
    pub fn with_email(mut self, email: &str) -> Self {
        self.emails.push(email.to_owned());
        self
    }

    /// Replaces the extended key usages; pass `[]` for a certificate without the extension.
    pub fn with_eku(mut self, eku: impl IntoIterator<Item = Eku>) -> Self {
        self.eku = eku.into_iter().collect();
        self
    }

    /// Sets the validity window.
    pub fn with_validity(mut self, validity: Validity) -> Self {
        self.validity = validity;
        self
    }

    /// Sets the key type.
    pub fn with_key(mut self, key: KeyKind) -> Self {
        self.key = key;
        self
    }

    /// Sets the basicConstraints `CA` flag.
    pub fn with_ca(mut self, is_ca: bool) -> Self {
        self.is_ca = is_ca;
        self
    }

    /// Sets a fixed serial number.
    pub fn with_serial(mut self, serial: u64) -> Self {
        self.serial = Some(serial);
        self
    }

    /// Names an OCSP responder (Authority Information Access, `id-ad-ocsp`).
    pub fn with_ocsp_url(mut self, url: &str) -> Self {
        self.ocsp_url = Some(url.to_owned());
        self
    }

    /// Translates the spec into rcgen parameters.
    ///
    /// `signs_certificates` grants keyCertSign even when `is_ca` is false, which is how the
    /// "issuer with CA=false" case differs from a well-formed CA in exactly one respect.
    pub(crate) fn params(&self, signs_certificates: bool) -> CertificateParams {
        let mut params = CertificateParams::default();
        let (not_before, not_after) = self.validity.window();
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(match self.serial {
            Some(serial) => SerialNumber::from(serial),
            None => unique_serial(),
        });

        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, self.common_name.as_str());
        let optional = [
            (DnType::OrganizationName, &self.organization),
            (DnType::OrganizationalUnitName, &self.organizational_unit),
            (DnType::CountryName, &self.country),
        ];
        for (ty, value) in optional {
            if let Some(value) = value {
                params.distinguished_name.push(ty, value.as_str());
            }
        }

        params.subject_alt_names = self.subject_alt_names();
        if let Some(url) = &self.ocsp_url {
            params.custom_extensions.push(authority_info_access(url));
        }
        params.extended_key_usages = self.eku.iter().copied().map(Into::into).collect();
        params.is_ca = if self.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            params.custom_extensions.push(not_a_ca());
            IsCa::NoCa
        };
        params.key_usages = if self.is_ca || signs_certificates {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ]
        } else if self.key == KeyKind::Rsa2048 {
            // RSA key exchange (TLS 1.2 without ECDHE) encrypts to the key, OpenSSL checks it.
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        params
    }

    fn subject_alt_names(&self) -> Vec<SanType> {
        let ia5 = |what: &str, value: &String| {
            value
                .clone()
                .try_into()
                .unwrap_or_else(|e| panic!("{what} SAN {value:?} is not ASCII (IA5): {e}"))
        };
        let dns = self
            .dns_names
            .iter()
            .map(|n| SanType::DnsName(ia5("DNS", n)));
        let ips = self.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip));
        let uris = self.uris.iter().map(|u| SanType::URI(ia5("URI", u)));
        let emails = self
            .emails
            .iter()
            .map(|e| SanType::Rfc822Name(ia5("email", e)));
        dns.chain(ips).chain(uris).chain(emails).collect()
    }
}

/// A serial that is unpredictable across processes and unique within one.
///
/// rcgen would otherwise derive the serial from the public key, and because RSA leaf keys are
/// shared (see [`KeyKind::Rsa2048`]) two leaves from one issuer would collide on issuer+serial.
fn unique_serial() -> SerialNumber {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(count);
    // Positive and non-zero in the leading byte, so DER needs no padding and the length is fixed.
    let mut bytes = (hasher.finish() | 1 << 62).to_be_bytes().to_vec();
    bytes[0] &= 0x7f;
    bytes.extend_from_slice(&count.to_be_bytes());
    SerialNumber::from(bytes)
}

/// An Authority Information Access extension naming one OCSP responder:
/// `SEQUENCE { SEQUENCE { id-ad-ocsp, [6] uniformResourceIdentifier } }`.
/// basicConstraints `CA:FALSE`, critical, as DER has it: an empty SEQUENCE (X.690 11.5: a
/// DEFAULT value is never encoded). rcgen 0.13's `IsCa::ExplicitNoCa` encodes `cA FALSE`, which
/// strict parsers (Python's `cryptography`, so sslyze) refuse as invalid DER.
fn not_a_ca() -> rcgen::CustomExtension {
    let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
    ext.set_criticality(true);
    ext
}

fn authority_info_access(url: &str) -> rcgen::CustomExtension {
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let len = u8::try_from(contents.len()).unwrap_or_else(|_| panic!("OCSP URL too long"));
        assert!(len < 0x80, "OCSP URL too long for this short-form encoder");
        [&[tag, len][..], contents].concat()
    }
    const ID_AD_OCSP: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
    let description = tlv(0x30, &[ID_AD_OCSP, &tlv(0x86, url.as_bytes())].concat());
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], tlv(0x30, &description))
}
