//! `terminate-tls`: versions, the server certificate and key, client-certificate authorities
//! and strategy, session resumption.

use serde_json::Value;

use crate::error::{ConfigError, ConfigErrorKind, Conflict};
use crate::facts::TlsVersion;
use crate::pem::{
    load_anchors, load_chain, load_key, read_value, CertificateChain, PrivateKey, TrustAnchors,
};
use crate::revocation::{
    parse_lists, subject_and_key, Revocation, RevocationDepth, RevocationStatus,
};
use crate::source::FieldPath;

use super::de::*;
use super::*;

pub(super) fn certificate_pair(
    certificate: &str,
    key: Option<&str>,
    path: &FieldPath,
    names: (&'static str, &'static str),
    options: &LoadOptions<'_>,
) -> Result<(CertificateChain, Option<PrivateKey>), ConfigError> {
    let chain = load_chain(certificate, names.0, options.reader)
        .map_err(|k| err(path.key(names.0), k.into()))?;
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
            let key = load_key(value, names.1, options.reader)
                .map_err(|k| err(path.key(names.1), k.into()))?;
            check
                .check_key_pair(chain.leaf(), key.der())
                .map_err(|reason| {
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
                ConfigErrorKind::NotOneOf {
                    found: other.into(),
                    what: "a TLS version",
                    choices: "use \"1.2\" or \"1.3\"",
                },
            )),
        },
        Some(Value::Number(n)) => {
            let text = n.to_string();
            if matches!(text.as_str(), "1.0" | "1" | "1.1") {
                return Err(err(path.clone(), ConfigErrorKind::ObsoleteTlsVersion(text)));
            }
            Err(err(
                path.clone(),
                ConfigErrorKind::UnquotedTlsVersion { number: text },
            ))
        }
        Some(other) => Err(err(
            path.clone(),
            ConfigErrorKind::WrongType {
                expected: "\"1.2\" or \"1.3\"",
                found: other.to_string(),
            },
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
        mutual_tls_certificate_revocation_lists,
        mutual_tls_revocation_check,
        session_resumption,
        session_lifetime,
        session_ticket_keys,
        mutual_tls_ocsp,
        key_exchange_groups,
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
    let (certificate, private_key) = match (server_certificate, server_private_key) {
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
            KeyMode::Load(_) => {
                return Err(err(
                    path.key("server_certificate"),
                    ConfigErrorKind::ActionNeeds {
                        action: "terminate-tls",
                        needs: "server_certificate and server_private_key",
                        hint: ": tlsgate has no managed certificates (`tlsgate certs --out DIR \
                               --name HOST` makes a set to start with)",
                    },
                ))
            }
        },
    };
    let strategy = match mutual_tls_verification_strategy.as_deref() {
        None | Some("require-and-verify") => VerificationStrategy::RequireAndVerify,
        Some("require-any") => VerificationStrategy::RequireAny,
        Some("request") => VerificationStrategy::Request,
        Some(other) => {
            return Err(err(
                path.key("mutual_tls_verification_strategy"),
                ConfigErrorKind::UnknownChoice {
                    what: "strategy",
                    found: other.into(),
                    choices: "require-and-verify, require-any or request",
                },
            ))
        }
    };
    let client_auth = match mutual_tls_certificate_authorities {
        None if mutual_tls_verification_strategy.is_some() => {
            return Err(err(
                path.key("mutual_tls_verification_strategy"),
                Conflict::StrategyWithoutAuthorities.into(),
            ))
        }
        None => {
            // Revocation fields without CAs would check nothing: say so.
            for (field, given) in [
                (
                    "mutual_tls_certificate_revocation_lists",
                    mutual_tls_certificate_revocation_lists.is_some(),
                ),
                (
                    "mutual_tls_revocation_check",
                    mutual_tls_revocation_check.is_some(),
                ),
                ("mutual_tls_ocsp", mutual_tls_ocsp.is_some()),
            ] {
                if given {
                    return Err(err(
                        path.key(field),
                        ConfigErrorKind::Incomplete {
                            present: field,
                            missing: "mutual_tls_certificate_authorities",
                        },
                    ));
                }
            }
            ClientAuth::Off
        }
        Some(list) if list.is_empty() => {
            return Err(err(
                path.key("mutual_tls_certificate_authorities"),
                ConfigErrorKind::EmptyList {
                    hint: "leave it out to turn mutual TLS off",
                },
            ))
        }
        Some(list) => {
            let authorities =
                load_anchors(&list, "mutual_tls_certificate_authorities", options.reader).map_err(
                    |(i, k)| {
                        err(
                            path.key("mutual_tls_certificate_authorities").index(i),
                            k.into(),
                        )
                    },
                )?;
            let revocation = revocation(
                mutual_tls_certificate_revocation_lists,
                mutual_tls_revocation_check,
                &authorities,
                path,
                options,
            )?;
            let ocsp = mutual_tls_ocsp
                .map(|raw| ocsp(raw, &path.key("mutual_tls_ocsp")))
                .transpose()?;
            ClientAuth::On {
                authorities,
                strategy,
                revocation,
                ocsp,
            }
        }
    };
    let session_resumption = session_resumption.unwrap_or(true);
    if !session_resumption {
        // Settings of something the policy turns off would be silently ignored.
        for (field, given) in [
            ("session_lifetime", session_lifetime.is_some()),
            ("session_ticket_keys", session_ticket_keys.is_some()),
        ] {
            if given {
                return Err(err(
                    path.key(field),
                    Conflict::WithoutResumption { field }.into(),
                ));
            }
        }
    }
    let key_exchange_groups = match key_exchange_groups {
        None => crate::facts::KEY_EXCHANGE_GROUPS.to_vec(),
        Some(names) => groups(&names, min, &path.key("key_exchange_groups"))?,
    };
    Ok(TerminateTls {
        key_exchange_groups,
        min_version: min,
        max_version: max,
        certificate,
        private_key,
        client_auth,
        rule,
        session_resumption,
        session_lifetime: match session_lifetime {
            None => DEFAULT_SESSION_LIFETIME,
            Some(text) => crate::limits::parse_duration(&text)
                .ok()
                .filter(|d| !d.is_zero() && *d <= MAX_SESSION_LIFETIME)
                .ok_or_else(|| {
                    err(
                        path.key("session_lifetime"),
                        ConfigErrorKind::BadDuration {
                            value: (&text).into(),
                            expected: "a session lifetime between 1s and 7 days (e.g. 2h, 30m; \
                                       TLS 1.3 allows no longer)",
                        },
                    )
                })?,
        },
        session_ticket_keys: session_ticket_keys
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, value)| ticket_key(value, &path.key("session_ticket_keys").index(i), options))
            .collect::<Result<_, _>>()?,
    })
}

/// `key_exchange_groups`: known names, each once, at least one, and one a TLS 1.2 client can
/// use when the endpoint admits TLS 1.2 (the post-quantum hybrid is TLS 1.3 only).
fn groups(
    names: &[String],
    min: TlsVersion,
    path: &FieldPath,
) -> Result<Vec<&'static str>, ConfigError> {
    let known = crate::facts::KEY_EXCHANGE_GROUPS;
    let mut out: Vec<&'static str> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Some(group) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
            return Err(err(
                path.index(i),
                ConfigErrorKind::UnknownGroup {
                    found: name.into(),
                    known: known.join(", "),
                },
            ));
        };
        if out.contains(group) {
            return Err(err(
                path.index(i),
                ConfigErrorKind::ListedTwice {
                    item: (*group).to_owned(),
                },
            ));
        }
        out.push(group);
    }
    if out.is_empty() {
        return Err(err(
            path.clone(),
            ConfigErrorKind::NoGroups {
                known: known.join(", "),
            },
        ));
    }
    if min == TlsVersion::Tls12 && out.iter().all(|g| *g == "X25519MLKEM768") {
        return Err(err(path.clone(), Conflict::PostQuantumOnlyWithTls12.into()));
    }
    Ok(out)
}

/// How long a session can be resumed unless the policy says otherwise (BoringSSL's default,
/// so Envoy's and the native host's agree).
pub const DEFAULT_SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(2 * 3600);
/// RFC 8446 §4.6.1: a ticket lives at most seven days.
pub const MAX_SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// One `session_ticket_keys` entry: a path (never inline: it is a secret) to exactly 80 bytes.
/// Without [`KeyMode::Load`] only the path is kept; nothing of the file reaches an error.
fn ticket_key(
    value: &str,
    path: &FieldPath,
    options: &LoadOptions<'_>,
) -> Result<TicketKey, ConfigError> {
    let how = "a path to a file of 80 random bytes (`openssl rand 80 > ticket.key`)";
    if value.contains("-----BEGIN") || value.contains('\n') || value.len() > 4096 {
        return Err(err(path.clone(), ConfigErrorKind::InlineSecret { how }));
    }
    let file = std::path::PathBuf::from(value);
    let resolved = options.reader.resolve(&file);
    let material = match options.keys {
        KeyMode::Skip => None,
        KeyMode::Load(_) => {
            let bytes = options.reader.read(&file).map_err(|reason| {
                err(
                    path.clone(),
                    ConfigErrorKind::Unreadable {
                        path: file.clone(),
                        reason,
                    },
                )
            })?;
            let material: Box<[u8; TicketKey::LEN]> =
                bytes
                    .into_boxed_slice()
                    .try_into()
                    .map_err(|b: Box<[u8]>| {
                        err(
                            path.clone(),
                            ConfigErrorKind::TicketKeyLength {
                                file: file.clone(),
                                len: b.len(),
                                how,
                            },
                        )
                    })?;
            Some(material)
        }
    };
    Ok(TicketKey {
        path: resolved,
        material,
    })
}

/// `mutual_tls_ocsp: {mode, responder, timeout}`.
fn ocsp(raw: RawOcsp, path: &FieldPath) -> Result<OcspCheck, ConfigError> {
    let RawOcsp {
        mode,
        responder,
        timeout,
    } = raw;
    let mode = match mode.as_str() {
        "require" => OcspMode::Require,
        "prefer" => OcspMode::Prefer,
        other => {
            return Err(err(
                path.key("mode"),
                ConfigErrorKind::UnknownChoice {
                    what: "mode",
                    found: other.into(),
                    choices: "require (no valid answer: the certificate is no identity) or \
                              prefer (no valid answer: accept and log)",
                },
            ))
        }
    };
    if let Some(url) = &responder {
        crate::ocsp::Responder::parse_checked(url).map_err(|problem| {
            err(
                path.key("responder"),
                ConfigErrorKind::BadUrl {
                    url: url.into(),
                    problem,
                },
            )
        })?;
    }
    let timeout = match timeout {
        None => DEFAULT_OCSP_TIMEOUT,
        Some(text) => crate::limits::parse_duration(&text)
            .ok()
            .filter(|d| !d.is_zero() && *d <= std::time::Duration::from_secs(30))
            .ok_or_else(|| {
                err(
                    path.key("timeout"),
                    ConfigErrorKind::BadDuration {
                        value: (&text).into(),
                        expected: "a timeout between 1ms and 30s (e.g. 2s, 500ms)",
                    },
                )
            })?,
    };
    Ok(OcspCheck {
        mode,
        responder,
        timeout,
    })
}

/// How long a connection waits for an OCSP answer unless the policy says otherwise.
pub const DEFAULT_OCSP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `mutual_tls_certificate_revocation_lists` and `mutual_tls_revocation_check`: every CRL
/// parsed, signed by the configured CA it names, current; every CA covered.
fn revocation(
    lists: Option<Vec<String>>,
    check: Option<String>,
    authorities: &TrustAnchors,
    path: &FieldPath,
    options: &LoadOptions<'_>,
) -> Result<Option<Revocation>, ConfigError> {
    const FIELD: &str = "mutual_tls_certificate_revocation_lists";
    let depth = match check.as_deref() {
        None | Some("chain") => RevocationDepth::Chain,
        Some("leaf") => RevocationDepth::Leaf,
        Some(other) => {
            return Err(err(
                path.key("mutual_tls_revocation_check"),
                ConfigErrorKind::UnknownChoice {
                    what: "revocation check",
                    found: other.into(),
                    choices: "chain (every certificate below the CA, the default) or leaf (the \
                              client certificate only)",
                },
            ))
        }
    };
    let Some(values) = lists else {
        if check.is_some() {
            return Err(err(
                path.key("mutual_tls_revocation_check"),
                ConfigErrorKind::Incomplete {
                    present: "mutual_tls_revocation_check",
                    missing: FIELD,
                },
            ));
        }
        return Ok(None);
    };
    if values.is_empty() {
        return Err(err(
            path.key(FIELD),
            ConfigErrorKind::EmptyList {
                hint: "leave it out to check no revocation",
            },
        ));
    }
    let cas: Vec<(Vec<u8>, Vec<u8>)> = authorities
        .certs
        .iter()
        .filter_map(|ca| subject_and_key(ca.as_ref()))
        .collect();
    let now = match options.keys {
        // The filter loads without a clock of its own; staleness is checked per connection.
        KeyMode::Skip => None,
        KeyMode::Load(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok()),
    };
    let mut out = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let at = path.key(FIELD).index(i);
        let (origin, bytes) =
            read_value(value, options.reader).map_err(|k| err(at.clone(), k.into()))?;
        let parsed = parse_lists(&bytes, &origin)
            .map_err(|reason| err(at.clone(), ConfigErrorKind::BadRevocationList { reason }))?;
        for list in parsed {
            let Some((_, spki)) = cas.iter().find(|(subject, _)| *subject == list.issuer_der)
            else {
                return Err(err(
                    at,
                    ConfigErrorKind::RevocationListIssuer {
                        issuer: list.issuer,
                        authorities: authorities.subjects.join("; "),
                    },
                ));
            };
            if let KeyMode::Load(crypto) = options.keys {
                crypto
                    .check_crl_signature(list.der.as_ref(), spki)
                    .map_err(|reason| {
                        err(
                            at.clone(),
                            ConfigErrorKind::RevocationListSignature {
                                issuer: list.issuer.clone(),
                                reason,
                            },
                        )
                    })?;
            }
            if let Some(now) = now {
                if list.is_stale(now) {
                    return Err(err(
                        at,
                        ConfigErrorKind::RevocationListExpired {
                            issuer: list.issuer,
                            next_update: crate::encoding::rfc3339(list.next_update),
                        },
                    ));
                }
            }
            out.push(list);
        }
    }
    // A CA with no CRL would make each certificate it issued "status unknown": refused by
    // both TLS stacks. Say so now rather than refuse every such client later.
    for (n, (subject, _)) in cas.iter().enumerate() {
        if !out.iter().any(|l| l.issuer_der == *subject) {
            return Err(err(
                path.key(FIELD),
                ConfigErrorKind::MissingRevocationList {
                    authority: authorities.subjects.get(n).cloned().unwrap_or_default(),
                },
            ));
        }
    }
    let revocation = Revocation { lists: out, depth };
    // A listed CA that another listed CA's CRL revokes: natively it is a trust anchor of its
    // own, so its revocation would never be consulted (BoringSSL goes on to the root and
    // refuses it). Refuse the list, so both hosts agree.
    for (n, ca) in authorities.certs.iter().enumerate() {
        let Ok(facts) = crate::facts::ClientCertFacts::from_der(ca.as_ref()) else {
            continue;
        };
        let self_issued =
            subject_and_key(ca.as_ref()).is_some_and(|(subject, _)| subject == facts.issuer_der);
        // Revoked is read before staleness, so the time does not matter here.
        if !self_issued && revocation.status(&facts, 0) == RevocationStatus::Revoked {
            return Err(err(
                path.key("mutual_tls_certificate_authorities").index(n),
                ConfigErrorKind::RevokedAuthority {
                    subject: authorities.subjects.get(n).cloned().unwrap_or_default(),
                    issuer: facts.issuer.rfc4514.clone(),
                },
            ));
        }
    }
    Ok(Some(revocation))
}
