//! `tlsgate certs`: a CA, a server certificate and a client certificate, like the seed's
//! openssl steps but well-formed (X.509 v3, subjectAltName on the server certificate).
//!
//! | file | what |
//! | --- | --- |
//! | `ca.crt` / `ca.key` | root CA, `CA:TRUE`, keyCertSign + cRLSign |
//! | `server.crt` / `server.key` | leaf for the `--name`s (SAN DNS or IP; CN = first name), EKU serverAuth |
//! | `client.crt` / `client.key` | leaf with CN `--client-name`, EKU clientAuth |
//!
//! Keys are ECDSA P-256 by default. rcgen (on ring) cannot generate RSA keys, so
//! `--key-type rsa2048` has the `openssl` binary generate them (`openssl genpkey`, PKCS#8) and
//! rcgen sign with them. Private keys are written readable by their owner only.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// The key algorithm of all three certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "rsa2048")]
    Rsa2048,
}

/// What to make.
#[derive(Clone, Debug)]
pub struct CertsOptions {
    pub out: PathBuf,
    pub names: Vec<String>,
    pub key_type: KeyType,
    pub ca_name: String,
    pub client_name: String,
    pub days: u32,
}

/// Writes the six files; returns their paths.
pub fn generate(options: &CertsOptions) -> anyhow::Result<Vec<PathBuf>> {
    if options.names.is_empty() {
        bail!("give at least one --name for the server certificate");
    }
    if options.days == 0 {
        bail!("--days must be at least 1");
    }
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks that are a little behind.
    let not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(i64::from(options.days));

    let ca_key = new_key(options.key_type)?;
    let mut ca = base_params(&options.ca_name, not_before, not_after, Vec::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca
        .self_signed(&ca_key)
        .context("signing the CA certificate")?;

    let server_key = new_key(options.key_type)?;
    let mut server = base_params(
        &options.names[0],
        not_before,
        not_after,
        options.names.clone(),
    )?;
    server.is_ca = IsCa::NoCa;
    server.custom_extensions.push(not_a_ca());
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .context("signing the server certificate")?;

    let client_key = new_key(options.key_type)?;
    let mut client = base_params(&options.client_name, not_before, not_after, Vec::new())?;
    client.is_ca = IsCa::NoCa;
    client.custom_extensions.push(not_a_ca());
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.use_authority_key_identifier_extension = true;
    let client_cert = client
        .signed_by(&client_key, &ca_cert, &ca_key)
        .context("signing the client certificate")?;

    let mut written = Vec::new();
    for (stem, cert, key) in [
        ("ca", &ca_cert, &ca_key),
        ("server", &server_cert, &server_key),
        ("client", &client_cert, &client_key),
    ] {
        written.push(write(
            &options.out,
            &format!("{stem}.crt"),
            &pem(cert),
            0o644,
        )?);
        written.push(write(
            &options.out,
            &format!("{stem}.key"),
            &key.serialize_pem(),
            0o600,
        )?);
    }
    Ok(written)
}

fn pem(cert: &Certificate) -> String {
    cert.pem()
}

/// basicConstraints `CA:FALSE`, critical, encoded as DER requires: an empty SEQUENCE (X.690
/// 11.5: a DEFAULT value is never encoded). rcgen 0.13's `IsCa::ExplicitNoCa` encodes `cA
/// FALSE` explicitly, and strict parsers refuse such a certificate: Python's `cryptography`
/// (so sslyze, and any Python client that inspects it) failed on every leaf this wrote.
fn not_a_ca() -> rcgen::CustomExtension {
    let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
    ext.set_criticality(true);
    ext
}

fn base_params(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    names: Vec<String>,
) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(names.clone())
        .with_context(|| format!("{names:?} are not valid DNS names or IP addresses"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    // Positive and without a leading zero byte, as RFC 5280 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn new_key(kind: KeyType) -> anyhow::Result<KeyPair> {
    match kind {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating an ECDSA P-256 key"),
        KeyType::Rsa2048 => {
            let out = Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .output()
                .context(
                    "running `openssl genpkey` for an RSA key (is openssl installed? `make setup`)",
                )?;
            if !out.status.success() {
                bail!(
                    "openssl genpkey failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let pem = String::from_utf8(out.stdout).context("openssl genpkey output")?;
            KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
                .context("loading the RSA key made by openssl")
        }
    }
}

fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    crate::files::write_atomic(&path, contents.as_bytes(), mode)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlsgate_core::ClientCertFacts;

    #[test]
    fn makes_a_consistent_set() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(&CertsOptions {
            out: dir.path().to_path_buf(),
            names: vec!["app.example.com".into(), "127.0.0.1".into()],
            key_type: KeyType::EcdsaP256,
            ca_name: "ExampleCA".into(),
            client_name: "ExampleClient".into(),
            days: 30,
        })
        .unwrap();
        assert_eq!(written.len(), 6);
        let read = |name: &str| {
            let pem = std::fs::read(dir.path().join(name)).unwrap();
            let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
            ClientCertFacts::from_der(der.as_ref()).unwrap()
        };
        use rustls_pki_types::pem::PemObject;
        let server = read("server.crt");
        assert_eq!(server.subject.common_name, "app.example.com");
        assert_eq!(server.san.dns_names, vec!["app.example.com".to_owned()]);
        assert_eq!(server.san.ip_addresses, vec!["127.0.0.1".to_owned()]);
        let client = read("client.crt");
        assert_eq!(client.subject.common_name, "ExampleClient");
        assert_eq!(
            client.client_auth,
            tlsgate_core::facts::ClientAuthUsage::Allowed
        );
        assert!(read("ca.crt").is_ca);
        // Leaves say CA:FALSE in DER (an empty SEQUENCE, critical), never `cA FALSE` encoded
        // explicitly: Python's `cryptography` refuses that.
        for leaf in ["server.crt", "client.crt"] {
            let pem = std::fs::read(dir.path().join(leaf)).unwrap();
            let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
            let ext = cert
                .extensions()
                .iter()
                .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS)
                .unwrap_or_else(|| panic!("{leaf}: no basicConstraints"));
            assert!(ext.critical, "{leaf}");
            assert_eq!(ext.value, [0x30, 0x00], "{leaf}");
        }
    }
}
