//! The client certificate: the verification strategy as a pure check over what the handshake
//! produced, and the `x-forwarded-client-cert` element upstreams read the identity from.

use super::DenyReason;
use crate::config::{ClientAuth, VerificationStrategy};
use crate::facts::{ClientAuthUsage, ClientCert, Unverified};

/// The verification strategy as a pure check over what the handshake produced. Hosts whose TLS
/// stack already enforces part of it (both do) still run it, so both end in the same place.
pub fn check_client_certificate(auth: &ClientAuth, cert: &ClientCert) -> Result<(), DenyReason> {
    let ClientAuth::On { strategy, .. } = auth else {
        return Ok(());
    };
    match (strategy, cert) {
        (_, ClientCert::Verified(facts)) if facts.client_auth == ClientAuthUsage::NotAllowed => {
            Err(DenyReason::ClientCertificateWrongUsage)
        }
        (_, ClientCert::Verified(_)) => Ok(()),
        (
            VerificationStrategy::RequireAndVerify,
            ClientCert::Unverified(_, Unverified::OutsideValidity),
        ) => Err(DenyReason::ClientCertificateOutsideValidity),
        (
            VerificationStrategy::RequireAndVerify,
            ClientCert::Unverified(_, Unverified::Revoked),
        ) => Err(DenyReason::ClientCertificateRevoked),
        (
            VerificationStrategy::RequireAndVerify,
            ClientCert::Unverified(_, Unverified::RevocationUnknown),
        ) => Err(DenyReason::ClientCertificateRevocationUnknown),
        (
            VerificationStrategy::RequireAndVerify,
            ClientCert::Unverified(_, Unverified::StatusUnavailable),
        ) => Err(DenyReason::OcspUnavailable),
        (VerificationStrategy::RequireAndVerify, ClientCert::Unverified(..)) => {
            Err(DenyReason::ClientCertificateUntrusted)
        }
        (
            VerificationStrategy::RequireAndVerify | VerificationStrategy::RequireAny,
            ClientCert::Absent,
        ) => Err(DenyReason::ClientCertificateRequired),
        (
            VerificationStrategy::RequireAny | VerificationStrategy::Request,
            ClientCert::Unverified(..),
        ) => Ok(()),
        (VerificationStrategy::Request, ClientCert::Absent) => Ok(()),
    }
}

/// Envoy's `x-forwarded-client-cert` element for a verified client certificate:
/// `Hash=…;Cert="…";Subject="…";URI=…;DNS=…`, so upstreams behind either host read the same.
/// `Subject` and `Cert` are always quoted, as Envoy writes them; any other value is quoted when
/// it holds a character XFCC uses as syntax (`,` `;` `=` `"`), so a comma in a URI SAN cannot
/// start a new element. Inside quotes, `\` and `"` are backslash-escaped, once.
pub fn xfcc(cert: &crate::facts::ClientCertFacts) -> String {
    let mut out = format!(
        "Hash={};Cert=\"{}\";Subject={}",
        cert.fingerprint_sha256,
        crate::encoding::url_encode(&cert.pem()),
        xfcc_quoted(&cert.subject.rfc4514)
    );
    for uri in &cert.san.uris {
        out.push_str(";URI=");
        out.push_str(&xfcc_value(uri));
    }
    for dns in &cert.san.dns_names {
        out.push_str(";DNS=");
        out.push_str(&xfcc_value(dns));
    }
    out
}

fn xfcc_value(value: &str) -> String {
    // A SAN is an IA5String and may hold control characters: percent-encoded, so the header
    // stays one value (a URI with `%01` is still a URI).
    let value = &percent_encode_controls(value);
    if value.contains([',', ';', '=', '"', '\\']) || value.chars().any(char::is_whitespace) {
        xfcc_quoted(value)
    } else {
        value.to_owned()
    }
}

fn percent_encode_controls(value: &str) -> String {
    if !value.chars().any(char::is_control) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn xfcc_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
