//! Facts as CEL values: the `conn` and `req` maps built from a connection's facts, its
//! certificates and a request.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::Value;

use crate::facts::{ClientCert, ClientCertFacts, DistinguishedName, TlsFacts};
use crate::request::Request;

fn map(entries: Vec<(&'static str, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_owned())), v))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

fn strings(items: &[String]) -> Value {
    Value::List(Arc::new(
        items.iter().map(|s| Value::from(s.as_str())).collect(),
    ))
}

fn timestamp(secs: i64) -> Value {
    use cel::objects::Value as V;
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => V::Timestamp(t.fixed_offset()),
        None => V::Null,
    }
}

/// A moment, to the microsecond (a connection's start; certificates' times are whole seconds).
fn instant(at: std::time::SystemTime) -> Value {
    use cel::objects::Value as V;
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let nanos = since.subsec_micros() * 1_000;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => V::Timestamp(t.fixed_offset()),
        None => V::Null,
    }
}

fn name_value(dn: &DistinguishedName) -> Value {
    map(vec![
        ("rfc4514", Value::from(dn.rfc4514.as_str())),
        ("common_name", Value::from(dn.common_name.as_str())),
        ("organization", strings(&dn.organization)),
        ("organizational_unit", strings(&dn.organizational_unit)),
        ("country", strings(&dn.country)),
        ("locality", strings(&dn.locality)),
        ("province", strings(&dn.province)),
    ])
}

/// `conn.tls.client`. Identity claims (subject, issuer, SANs, serial, validity, extensions,
/// signature algorithm) are filled in only for a certificate that verified against the
/// endpoint's CAs: anyone can put `CN=admin` in a self-signed certificate. What possession of
/// the key does establish — the certificate itself (`pem`, `fingerprint.sha256`) — is there for
/// every presented certificate, so a policy can pin one. `verified` and `verification` say which
/// case this is.
fn client_value(cert: &ClientCert) -> Value {
    // Without a verified certificate every identity field is present and empty, so
    // `cn != 'x'` is simply true and a rule written for mTLS denies instead of erroring.
    let empty = no_certificate();
    let (identity, presented) = match cert {
        ClientCert::Verified(c) => (c.as_ref(), Some(c.as_ref())),
        ClientCert::Unverified(c, _) => (&empty, Some(c.as_ref())),
        ClientCert::Absent => (&empty, None),
    };
    let c = identity;
    let extensions = Value::List(Arc::new(
        c.extensions
            .iter()
            .map(|e| {
                map(vec![
                    ("id", Value::from(e.id.as_str())),
                    ("critical", Value::Bool(e.critical)),
                ])
            })
            .collect(),
    ));
    let mut fields = identity_fields(c);
    fields.extend([
        ("presented", Value::Bool(presented.is_some())),
        (
            "verified",
            Value::Bool(matches!(cert, ClientCert::Verified(_))),
        ),
        ("verification", Value::from(cert.verification())),
        ("extensions", extensions),
        (
            "fingerprint",
            map(vec![(
                "sha256",
                Value::from(presented.map_or("", |p| p.fingerprint_sha256.as_str())),
            )]),
        ),
        (
            "pem",
            Value::from(presented.map(ClientCertFacts::pem).unwrap_or_default()),
        ),
    ]);
    map(fields)
}

/// The fields a certificate's holder is identified by, the same for `conn.tls.client` and
/// `conn.tls.server`.
fn identity_fields(c: &ClientCertFacts) -> Vec<(&'static str, Value)> {
    vec![
        ("subject", name_value(&c.subject)),
        ("issuer", name_value(&c.issuer)),
        (
            "san",
            map(vec![
                ("dns_names", strings(&c.san.dns_names)),
                ("email_addresses", strings(&c.san.email_addresses)),
                ("ip_addresses", strings(&c.san.ip_addresses)),
                ("uris", strings(&c.san.uris)),
            ]),
        ),
        ("serial_number", Value::from(c.serial_number.as_str())),
        (
            "signature_algorithm",
            Value::from(c.signature_algorithm.as_str()),
        ),
        (
            "validity",
            map(vec![
                ("not_before", timestamp(c.not_before)),
                ("not_after", timestamp(c.not_after)),
            ]),
        ),
    ]
}

pub(super) fn conn_value(facts: &TlsFacts, server: Option<&ClientCertFacts>) -> Value {
    map(vec![
        ("client_ip", Value::from(facts.client_ip.to_string())),
        ("client_port", Value::Int(i64::from(facts.client_port))),
        ("server_ip", Value::from(facts.server.ip().to_string())),
        ("server_port", Value::Int(i64::from(facts.server.port()))),
        ("ts", map(vec![("start", instant(facts.started))])),
        (
            "tls",
            map(vec![
                ("version", Value::from(facts.version.as_str())),
                ("cipher_suite", Value::from(facts.cipher_suite.as_str())),
                ("session_resumed", Value::Bool(facts.resumed)),
                ("key_exchange_group", Value::from(facts.key_exchange_group)),
                ("ja4_fingerprint", Value::from(facts.ja4.as_str())),
                ("sni", Value::from(facts.sni.clone().unwrap_or_default())),
                (
                    "negotiated_alpn",
                    Value::from(facts.alpn.clone().unwrap_or_default()),
                ),
                ("client", client_value(&facts.client_cert)),
                ("server", server_value(server)),
            ]),
        ),
    ])
}

/// A certificate with every field empty.
fn no_certificate() -> ClientCertFacts {
    ClientCertFacts {
        subject: DistinguishedName::default(),
        issuer: DistinguishedName::default(),
        issuer_der: Vec::new(),
        san: Default::default(),
        serial_number: String::new(),
        signature_algorithm: String::new(),
        not_before: 0,
        not_after: 0,
        extensions: Vec::new(),
        fingerprint_sha256: String::new(),
        is_ca: false,
        client_auth: crate::facts::ClientAuthUsage::NotAllowed,
        legacy_v1: false,
        der: Vec::new(),
    }
}

/// `conn.tls.server`: the endpoint's certificate, the same fields as a client's identity (all
/// empty for a policy loaded without its certificate, and in the load-time type check).
fn server_value(cert: Option<&ClientCertFacts>) -> Value {
    let empty;
    let c = match cert {
        Some(c) => c,
        None => {
            empty = no_certificate();
            &empty
        }
    };
    let mut fields = identity_fields(c);
    fields.push((
        "fingerprint",
        map(vec![("sha256", Value::from(c.fingerprint_sha256.as_str()))]),
    ));
    map(fields)
}

pub(super) fn req_value(req: &Request<'_>, path: &str, url: &str) -> Value {
    let mut headers: HashMap<Key, Vec<Value>> = HashMap::new();
    for (name, value) in req.headers {
        let name = name.to_ascii_lowercase();
        // Headers the edge owns are forged when a client sends them, and `_` names are dropped;
        // rules never see either (hosts remove them before forwarding, too).
        if crate::request::drops_client_header(&name) {
            continue;
        }
        headers
            .entry(Key::String(Arc::new(name)))
            .or_default()
            .push(Value::from(*value));
    }
    let headers: HashMap<Key, Value> = headers
        .into_iter()
        .map(|(k, v)| (k, Value::List(Arc::new(v))))
        .collect();
    map(vec![
        ("method", Value::from(req.method)),
        ("host", Value::from(req.host)),
        ("path", Value::from(path)),
        ("url", Value::from(url)),
        (
            "headers",
            Value::Map(Map {
                map: Arc::new(headers),
            }),
        ),
    ])
}
