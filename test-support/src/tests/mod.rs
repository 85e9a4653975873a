//! Each certificate is parsed back with x509-parser and, where it matters, checked with the real
//! `openssl verify`, so a fixture that claims to be "expired" or "CA=false" provably is.

#![allow(clippy::unwrap_used)]

mod chains;
mod keys;
mod leaves;
mod seed_set;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::x509::X509Version;

use crate::seed::seed_openssl_certs_with;
use crate::*;

const DAY: i64 = 24 * 60 * 60;

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty(), "trailing bytes after the certificate");
    cert
}

fn pems(pem: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

fn cn(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn issuer_cn(cert: &X509Certificate<'_>) -> String {
    cert.issuer()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// `Some(ca)` when basicConstraints is present.
fn ca_flag(cert: &X509Certificate<'_>) -> Option<bool> {
    cert.basic_constraints().unwrap().map(|bc| bc.value.ca)
}

/// (serverAuth, clientAuth), or `None` when there is no EKU extension.
fn eku(cert: &X509Certificate<'_>) -> Option<(bool, bool)> {
    cert.extended_key_usage()
        .unwrap()
        .map(|e| (e.value.server_auth, e.value.client_auth))
}

fn key_cert_sign(cert: &X509Certificate<'_>) -> bool {
    cert.key_usage().unwrap().unwrap().value.key_cert_sign()
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Some(san) = cert.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(n) => format!("DNS:{n}"),
            GeneralName::IPAddress(b) => match b.len() {
                4 => format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                _ => format!("IP:{}", IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
            },
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::RFC822Name(e) => format!("email:{e}"),
            other => format!("{other:?}"),
        })
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// (notBefore, notAfter) relative to now, in days rounded to the nearest day.
fn days_from_now(cert: &X509Certificate<'_>) -> (i64, i64) {
    let v = cert.validity();
    let days = |t: i64| (t - now() + DAY / 2).div_euclid(DAY);
    (
        days(v.not_before.timestamp()),
        days(v.not_after.timestamp()),
    )
}

fn spki_of_key(key_pem: &str) -> Vec<u8> {
    rcgen::KeyPair::from_pem(key_pem).unwrap().public_key_der()
}

/// Runs `openssl verify` and returns (success, combined output).
fn openssl_verify(
    dir: &Path,
    trusted: &str,
    untrusted: Option<&str>,
    leaf: &str,
    extra: &[&str],
) -> (bool, String) {
    std::fs::write(dir.join("trusted.pem"), trusted).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir)
        .args(["verify", "-CAfile", "trusted.pem"])
        .args(extra);
    if let Some(untrusted) = untrusted {
        std::fs::write(dir.join("untrusted.pem"), untrusted).unwrap();
        cmd.args(["-untrusted", "untrusted.pem"]);
    }
    let out = cmd.arg("leaf.pem").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
