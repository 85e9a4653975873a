//! Certificates and keys as Envoy reads them: files named in the policy are referenced by
//! absolute path (so Envoy's file watching, and later SDS, can rotate them); PEM written inline
//! in the policy is written to a file beside the bootstrap.

use std::path::{Path, PathBuf};

use rustls_pki_types::PrivateKeyDer;
use tlsgate_core::encoding::pem as encode;
use tlsgate_core::pem::{CertificateChain, Origin, PrivateKey, TrustAnchors};
use tlsgate_core::revocation::Revocation;
use tlsgate_core::Endpoint;
use yaml_rust2::Yaml;

use crate::yaml::{map, s};
use crate::Error;

/// Collects the files the bootstrap needs written.
pub(crate) struct Material<'a> {
    pub out_dir: &'a Path,
    pub files: Vec<(PathBuf, String)>,
}

impl Material<'_> {
    /// `{filename: …}` for a certificate chain.
    pub fn chain(
        &mut self,
        endpoint: &Endpoint,
        chain: &CertificateChain,
        name: &str,
    ) -> Result<Yaml, Error> {
        match &chain.origin {
            Origin::File(path) => file_source(endpoint, path),
            Origin::Inline => Ok(self.write(name, chain.to_pem())),
        }
    }

    /// `{filename: …}` for a private key.
    pub fn key(
        &mut self,
        endpoint: &Endpoint,
        key: &PrivateKey,
        name: &str,
    ) -> Result<Yaml, Error> {
        match &key.origin {
            Origin::File(path) => file_source(endpoint, path),
            Origin::Inline => {
                let label = match key.der() {
                    PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
                    PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
                    _ => "PRIVATE KEY",
                };
                Ok(self.write(name, encode(label, key.der().secret_der())))
            }
        }
    }

    /// `{filename: …}` for trust anchors. Envoy takes one CA bundle per context: anchors from a
    /// single file are referenced in place, anything else is combined into a written bundle.
    pub fn anchors(
        &mut self,
        endpoint: &Endpoint,
        anchors: &TrustAnchors,
        name: &str,
    ) -> Result<Yaml, Error> {
        match single_file(anchors.origins.iter()) {
            Some(path) => file_source(endpoint, path),
            None => Ok(self.write(name, anchors.to_pem())),
        }
    }

    /// `{filename: …}` for an endpoint's CRLs, the same way; a DER file is written out as PEM
    /// (Envoy reads PEM CRLs only).
    pub fn revocation(
        &mut self,
        endpoint: &Endpoint,
        revocation: &Revocation,
        name: &str,
    ) -> Result<Yaml, Error> {
        let all_pem = revocation.lists.iter().all(|l| l.pem);
        match single_file(revocation.lists.iter().map(|l| &l.origin)).filter(|_| all_pem) {
            Some(path) => file_source(endpoint, path),
            None => Ok(self.write(name, revocation.to_pem())),
        }
    }

    fn write(&mut self, name: &str, contents: String) -> Yaml {
        let path = self.out_dir.join(name);
        if !self.files.iter().any(|(n, _)| n == Path::new(name)) {
            self.files.push((PathBuf::from(name), contents));
        }
        map([("filename", s(path.display().to_string()))])
    }
}

/// The one file everything came from, when it all came from one file (referenced in place, so
/// Envoy rereads it on restart); `None` for inline material or several files.
fn single_file<'a>(mut origins: impl Iterator<Item = &'a Origin>) -> Option<&'a Path> {
    let Some(Origin::File(first)) = origins.next() else {
        return None;
    };
    origins
        .all(|o| matches!(o, Origin::File(p) if p == first))
        .then_some(first.as_path())
}

/// A file named in the policy, resolved against the policy file's directory.
fn file_source(endpoint: &Endpoint, path: &Path) -> Result<Yaml, Error> {
    let base = endpoint
        .file
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let absolute = std::path::absolute(base.join(path)).map_err(|e| Error::Path {
        path: base.join(path),
        reason: e.to_string(),
    })?;
    Ok(map([("filename", s(absolute.display().to_string()))]))
}
