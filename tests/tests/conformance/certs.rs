//! Makes the table's certificates with the project's one factory (and the seed's openssl steps).
//!
//! Each entry `name` becomes `name.crt` (the certificate alone), `name.chain.crt` (leaf and
//! intermediates) and `name.key`, in the run's directory; policies refer to them by those names.

use std::collections::BTreeMap;
use std::path::Path;

use tlsgate_test_support::{Authority, Eku, Issued, LeafSpec, Validity};

use std::time::{Duration, UNIX_EPOCH};

use crate::table::{CertSpec, Table, ValiditySpec};

pub fn make(table: &Table, dir: &Path) {
    // Responders get their ports now: certificates name them (hosts.rs starts them there).
    for name in table.ocsp_responders.keys() {
        let url = format!("http://127.0.0.1:{}/", tlsgate_e2e::free_port());
        std::fs::write(dir.join(format!("{name}.url")), url).unwrap();
    }
    let mut authorities: BTreeMap<String, Authority> = BTreeMap::new();
    // Authorities first, parents before children (a few passes settle any order).
    for _ in 0..4 {
        for (name, spec) in &table.certificates {
            let Some(cn) = &spec.authority else { continue };
            if authorities.contains_key(name) {
                continue;
            }
            let ca = match &spec.issuer {
                None => Some(Authority::root(cn)),
                Some(parent) => authorities.get(parent).map(|p| {
                    if spec.not_a_ca {
                        p.not_a_ca(cn)
                    } else {
                        p.intermediate(cn)
                    }
                }),
            };
            if let Some(ca) = ca {
                write(dir, name, &ca.cert_pem(), &ca.chain_pem(), &ca.key_pem());
                authorities.insert(name.clone(), ca);
            }
        }
    }
    // A CRL may revoke a leaf or an authority (an issuing CA its root revokes).
    let mut issued_der: BTreeMap<String, Vec<u8>> = authorities
        .iter()
        .map(|(name, ca)| (name.clone(), ca.cert_der()))
        .collect();
    for (name, spec) in &table.certificates {
        if spec.authority.is_some() {
            assert!(
                authorities.contains_key(name),
                "authority `{name}`: unknown issuer"
            );
            continue;
        }
        let mut leaf = leaf_spec(name, spec);
        if let Some(responder) = &spec.ocsp {
            let url = std::fs::read_to_string(dir.join(format!("{responder}.url")))
                .unwrap_or_else(|e| panic!("certificate `{name}`: responder `{responder}`: {e}"));
            leaf = leaf.with_ocsp_url(&url);
        }
        let issued = match (&spec.self_signed, &spec.issuer) {
            (Some(_), _) => Issued::self_signed(&leaf),
            (None, Some(issuer)) => authorities
                .get(issuer)
                .unwrap_or_else(|| panic!("certificate `{name}`: unknown issuer `{issuer}`"))
                .issue(&leaf),
            (None, None) => panic!("certificate `{name}` needs an issuer or self_signed"),
        };
        write(
            dir,
            name,
            &issued.cert_pem,
            &issued.chain_pem,
            &issued.key_pem,
        );
        if let (Some(_), Some(issuer)) = (
            &spec.ocsp,
            spec.issuer.as_ref().and_then(|i| authorities.get(i)),
        ) {
            std::fs::write(
                dir.join(format!("{name}.bundle.crt")),
                format!("{}{}", issued.cert_pem, issuer.cert_pem()),
            )
            .unwrap();
        }
        issued_der.insert(name.clone(), issued.cert_der.clone());
    }
    for (name, spec) in &table.crls {
        let issuer = authorities
            .get(&spec.issuer)
            .unwrap_or_else(|| panic!("CRL `{name}`: unknown issuer `{}`", spec.issuer));
        let revoked: Vec<&[u8]> = spec
            .revoke
            .iter()
            .map(|r| {
                issued_der
                    .get(r)
                    .unwrap_or_else(|| panic!("CRL `{name}`: unknown certificate `{r}`"))
                    .as_slice()
            })
            .collect();
        // A forgery: the same name, another key.
        let forger = spec.forged.then(|| Authority::root(issuer.common_name()));
        let pem =
            forger
                .as_ref()
                .unwrap_or(issuer)
                .crl(&revoked, spec.this_update, spec.next_update);
        std::fs::write(dir.join(format!("{name}.crl")), &pem).unwrap();
        let der = tlsgate_test_support::pem_to_der(&pem);
        std::fs::write(dir.join(format!("{name}.der.crl")), der).unwrap();
    }
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    tlsgate_test_support::seed_openssl_certs(&seed)
        .unwrap_or_else(|e| panic!("seed certificates: {e}"));
}

fn leaf_spec(name: &str, spec: &CertSpec) -> LeafSpec {
    let mut leaf = match (&spec.client, &spec.server, &spec.self_signed) {
        (Some(cn), None, None) | (None, None, Some(cn)) => LeafSpec::client(cn),
        (None, Some(hosts), None) => {
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            LeafSpec::server(&hosts)
        }
        _ => panic!("certificate `{name}`: say exactly one of client, server, self_signed"),
    };
    if let Some(o) = &spec.organization {
        leaf = leaf.with_organization(o);
    }
    for d in &spec.dns {
        leaf = leaf.with_dns_name(d);
    }
    for u in &spec.uri {
        leaf = leaf.with_uri(u);
    }
    if let Some(v) = &spec.validity {
        leaf = leaf.with_validity(match v {
            ValiditySpec::Named(n) => match n.as_str() {
                "current" => Validity::Current,
                "expired" => Validity::Expired,
                "not-yet-valid" => Validity::NotYetValid,
                other => panic!("certificate `{name}`: unknown validity `{other}`"),
            },
            ValiditySpec::Window {
                not_before,
                not_after,
            } => Validity::Window {
                not_before: UNIX_EPOCH + Duration::from_secs(*not_before),
                not_after: UNIX_EPOCH + Duration::from_secs(*not_after),
            },
        });
    }
    if let Some(eku) = &spec.eku {
        leaf = leaf.with_eku(eku.iter().map(|e| match e.as_str() {
            "client-auth" => Eku::ClientAuth,
            "server-auth" => Eku::ServerAuth,
            other => panic!("certificate `{name}`: unknown eku `{other}`"),
        }));
    }
    if let Some(serial) = spec.serial {
        leaf = leaf.with_serial(serial);
    }
    leaf
}

fn write(dir: &Path, name: &str, cert: &str, chain: &str, key: &str) {
    std::fs::write(dir.join(format!("{name}.crt")), cert).unwrap();
    std::fs::write(dir.join(format!("{name}.chain.crt")), chain).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key).unwrap();
}
