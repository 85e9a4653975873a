//! The evaluation context: one connection's (and request's) CEL variables, lent to every
//! evaluation, and the sample facts the loader evaluates each expression against.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, Value};

use super::compile::Program;
use super::functions::stdlib;
use super::template::{render_value, VarValue};
use super::values::{conn_value, req_value};
use super::{Phase, RuntimeError};
use crate::facts::{ClientCert, ClientCertFacts, DistinguishedName, TlsFacts};
use crate::request::Request;

/// The CEL variables of one connection (and, for requests, one request).
///
/// `conn` is converted to CEL's runtime form once per connection and lent to every evaluation
/// through a resolver; binding it with `add_variable_from_value` would deep-copy the whole map
/// on each evaluation. A value that fails to convert is left out, so expressions naming it fail
/// and the policy denies.
#[derive(Clone, Debug)]
pub struct Variables {
    conn: Option<Arc<dyn Val>>,
    req: Option<Arc<dyn Val>>,
    /// `set-vars` values so far in this phase, and the same as one CEL map.
    vars: Vec<(Arc<str>, Value)>,
    vars_val: Option<Arc<dyn Val>>,
}

impl Variables {
    /// `conn` for a connection whose endpoint serves `server` (its certificate's facts).
    pub fn for_connection(facts: &TlsFacts, server: Option<&ClientCertFacts>) -> Self {
        Self {
            conn: to_val(conn_value(facts, server)),
            req: None,
            vars: Vec::new(),
            vars_val: None,
        }
    }

    /// Adds `req`; `path` is the normalized path and `url` the URL built from it.
    #[must_use]
    pub fn with_request(&self, req: &Request<'_>, path: &str, url: &str) -> Self {
        Self {
            conn: self.conn.clone(),
            req: to_val(req_value(req, path, url)),
            vars: Vec::new(),
            vars_val: None,
        }
    }

    /// Runs one `set-vars` action: each value in order, each seeing the ones before it (and
    /// those of earlier actions in the phase). Returns the new variables and each value as
    /// text, for traces.
    pub fn set_vars(
        &self,
        set: &[(String, VarValue)],
    ) -> Result<(Self, Vec<String>), RuntimeError> {
        let mut next = Self {
            conn: self.conn.clone(),
            req: self.req.clone(),
            vars: self.vars.clone(),
            vars_val: self.vars_val.clone(),
        };
        let mut shown = Vec::with_capacity(set.len());
        for (name, value) in set {
            let value = value.value(&next)?;
            let mut text = String::new();
            render_value(&value, &mut text);
            shown.push(format!("{name}={text}"));
            let name: Arc<str> = name.as_str().into();
            match next.vars.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = value,
                None => next.vars.push((name, value)),
            }
            let map: HashMap<Key, Value> = next
                .vars
                .iter()
                .map(|(n, v)| (Key::String(Arc::new(n.to_string())), v.clone()))
                .collect();
            next.vars_val = to_val(Value::Map(Map { map: Arc::new(map) }));
        }
        Ok((next, shown))
    }

    pub(super) fn eval(&self, program: &Program) -> Result<Value, ExecutionError> {
        let mut ctx = Context::with_env(Arc::clone(stdlib()));
        ctx.set_variable_resolver(self);
        Value::resolve(program, &ctx)
    }
}

impl VariableResolver for Variables {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let val = match variable {
            "conn" => self.conn.as_deref()?,
            "req" => self.req.as_deref()?,
            "vars" => self.vars_val.as_deref()?,
            _ => return None,
        };
        Some(CowVal::Borrowed(val))
    }
}

fn to_val(value: Value) -> Option<Arc<dyn Val>> {
    let boxed: Box<dyn Val> = value.try_into().ok()?;
    Some(Arc::from(boxed))
}

/// Facts that exercise every variable, for load-time type checking.
pub(super) fn samples(phase: Phase) -> Vec<Variables> {
    let absent = TlsFacts {
        version: crate::facts::TlsVersion::Tls13,
        cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
        sni: Some("example.com".into()),
        alpn: Some("h2".into()),
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        client_port: 50_000,
        server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: ClientCert::Absent,
    };
    let sample_cert = ClientCertFacts {
        subject: DistinguishedName {
            common_name: "client".into(),
            organization: vec!["Example".into()],
            rfc4514: "CN=client,O=Example".into(),
            ..DistinguishedName::default()
        },
        issuer: DistinguishedName {
            common_name: "ca".into(),
            rfc4514: "CN=ca".into(),
            ..DistinguishedName::default()
        },
        issuer_der: Vec::new(),
        san: crate::facts::SubjectAltNames {
            dns_names: vec!["client.example.com".into()],
            uris: vec!["spiffe://example.com/client".into()],
            ..Default::default()
        },
        serial_number: "01".into(),
        signature_algorithm: "ECDSA-SHA256".into(),
        not_before: 0,
        not_after: 4_102_444_800,
        extensions: vec![crate::facts::ExtensionFact {
            id: "2.5.29.37".into(),
            critical: false,
        }],
        fingerprint_sha256: "00".into(),
        is_ca: false,
        client_auth: crate::facts::ClientAuthUsage::Allowed,
        legacy_v1: false,
        der: Vec::new(),
    };
    let present = TlsFacts {
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: ClientCert::Verified(Box::new(sample_cert)),
        ..absent.clone()
    };
    let with_cert = Variables::for_connection(&present, None);
    let served = match &present.client_cert {
        ClientCert::Verified(c) => Some(c.as_ref()),
        _ => None,
    };
    let mut out = vec![
        Variables::for_connection(&absent, None),
        with_cert,
        Variables::for_connection(&absent, served),
    ];
    if phase == Phase::HttpRequest {
        let headers = [("user-agent", "sample")];
        let req = Request {
            method: "GET",
            host: "example.com",
            target: "/",
            headers: &headers,
        };
        out = out
            .iter()
            .map(|v| v.with_request(&req, "/", "https://example.com/"))
            .collect();
    }
    // `vars` exists (empty): a name in it is the loader's check, not a type error.
    for sample in &mut out {
        sample.vars_val = to_val(Value::Map(Map {
            map: Arc::new(HashMap::new()),
        }));
    }
    out
}
