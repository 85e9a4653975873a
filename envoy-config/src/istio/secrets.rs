//! The Secrets the resources name (`credentialName`): what goes in each, and where each entry
//! comes from, so the header can say how to create it with `kubectl` from the policy's files.

use std::path::Path;

use tlsgate_core::pem::Origin;
use tlsgate_core::Endpoint;

/// One Secret a resource names, and where its entries come from.
pub(super) struct SecretPlan {
    pub(super) name: String,
    /// `kubernetes.io/tls` when it holds a certificate and key, else `Opaque` (CAs only).
    pub(super) kind_of: &'static str,
    /// Key in the Secret (Istio's names: `tls.crt`, `tls.key`, `ca.crt`, `ca.crl`), the PEM,
    /// and the file it came from when it came from one.
    pub(super) entries: Vec<(&'static str, String, Source)>,
}

pub(super) enum Source {
    /// The file, as the `kubectl` command names it.
    File(String),
    /// Written in the policy itself, or spread over several files, or DER (Istio wants PEM).
    Elsewhere(&'static str),
}

/// The path to show in a `kubectl` command: relative to the policy's directory when under it
/// (the comment says to run the commands there), else as loaded.
fn shown(endpoint: &Endpoint, path: &Path) -> String {
    let base = endpoint
        .file
        .as_deref()
        .and_then(Path::parent)
        .map(|b| {
            if b.as_os_str().is_empty() {
                Path::new(".")
            } else {
                b
            }
        })
        .and_then(|b| std::path::absolute(b).ok());
    let rel = base.as_deref().and_then(|b| path.strip_prefix(b).ok());
    rel.unwrap_or(path).display().to_string()
}

/// The one file every origin names, if they all name the same one.
pub(super) fn one_file<'a>(mut origins: impl Iterator<Item = &'a Origin>) -> Option<&'a Path> {
    let Some(Origin::File(first)) = origins.next() else {
        return None;
    };
    origins
        .all(|o| matches!(o, Origin::File(p) if p == first))
        .then_some(first.as_path())
}

pub(super) fn source(
    endpoint: &Endpoint,
    origin: Option<&Path>,
    otherwise: &'static str,
) -> Source {
    match origin {
        Some(path) => Source::File(shown(endpoint, path)),
        None => Source::Elsewhere(otherwise),
    }
}

/// A Secret's `ca.crt`: the CAs, and the file they come from when it is one.
pub(super) fn ca_entry(
    endpoint: &Endpoint,
    authorities: &tlsgate_core::pem::TrustAnchors,
) -> (&'static str, String, Source) {
    (
        "ca.crt",
        authorities.to_pem(),
        source(
            endpoint,
            one_file(authorities.origins.iter()),
            "inlined in the policy or spread over several files",
        ),
    )
}

pub(super) fn private_key_pem(key: &tlsgate_core::pem::PrivateKey) -> String {
    use rustls_pki_types::PrivateKeyDer;
    let label = match key.der() {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    tlsgate_core::encoding::pem(label, key.der().secret_der())
}
