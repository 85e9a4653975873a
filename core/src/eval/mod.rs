//! What a policy does with one client certificate, server name and request, and why, without
//! running a proxy: `tlsgate eval` and the browser playground.
//!
//! Every decision is made by the code both hosts use: the endpoint is chosen by the policy's
//! SNI router, the certificate's chain is checked by the host's verifier ([`ChainVerifier`]:
//! webpki over the endpoint's CAs and CRLs, as `tlsgate run` checks it) and classified by
//! [`ClientCert::presented`], the rules run in [`Session`] with a tracer on, and the upstream's
//! headers are what [`upstream_headers`] makes of the request, the list the proxy applies. What
//! cannot be known is said, not guessed: the client is assumed to hold the certificate's key (a
//! handshake would prove it) and to offer the TLS version given.

use std::net::{IpAddr, SocketAddr};

use rustls_pki_types::CertificateDer;

use crate::config::{ClientAuth, Scheme, UpstreamProtocol, VerificationStrategy};
use crate::facts::{ChainCheck, ClientCert, ClientCertFacts, TlsFacts, TlsVersion};
use crate::pem::TrustAnchors;
use crate::policy::{LocalResponse, Policy, RequestVerdict, Session, Verdict};
use crate::request::{upstream_headers, Request};
use crate::revocation::Revocation;
use crate::trace::{Step, Tracer};

mod report;

/// The host's check of a presented chain against an endpoint's CAs and CRLs: webpki, as the
/// native host runs it at the handshake.
pub trait ChainVerifier {
    /// `Err((label, message))`: `label` as the host's logs spell the failure
    /// (`client_certificate_revoked`), `message` in words.
    fn verify(
        &self,
        authorities: &TrustAnchors,
        revocation: Option<&Revocation>,
        chain: &[CertificateDer<'static>],
        now: i64,
    ) -> Result<(), (&'static str, String)>;
}
/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalInput {
    pub sni: Option<String>,
    /// The listener, when the policy has several that serve the name.
    pub bind: Option<SocketAddr>,
    /// PEM: the client certificate first, then any intermediates.
    pub certificate: Option<Vec<u8>>,
    pub version: Option<TlsVersion>,
    /// The key-exchange groups the client offers, by [`crate::facts::KEY_EXCHANGE_GROUPS`]
    /// names (`None`: every one).
    pub groups: Option<Vec<String>>,
    /// The client's JA4 fingerprint, as `conn.tls.ja4_fingerprint` reads it (empty without).
    pub ja4: Option<String>,
    pub client_ip: IpAddr,
    /// `METHOD URL`, e.g. `GET https://app.example.com/admin?x=1`.
    pub request: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Seconds since the Unix epoch (the browser has no clock core can read).
    pub now: i64,
}

/// The outcome in the conformance table's words: `refused` (the handshake fails), `closed`
/// (closed after it), a status, or `forward` (the request reaches the upstream; also `tls`:
/// a tls:// endpoint's bytes flow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Refused(String),
    Closed(String),
    Status(u16, Option<String>),
    Forward,
    /// The connection is admitted and no request was given.
    Admitted,
}

/// The whole answer: each stage's finding, the trace, the outcome and, when forwarded, what
/// the upstream receives.
#[derive(Debug)]
pub struct Evaluation {
    pub endpoint: Option<String>,
    pub certificate: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
    pub upstream: Option<Upstream>,
}

#[derive(Debug)]
pub struct Upstream {
    pub url: String,
    pub method: String,
    pub authority: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub removed: Vec<String>,
}

/// Why the question cannot be asked (not a verdict: a verdict is an [`Evaluation`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(String);

fn input(message: impl Into<String>) -> EvalError {
    EvalError(message.into())
}

/// Evaluates `given` against `policy`, checking certificates with `verifier`.
pub fn evaluate(
    policy: &Policy,
    given: &EvalInput,
    verifier: &dyn ChainVerifier,
) -> Result<Evaluation, EvalError> {
    let mut eval = Evaluation {
        endpoint: None,
        certificate: Vec::new(),
        notes: Vec::new(),
        steps: Vec::new(),
        outcome: Outcome::Admitted,
        upstream: None,
    };
    let sni = given.sni.as_deref().map(crate::sni::normalize);

    // 1. The endpoint, as the listener's SNI router picks it.
    let candidates: Vec<(SocketAddr, usize)> = policy
        .listeners()
        .iter()
        .filter(|l| given.bind.is_none_or(|b| b == l.bind))
        .filter_map(|l| l.route(sni.as_deref()).map(|i| (l.bind, i)))
        .collect();
    let (bind, index) = match candidates.as_slice() {
        [] => {
            eval.outcome = Outcome::Refused(match &sni {
                None => "no server name: every endpoint is chosen by SNI".into(),
                Some(name) => format!("no endpoint serves {name} (unknown_server_name)"),
            });
            return Ok(eval);
        }
        [one] => *one,
        several => {
            return Err(input(format!(
                "{} is served on several binds ({}); say which with --bind",
                sni.unwrap_or_default(),
                several
                    .iter()
                    .map(|(b, _)| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let endpoint = policy
        .endpoint(index)
        .ok_or_else(|| input("the router named an endpoint that does not exist"))?
        .clone();
    eval.endpoint = Some(format!("{} on {bind}", endpoint.url));

    // 2. The handshake: version bounds, then the client certificate as the host would take it.
    let tls = &endpoint.tls;
    let version = given.version.unwrap_or(tls.max_version);
    if version < tls.min_version || version > tls.max_version {
        eval.outcome = Outcome::Refused(format!(
            "TLS {version} is outside {}-{} (peer_incompatible)",
            tls.min_version, tls.max_version
        ));
        return Ok(eval);
    }
    // The group: the endpoint's first, in its order, that the client offers and the version
    // allows (the hybrid is TLS 1.3 only); none shared fails the handshake.
    let offered = |g: &str| {
        given
            .groups
            .as_ref()
            .is_none_or(|groups| groups.iter().any(|o| o.eq_ignore_ascii_case(g)))
    };
    let Some(group) = tls
        .key_exchange_groups
        .iter()
        .find(|g| (version == TlsVersion::Tls13 || **g != "X25519MLKEM768") && offered(g))
    else {
        eval.outcome = Outcome::Refused(format!(
            "no key-exchange group in common: the endpoint offers {} (handshake_failure)",
            tls.key_exchange_groups.join(", ")
        ));
        return Ok(eval);
    };
    let client_cert = match classify(&endpoint.tls.client_auth, given, verifier, &mut eval)? {
        Ok(cert) => cert,
        Err(refused) => {
            eval.outcome = Outcome::Refused(refused);
            return Ok(eval);
        }
    };
    let facts = TlsFacts {
        version,
        cipher_suite: match version {
            TlsVersion::Tls13 => "TLS_AES_128_GCM_SHA256".into(),
            TlsVersion::Tls12 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
        },
        sni: sni.clone(),
        alpn: (endpoint.scheme == Scheme::Https).then(|| "h2".to_owned()),
        client_ip: given.client_ip,
        client_port: 50_000,
        server: bind,
        client_cert,
        // The moment the evaluation is for: the connection starts then.
        started: std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(given.now).unwrap_or(0)),
        // A full handshake.
        resumed: false,
        key_exchange_group: group,
        ja4: given.ja4.clone().unwrap_or_default(),
    };
    let session = Session::new(endpoint.clone(), facts);

    // 3. on_tcp_connect.
    let mut trace = Tracer::on();
    let (verdict, detail) = session.on_tcp_connect_traced(&mut trace);
    eval.steps = trace.take();
    if let Verdict::Deny(reason) = verdict {
        let mut why = reason.as_str().to_owned();
        if let Some(detail) = detail {
            why = format!("{why}: {detail}");
        }
        eval.outcome = Outcome::Closed(why);
        return Ok(eval);
    }

    // 4. on_http_request.
    let Some(line) = &given.request else {
        if endpoint.scheme == Scheme::Tls {
            eval.notes
                .push("a tls:// endpoint: the bytes flow to the upstream".into());
        }
        return Ok(eval);
    };
    if endpoint.scheme == Scheme::Tls {
        return Err(input(
            "a tls:// endpoint carries bytes, not HTTP requests: leave out --request",
        ));
    }
    let (method, url) = line.trim().split_once(char::is_whitespace).ok_or_else(|| {
        input(format!(
            "--request {line:?}: write METHOD URL, e.g. 'GET https://{}/'",
            endpoint.host
        ))
    })?;
    let (authority, target) = split_url(url.trim())?;
    let host = given
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map_or(authority.clone(), |(_, v)| v.clone());
    let header_refs: Vec<(&str, &str)> = given
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let request = Request {
        method,
        host: &host,
        target: &target,
        headers: &header_refs,
    };
    let mut trace = Tracer::on();
    let verdict = session.on_http_request_traced(&request, &mut trace);
    eval.steps.extend(trace.take());
    match verdict {
        RequestVerdict::Respond(response) => {
            let why = response
                .reason
                .map(|r| r.as_str().to_owned())
                .or(response.detail.map(|detail| detail.to_string()));
            eval.outcome = Outcome::Status(response.status, why);
        }
        RequestVerdict::Close(reason) => {
            eval.outcome = Outcome::Closed(reason.as_str().to_owned());
        }
        RequestVerdict::Forward(forward) => {
            let h2 = endpoint.upstream.protocol == UpstreamProtocol::Http2;
            let headers = match upstream_headers(&given.headers, &forward, h2) {
                Ok(headers) => headers,
                Err(name) => {
                    let refused = LocalResponse::header_rewrite_failed();
                    eval.outcome = Outcome::Status(
                        refused.status,
                        Some(format!("{}: {name}", LocalResponse::HEADER_REWRITE_FAILED)),
                    );
                    return Ok(eval);
                }
            };
            eval.upstream = Some(Upstream {
                url: endpoint.upstream.url.clone(),
                method: method.to_owned(),
                authority: forward.authority.to_string(),
                target: forward.target.clone(),
                headers,
                removed: forward.remove_headers.clone(),
            });
            eval.outcome = Outcome::Forward;
        }
    }
    Ok(eval)
}

/// The client certificate as the host's handshake would leave it; `Err(reason)` when the
/// handshake would fail.
fn classify(
    auth: &ClientAuth,
    given: &EvalInput,
    verifier: &dyn ChainVerifier,
    eval: &mut Evaluation,
) -> Result<Result<ClientCert, String>, EvalError> {
    let ClientAuth::On {
        authorities,
        strategy,
        revocation,
        ocsp,
    } = auth
    else {
        if given.certificate.is_some() {
            eval.notes.push(
                "this endpoint asks for no client certificate: the one given is not sent".into(),
            );
        }
        return Ok(Ok(ClientCert::Absent));
    };
    let Some(pem) = &given.certificate else {
        return Ok(match strategy {
            VerificationStrategy::Request => Ok(ClientCert::Absent),
            _ => Err("no client certificate (client_certificate_required)".into()),
        });
    };
    if let Some(ocsp) = ocsp {
        eval.notes.push(format!(
            "this endpoint also asks the issuer's OCSP responder (mode {}); eval does not ask it, \
             so a certificate shown as verified here is refused if the responder says revoked{}",
            ocsp.mode.as_str(),
            match ocsp.mode {
                crate::ocsp::OcspMode::Require => " or gives no valid answer",
                crate::ocsp::OcspMode::Prefer => "",
            }
        ));
    }
    let chain = read_chain(pem)?;
    let Some(leaf) = chain.first() else {
        return Err(input("the certificate text holds no certificate"));
    };
    let checked = verifier.verify(authorities, revocation.as_ref(), &chain, given.now);
    let chain_check = match (&checked, strategy) {
        (Ok(()), _) => ChainCheck::Trusted,
        (Err((label, message)), VerificationStrategy::RequireAndVerify) => {
            return Ok(Err(format!(
                "the certificate does not verify against the endpoint's CAs{}: {message} \
                 ({label})",
                if revocation.is_some() {
                    " and CRLs"
                } else {
                    ""
                },
            )));
        }
        (Err(_), _) => ChainCheck::Untrusted,
    };
    let facts = match ClientCertFacts::from_der(leaf.as_ref()) {
        Ok(facts) => Box::new(facts),
        Err(e) => return Ok(Err(format!("{e} (client_certificate_unreadable)"))),
    };
    eval.certificate = describe(&facts);
    if let Err((label, _)) = &checked {
        // The label, not the TLS library's words: the same in every host.
        eval.certificate
            .push(("chain check".into(), format!("failed: {label}")));
    }
    eval.notes.push(
        "assumed: the client holds the certificate's private key (the handshake proves it)".into(),
    );
    Ok(Ok(ClientCert::presented(
        facts,
        chain_check,
        given.now,
        revocation.as_ref(),
    )))
}

/// The certificates of a PEM text; a private key in it is refused, never read.
pub fn read_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, EvalError> {
    if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Err(input(
            "the certificate holds a private key: eval never needs one (it decides on the \
             certificate; the handshake is what proves possession), so it does not read it — \
             give the certificate alone",
        ));
    }
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| input(format!("the certificate: not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(input("the certificate: no PEM `CERTIFICATE` block"));
    }
    Ok(certs)
}

/// The certificate's fields under the names a rule uses.
fn describe(facts: &ClientCertFacts) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "conn.tls.client.subject.common_name".into(),
            facts.subject.common_name.clone(),
        ),
        (
            "conn.tls.client.subject".into(),
            facts.subject.rfc4514.clone(),
        ),
        (
            "conn.tls.client.issuer".into(),
            facts.issuer.rfc4514.clone(),
        ),
        (
            "conn.tls.client.serial_number".into(),
            facts.serial_number.clone(),
        ),
    ];
    if !facts.san.dns_names.is_empty() {
        out.push((
            "conn.tls.client.san.dns".into(),
            facts.san.dns_names.join(", "),
        ));
    }
    if !facts.san.uris.is_empty() {
        out.push(("conn.tls.client.san.uri".into(), facts.san.uris.join(", ")));
    }
    out.push((
        "conn.tls.client.validity".into(),
        format!(
            "{} .. {}",
            crate::encoding::rfc3339(facts.not_before),
            crate::encoding::rfc3339(facts.not_after)
        ),
    ));
    out.push((
        "conn.tls.client.fingerprint.sha256".into(),
        facts.fingerprint_sha256.clone(),
    ));
    out
}

/// `https://host[:port]/path?query` → (authority, target).
fn split_url(url: &str) -> Result<(String, String), EvalError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| input(format!("--request URL {url:?}: write https://HOST/PATH")))?;
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    if authority.is_empty() {
        return Err(input(format!("--request URL {url:?} has no host")));
    }
    Ok((authority.to_owned(), target))
}
