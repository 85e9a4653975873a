//! The policy as the proxy-wasm filter receives it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{invalid, ConfigError, ConfigErrorKind};
use crate::pem::{load_anchors, load_chain};
use crate::source::{self, FieldPath};

use super::load::*;
use super::*;

/// The policy the proxy-wasm filter receives as its plugin configuration: the same endpoints
/// and rules, with certificates and CAs inlined as PEM (the filter has no file system) and every
/// private key removed (Envoy holds the keys; they never enter the wasm VM).
///
/// Works on the raw documents so the filter sees the rules exactly as written.
pub fn filter_policy(paths: &[PathBuf]) -> Result<Value, ConfigError> {
    let mut endpoints = Vec::new();
    for path in paths {
        let fail = |path_in_doc: FieldPath, kind: ConfigErrorKind| ConfigError {
            file: Some(path.clone()),
            path: path_in_doc,
            location: None,
            kind: Box::new(kind),
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(
                FieldPath::root(),
                ConfigErrorKind::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                },
            )
        })?;
        let doc = source::parse(&text).map_err(|e| ConfigError {
            location: e.location,
            ..fail(FieldPath::root(), ConfigErrorKind::Syntax(e.message))
        })?;
        let raw: RawConfig = deserialize(&doc.value, FieldPath::root()).map_err(|mut e| {
            e.file = Some(path.clone());
            e.location = doc.locate(&e.path);
            e
        })?;
        let reader = crate::pem::FileReader {
            base_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        // Certificates are re-encoded from their parsed DER, never copied as text: a file that
        // bundles a certificate with its key must not carry the key into the plugin config.
        let chain = |value: &str, at: FieldPath| -> Result<String, ConfigError> {
            load_chain(value, "certificate", &reader)
                .map(|c| c.to_pem())
                .map_err(|k| fail(at, k))
        };
        let anchors = |values: &mut Vec<String>, at: FieldPath| -> Result<(), ConfigError> {
            for value in values.iter_mut() {
                let parsed = load_anchors(
                    std::slice::from_ref(value),
                    "certificate_authorities",
                    &reader,
                )
                .map_err(|(_, k)| fail(at.clone(), k))?;
                *value = parsed.to_pem();
            }
            Ok(())
        };
        for (i, mut endpoint) in raw.endpoints.into_iter().enumerate() {
            let at = FieldPath::root().key("endpoints").index(i);
            if let Some(tls) = endpoint.upstream.tls.as_mut() {
                if let Some(pair) = tls.client_certificate.as_mut() {
                    pair.certificate = chain(&pair.certificate, at.clone())?;
                    pair.private_key = None;
                }
                if let Some(cas) = tls.certificate_authorities.as_mut() {
                    anchors(cas, at.clone())?;
                }
                for pinned in tls.pinned_certificates.iter_mut().flatten() {
                    *pinned = chain(pinned, at.clone())?;
                }
            }
            if let Some(policy) = endpoint.traffic_policy.as_mut() {
                for rule in &mut policy.on_tcp_connect {
                    for action in &mut rule.actions {
                        if action.kind != "terminate-tls" {
                            continue;
                        }
                        let Some(config) = action.config.take() else {
                            continue;
                        };
                        let mut tls: RawTerminateTls = deserialize(&config, at.clone())?;
                        tls.server_private_key = None;
                        if let Some(cert) = tls.server_certificate.as_mut() {
                            *cert = chain(cert, at.clone())?;
                        }
                        if let Some(cas) = tls.mutual_tls_certificate_authorities.as_mut() {
                            anchors(cas, at.clone())?;
                        }
                        action.config = Some(
                            serde_json::to_value(tls)
                                .map_err(|e| fail(at.clone(), invalid(e.to_string())))?,
                        );
                    }
                }
            }
            endpoints.push(endpoint);
        }
    }
    serde_json::to_value(RawConfig { endpoints })
        .map_err(|e| ConfigError::new(FieldPath::root(), invalid(e.to_string())))
}
