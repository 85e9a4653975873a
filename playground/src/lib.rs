//! tlsgate's policy evaluation in the browser: `tlsgate eval` (core's [`tlsgate_core::eval`])
//! behind one WebAssembly export that takes a JSON question and gives a JSON answer.
//!
//! The interface is three functions over linear memory — `tlsgate_alloc`, `tlsgate_eval`,
//! `tlsgate_free` — rather than wasm-bindgen glue: the page's loader is thirty lines, the build
//! needs no generator whose version must match a crate, and nothing crosses the boundary but
//! UTF-8 JSON (see `docs/design-notes.md`, "The playground").
//!
//! Nothing leaves the browser. Private keys are never read: the policy is loaded as the filter
//! loads it (keys skipped), and a key pasted where a certificate belongs is refused.

// The export ABI hands raw pointers across the WebAssembly boundary; each use is commented.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use serde_json::{json, Value};
use tlsgate_core::eval::{self, ChainVerifier, EvalInput};
use tlsgate_core::pem::{MaterialReader, TrustAnchors};
use tlsgate_core::revocation::{Revocation, RevocationDepth};
use tlsgate_core::{Config, ConfigError, Deployment, KeyMode, Policy, TlsVersion};

/// The question, as the page sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The policy or manifests, and a name for messages (`policy.yaml`).
    pub policy: String,
    #[serde(default = "default_name")]
    pub policy_name: String,
    /// Files the policy names (`ca.crt`, `server.crt`, `ca.crl`), by name: text, or
    /// `{"base64": …}` for a binary file (a DER CRL).
    #[serde(default)]
    pub files: BTreeMap<String, File>,
    /// PEM: the client certificate, then any intermediates.
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub tls: Option<String>,
    /// The key-exchange groups the client offers (default: all).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// The client's JA4 fingerprint (default: none).
    #[serde(default)]
    pub ja4: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// `--listen` / `--resolve` values, for manifests.
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub resolve: Vec<String>,
    /// Seconds since the Unix epoch, from the page's clock.
    pub now: i64,
}

/// A file's contents as the page read them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum File {
    Text(String),
    Binary { base64: String },
}

impl File {
    fn bytes(&self) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        match self {
            Self::Text(text) => Ok(text.as_bytes().to_vec()),
            Self::Binary { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map_err(|e| format!("not base64: {e}")),
        }
    }

    fn holds_private_key(&self) -> bool {
        self.bytes()
            .is_ok_and(|b| b.windows(16).any(|w| w == b"PRIVATE KEY-----"))
    }
}

fn default_name() -> String {
    "policy.yaml".into()
}

/// Answers a question: `{"evaluation": …}` (the JSON `tlsgate eval --format json` prints, with
/// the endpoints loaded), or `{"error": {message, line, column}}` for a policy that does not load
/// or a question that cannot be asked.
pub fn answer(question: &str) -> Value {
    let question: Question = match serde_json::from_str(question) {
        Ok(q) => q,
        Err(e) => return error(format!("the question is not valid JSON: {e}"), None),
    };
    if let Some(why) = holds_private_key(&question) {
        return error(why, None);
    }
    let deployment = match deployment(&question) {
        Ok(d) => d,
        Err(e) => return error(e, None),
    };
    let files = question.files.clone();
    let reader_for = move |_: &Path| -> Box<dyn MaterialReader> { Box::new(Files(files.clone())) };
    let sources = [(
        PathBuf::from(&question.policy_name),
        question.policy.clone(),
    )];
    let config = match Config::load_sources(&sources, &reader_for, KeyMode::Skip, &deployment) {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    let endpoints: Vec<String> = config.endpoints.iter().map(|e| e.to_string()).collect();
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    let notes = config.notes.clone();
    let policy = Policy::new(config);
    let version = match question.tls.as_deref() {
        None | Some("") => None,
        Some("1.2") => Some(TlsVersion::Tls12),
        Some("1.3") => Some(TlsVersion::Tls13),
        Some(other) => return error(format!("TLS version {other:?}: use 1.2 or 1.3"), None),
    };
    let client_ip = match question.client_ip.as_deref().map(str::trim) {
        None | Some("") => std::net::IpAddr::from([127, 0, 0, 1]),
        Some(ip) => match ip.parse() {
            Ok(ip) => ip,
            Err(_) => return error(format!("client address {ip:?} is not an IP address"), None),
        },
    };
    let input = EvalInput {
        sni: question.sni.filter(|s| !s.trim().is_empty()),
        bind: None,
        certificate: question
            .certificate
            .filter(|c| !c.trim().is_empty())
            .map(String::into_bytes),
        version,
        groups: question.groups,
        ja4: question.ja4.filter(|j| !j.trim().is_empty()),
        client_ip,
        request: question.request.filter(|r| !r.trim().is_empty()),
        headers: question.headers,
        now: question.now,
    };
    match eval::evaluate(&policy, &input, &WebPki) {
        Ok(evaluation) => json!({
            "endpoints": endpoints,
            "warnings": warnings,
            "notes": notes,
            "evaluation": evaluation.to_json(),
            "text": evaluation.to_text(),
        }),
        Err(e) => error(e.to_string(), None),
    }
}

fn error(message: String, at: Option<(usize, usize)>) -> Value {
    json!({ "error": {
        "message": message,
        "line": at.map(|a| a.0),
        "column": at.map(|a| a.1),
    }})
}

fn config_error(e: &ConfigError) -> Value {
    error(e.to_string(), e.location.map(|l| (l.line, l.column)))
}

/// Keys are never needed here; one pasted in the policy or a file is refused, unread (one in
/// the certificate box is refused by core's `eval::read_chain`, as `tlsgate eval` refuses it).
fn holds_private_key(q: &Question) -> Option<String> {
    if q.policy.contains("PRIVATE KEY-----") || q.files.values().any(File::holds_private_key) {
        return Some(
            "a private key was pasted: the playground never needs one (it loads the policy as \
             the Envoy filter does, keys left out) — remove it; a path such as \
             `server_private_key: server.key` is fine and is not read"
                .into(),
        );
    }
    None
}

fn deployment(q: &Question) -> Result<Deployment, String> {
    Ok(Deployment {
        listen: q
            .listen
            .iter()
            .map(|l| l.parse().map_err(|e| format!("listen {l:?}: {e}")))
            .collect::<Result<_, String>>()?,
        resolve: q
            .resolve
            .iter()
            .map(|r| r.parse().map_err(|e| format!("resolve {r:?}: {e}")))
            .collect::<Result<_, String>>()?,
    })
}

/// The files the user gave, by name (a path's last component also finds them, so
/// `certs/ca.crt` in a policy finds a dropped `ca.crt`).
struct Files(BTreeMap<String, File>);

impl MaterialReader for Files {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        let name = path.to_string_lossy();
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.0
            .get(name.as_ref())
            .or_else(|| self.0.get(&base))
            .ok_or_else(|| {
                format!("add the file `{name}` to the playground (drop it on the files box)")
            })?
            .bytes()
    }
}

/// webpki over the endpoint's CAs and CRLs, as rustls' client verifier runs it natively.
struct WebPki;

impl ChainVerifier for WebPki {
    fn verify(
        &self,
        authorities: &TrustAnchors,
        revocation: Option<&Revocation>,
        chain: &[CertificateDer<'static>],
        now: i64,
    ) -> Result<(), (&'static str, String)> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(("client_certificate_required", "no certificate".to_owned()))?;
        let anchors = authorities
            .certs
            .iter()
            .map(|ca| webpki::anchor_from_trusted_cert(ca).map(|a| a.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                (
                    "tls_error",
                    format!("a CA is not usable as a trust anchor: {e}"),
                )
            })?;
        let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| (label(&e), e.to_string()))?;
        let crls = match revocation {
            Some(r) => r
                .lists
                .iter()
                .map(|l| {
                    webpki::OwnedCertRevocationList::from_der(l.der.as_ref())
                        .map(webpki::CertRevocationList::from)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("tls_error", format!("a CRL: {e}")))?,
            None => Vec::new(),
        };
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
        let options = match (revocation, webpki::RevocationOptionsBuilder::new(&crl_refs)) {
            (Some(r), Ok(builder)) => Some(
                builder
                    .with_depth(match r.depth {
                        RevocationDepth::Chain => webpki::RevocationCheckDepth::Chain,
                        RevocationDepth::Leaf => webpki::RevocationCheckDepth::EndEntity,
                    })
                    .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                    .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                    .build(),
            ),
            _ => None,
        };
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or(0),
        ));
        cert.verify_for_usage(
            tlsgate_rustcrypto::ALL,
            &anchors,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            options,
            None,
        )
        .map(|_| ())
        .map_err(|e| (label(&e), e.to_string()))
    }
}

/// The native host's label for the failure (rustls maps webpki's errors the same way).
fn label(e: &webpki::Error) -> &'static str {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => "client_certificate_untrusted",
        E::CertExpired { .. } => "client_certificate_expired",
        E::CertNotValidYet { .. } => "client_certificate_not_yet_valid",
        E::CertRevoked => "client_certificate_revoked",
        E::UnknownRevocationStatus | E::CrlExpired { .. } => {
            "client_certificate_revocation_unknown"
        }
        E::RequiredEkuNotFoundContext(_) => "client_certificate_wrong_usage",
        E::InvalidSignatureForPublicKey => "client_certificate_bad_signature",
        _ => "client_certificate_invalid",
    }
}

// --- the WebAssembly exports ---------------------------------------------------------------

/// Reserves `len` bytes for the page to write the question into.
#[no_mangle]
pub extern "C" fn tlsgate_alloc(len: usize) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(len.max(1));
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr
}

/// Gives back `len` bytes at `ptr` that [`tlsgate_alloc`] or [`tlsgate_eval`] handed out.
///
/// # Safety
/// `ptr` and `len` must be exactly what one of those returned, freed once.
#[no_mangle]
pub unsafe extern "C" fn tlsgate_free(ptr: *mut u8, len: usize) {
    // SAFETY: the caller passes a pointer and capacity this module allocated as a Vec<u8>.
    drop(unsafe { Vec::from_raw_parts(ptr, 0, len.max(1)) });
}

/// Answers the question in `len` bytes at `ptr` (UTF-8 JSON). Returns the answer's address in
/// the high 32 bits and its length in the low 32; the page frees it with [`tlsgate_free`].
///
/// # Safety
/// `ptr..ptr+len` must be initialized memory the page wrote after [`tlsgate_alloc`].
#[no_mangle]
pub unsafe extern "C" fn tlsgate_eval(ptr: *const u8, len: usize) -> u64 {
    // SAFETY: the page wrote `len` bytes at `ptr`, inside a buffer this module allocated.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    let answer = match std::str::from_utf8(bytes) {
        Ok(text) => answer(text),
        Err(_) => error("the question is not UTF-8".into(), None),
    };
    // A boxed slice's allocation is exactly its length (never empty: the answer is JSON), which
    // is what `tlsgate_free` gives back.
    let out = answer.to_string().into_bytes().into_boxed_slice();
    let out_len = out.len();
    let out_ptr = Box::into_raw(out).cast::<u8>();
    ((out_ptr as usize as u64) << 32) | out_len as u64
}
