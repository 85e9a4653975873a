//! `terminate-tls`: versions, the server certificate and key, client-certificate authorities
//! and strategy, session resumption.

use serde_json::Value;

use crate::error::{invalid, ConfigError, ConfigErrorKind};
use crate::facts::TlsVersion;
use crate::pem::{load_anchors, load_chain, load_key, CertificateChain, PrivateKey};
use crate::source::FieldPath;

use super::load::*;
use super::*;

pub(super) fn certificate_pair(
    certificate: &str,
    key: Option<&str>,
    path: &FieldPath,
    names: (&'static str, &'static str),
    options: &LoadOptions<'_>,
) -> Result<(CertificateChain, Option<PrivateKey>), ConfigError> {
    let chain =
        load_chain(certificate, names.0, options.reader).map_err(|k| err(path.key(names.0), k))?;
    let key = match (options.keys, key) {
        (KeyMode::Skip, _) => None,
        (KeyMode::Load(_), None) => {
            return Err(err(
                path.key(names.1),
                ConfigErrorKind::Incomplete {
                    present: names.0,
                    missing: names.1,
                },
            ))
        }
        (KeyMode::Load(check), Some(value)) => {
            let key =
                load_key(value, names.1, options.reader).map_err(|k| err(path.key(names.1), k))?;
            check.check(chain.leaf(), key.der()).map_err(|reason| {
                err(
                    path.key(names.1),
                    ConfigErrorKind::KeyMismatch {
                        subject: chain.subject.clone(),
                        reason,
                    },
                )
            })?;
            Some(key)
        }
    };
    Ok((chain, key))
}

pub(super) fn parse_version(
    value: Option<Value>,
    default: TlsVersion,
    path: &FieldPath,
) -> Result<TlsVersion, ConfigError> {
    match value {
        None => Ok(default),
        Some(Value::String(s)) => match s.trim() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            old @ ("1.0" | "1.1" | "1") => Err(err(
                path.clone(),
                ConfigErrorKind::ObsoleteTlsVersion(old.to_owned()),
            )),
            other => Err(err(
                path.clone(),
                invalid(format!(
                    "`{other}` is not a TLS version; use \"1.2\" or \"1.3\""
                )),
            )),
        },
        Some(Value::Number(n)) => {
            let text = n.to_string();
            let hint = if matches!(text.as_str(), "1.0" | "1" | "1.1") {
                return Err(err(path.clone(), ConfigErrorKind::ObsoleteTlsVersion(text)));
            } else {
                format!("write the version as a quoted string, \"{text}\" (unquoted YAML reads {text} as a number)")
            };
            Err(err(path.clone(), invalid(hint)))
        }
        Some(other) => Err(err(
            path.clone(),
            invalid(format!("expected \"1.2\" or \"1.3\", found {other}")),
        )),
    }
}

pub(super) fn terminate_tls(
    raw: RawTerminateTls,
    rule: usize,
    path: &FieldPath,
    options: &LoadOptions<'_>,
) -> Result<TerminateTls, ConfigError> {
    let RawTerminateTls {
        min_version,
        max_version,
        server_certificate,
        server_private_key,
        mutual_tls_certificate_authorities,
        mutual_tls_verification_strategy,
        session_resumption,
    } = raw;
    let min = parse_version(min_version, TlsVersion::Tls12, &path.key("min_version"))?;
    let max = parse_version(max_version, TlsVersion::Tls13, &path.key("max_version"))?;
    if min > max {
        return Err(err(
            path.key("min_version"),
            ConfigErrorKind::VersionRange {
                min: min.to_string(),
                max: max.to_string(),
            },
        ));
    }
    let (certificate, private_key) =
        match (server_certificate, server_private_key) {
            (Some(cert), key) => {
                let (c, k) = certificate_pair(
                    &cert,
                    key.as_deref(),
                    path,
                    ("server_certificate", "server_private_key"),
                    options,
                )?;
                (Some(c), k)
            }
            (None, Some(_)) => {
                return Err(err(
                    path.key("server_certificate"),
                    ConfigErrorKind::Incomplete {
                        present: "server_private_key",
                        missing: "server_certificate",
                    },
                ))
            }
            (None, None) => match options.keys {
                KeyMode::Skip => (None, None),
                KeyMode::Load(_) => return Err(err(
                    path.key("server_certificate"),
                    invalid(
                        "terminate-tls needs server_certificate and server_private_key: tlsgate \
                         has no managed certificates (`tlsgate certs --out DIR --name HOST` makes \
                         a set to start with)",
                    ),
                )),
            },
        };
    let strategy = match mutual_tls_verification_strategy.as_deref() {
        None | Some("require-and-verify") => VerificationStrategy::RequireAndVerify,
        Some("require-any") => VerificationStrategy::RequireAny,
        Some("request") => VerificationStrategy::Request,
        Some(other) => {
            return Err(err(
                path.key("mutual_tls_verification_strategy"),
                invalid(format!(
                    "unknown strategy `{other}`; use require-and-verify, require-any or request"
                )),
            ))
        }
    };
    let client_auth = match mutual_tls_certificate_authorities {
        None if mutual_tls_verification_strategy.is_some() => {
            return Err(err(
                path.key("mutual_tls_verification_strategy"),
                invalid(
                    "a verification strategy without mutual_tls_certificate_authorities does \
                     nothing: list the CAs that issue your client certificates",
                ),
            ))
        }
        None => ClientAuth::Off,
        Some(list) if list.is_empty() => {
            return Err(err(
                path.key("mutual_tls_certificate_authorities"),
                invalid("the list is empty; leave it out to turn mutual TLS off"),
            ))
        }
        Some(list) => ClientAuth::On {
            authorities: load_anchors(&list, "mutual_tls_certificate_authorities", options.reader)
                .map_err(|(i, k)| {
                    err(path.key("mutual_tls_certificate_authorities").index(i), k)
                })?,
            strategy,
        },
    };
    Ok(TerminateTls {
        min_version: min,
        max_version: max,
        certificate,
        private_key,
        client_auth,
        rule,
        session_resumption: session_resumption.unwrap_or(true),
    })
}
