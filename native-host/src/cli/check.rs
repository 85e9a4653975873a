//! `tlsgate check`, and `tlsgate envoy-config --filter-policy`: load a policy and say what it
//! serves.

use std::path::PathBuf;
use std::process::ExitCode;

use tlsgate::keys::RustlsKeyCheck;
use tlsgate_core::{Config, Deployment, KeyMode};

use super::print_load_notes;

pub(crate) fn check(files: &[PathBuf], deployment: &Deployment) -> ExitCode {
    match Config::load_files(files, KeyMode::Load(&RustlsKeyCheck), deployment) {
        Ok(config) => {
            print_load_notes(&config);
            for endpoint in &config.endpoints {
                println!("{endpoint}");
                for origin in &endpoint.origin {
                    println!("  from {origin}");
                }
                if let Some(revocation) = endpoint.tls.client_auth.revocation() {
                    for list in &revocation.lists {
                        println!("  {}", crl_line(list));
                    }
                }
                if let Some(check) = endpoint.tls.client_auth.ocsp() {
                    println!(
                        "  OCSP ({}, {} at most): {}",
                        check.mode.as_str(),
                        tlsgate_core::limits::HumanDuration(check.timeout),
                        check
                            .responder
                            .as_deref()
                            .unwrap_or("the responder each client certificate names")
                    );
                }
                if let Some(chain) = &endpoint.tls.certificate {
                    match tlsgate::stapling::Stapling::for_chain(&chain.certs) {
                        Ok(Some(stapling)) => {
                            println!("  staples the OCSP answer from {}", stapling.url);
                        }
                        Ok(None) => {}
                        Err(why) => println!("  does not staple: {why}"),
                    }
                }
            }
            for listener in &config.listeners {
                if let Some(pp) = &listener.proxy_protocol {
                    let sources: Vec<String> =
                        pp.trusted_sources.iter().map(ToString::to_string).collect();
                    println!(
                        "{}: a PROXY protocol header (v1 or v2) first, from {} only",
                        listener.bind,
                        sources.join(", ")
                    );
                }
            }
            println!(
                "ok: {} endpoint{} in {} file{}",
                config.endpoints.len(),
                if config.endpoints.len() == 1 { "" } else { "s" },
                config.files.len(),
                if config.files.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// `CRL of CN=… (ca.crl): 2 revoked, updated …, next update … (in 6d 23h)`.
fn crl_line(list: &tlsgate_core::revocation::RevocationList) -> String {
    use tlsgate_core::encoding::rfc3339;
    let source = match &list.origin {
        tlsgate_core::pem::Origin::File(path) => path.display().to_string(),
        tlsgate_core::pem::Origin::Inline => "inline".to_owned(),
    };
    let now = tlsgate::clock::unix_now();
    let left = list.next_update - now;
    format!(
        "CRL of {} ({source}): {} revoked, issued {}, next update {} (in {}h {}m)",
        list.issuer,
        list.len(),
        rfc3339(list.this_update),
        rfc3339(list.next_update),
        left / 3600,
        (left % 3600) / 60
    )
}

pub(crate) fn print_filter_policy(files: &[PathBuf], deployment: &Deployment) -> ExitCode {
    let result = Config::load_files(files, KeyMode::Load(&RustlsKeyCheck), deployment);
    match result.map(|config| serde_json::to_string_pretty(&config.filter_policy())) {
        Ok(Ok(json)) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
