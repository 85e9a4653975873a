//! A client certificate's DER into the facts rules read. Whatever a certificate holds, what
//! tlsgate writes from it (the XFCC header, log labels) carries no control character: a subject
//! cannot forge a header or a log line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlsgate_core::facts::{ChainCheck, ClientCert, ClientCertFacts};

fuzz_target!(|data: &[u8]| {
    let Ok(facts) = ClientCertFacts::from_der(data) else {
        return;
    };
    let xfcc = tlsgate_core::policy::xfcc(&facts);
    assert!(
        !xfcc.chars().any(char::is_control),
        "XFCC with a control character: {xfcc:?}"
    );
    for chain in [
        ChainCheck::Trusted,
        ChainCheck::Untrusted,
        ChainCheck::NotChecked,
    ] {
        let cert = ClientCert::presented(Box::new(facts.clone()), chain, 1_800_000_000, None);
        let label = cert.log_label();
        assert!(!label.chars().any(char::is_control), "log label: {label:?}");
    }
    // The PEM tlsgate re-encodes parses back to the same certificate.
    let pem = facts.pem();
    let der: rustls::pki_types::CertificateDer<'_> =
        rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).expect("our PEM");
    assert_eq!(der.as_ref(), data);
});
