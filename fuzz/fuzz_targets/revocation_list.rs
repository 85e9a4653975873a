//! Certificate revocation lists (PEM or DER, as a policy names them): parsed or refused with a
//! reason, never a panic; a parsed list answers for any certificate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlsgate_core::pem::Origin;
use tlsgate_core::revocation::{Revocation, RevocationDepth, RevocationList};

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = RevocationList::parse(data, Origin::Inline) else {
        return;
    };
    let revocation = Revocation {
        lists: vec![list],
        depth: RevocationDepth::Chain,
    };
    let facts = tlsgate_core::ClientCertFacts::from_der(&common::fixture().client_der)
        .expect("fixture certificate");
    let _ = revocation.status(&facts, 0);
    let _ = revocation.status(&facts, i64::MAX);
    let pem = revocation.to_pem();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"));
});
