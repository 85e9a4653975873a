//! Terminate-tls: [`TerminateTls`], the [`Verification`] strategy and [`Ocsp`].

use super::*;

/// A client-certificate verification strategy (`mutual_tls_verification_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// `request`: ask for a certificate, admit without one or with one that does not verify.
    Request,
    /// `require-any`: require a certificate, verified or not.
    RequireAny,
    /// `verify-if-given`: admit without one, verify one that is given.
    VerifyIfGiven,
    /// `require-and-verify`: require a certificate the endpoint's CAs signed.
    RequireAndVerify,
}

impl Verification {
    /// The name the policy language uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Request => "request",
            Verification::RequireAny => "require-any",
            Verification::VerifyIfGiven => "verify-if-given",
            Verification::RequireAndVerify => "require-and-verify",
        }
    }
}

/// The `config:` of a terminate-tls action. Keys are written in the order they were set.
///
/// File fields take paths, relative (to the policy file) or absolute; [`TerminateTls::inline_pem`]
/// puts PEM text in their place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TerminateTls {
    fields: Map,
}

impl TerminateTls {
    /// An empty config (tlsgate refuses one without a certificate and key: set them).
    pub fn new() -> Self {
        Self::default()
    }

    /// `server_certificate: <file>` then `server_private_key: <file>`, the usual pair.
    pub fn files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        Self::new().server_certificate(cert).server_private_key(key)
    }

    /// `server_certificate: <file>`.
    pub fn server_certificate(mut self, file: impl AsRef<Path>) -> Self {
        self.fields
            .set("server_certificate", path_value(file.as_ref()));
        self
    }

    /// `server_private_key: <file>`.
    pub fn server_private_key(mut self, file: impl AsRef<Path>) -> Self {
        self.fields
            .set("server_private_key", path_value(file.as_ref()));
        self
    }

    /// `server_certificate` and `server_private_key` as PEM text instead of files.
    pub fn inline_pem(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.fields.set("server_certificate", cert_pem);
        self.fields.set("server_private_key", key_pem);
        self
    }

    /// `min_version:` `"1.2"` or `"1.3"` (always a quoted string, as the policy requires).
    pub fn min_version(mut self, version: &str) -> Self {
        self.fields.set("min_version", version);
        self
    }

    /// `max_version:` `"1.2"` or `"1.3"`.
    pub fn max_version(mut self, version: &str) -> Self {
        self.fields.set("max_version", version);
        self
    }

    /// Adds a file to `mutual_tls_certificate_authorities`: ask for client certificates.
    pub fn client_ca(mut self, file: impl AsRef<Path>) -> Self {
        self.fields.push_to(
            "mutual_tls_certificate_authorities",
            path_value(file.as_ref()),
        );
        self
    }

    /// Adds PEM text to `mutual_tls_certificate_authorities`.
    pub fn client_ca_pem(mut self, pem: &str) -> Self {
        self.fields
            .push_to("mutual_tls_certificate_authorities", pem.into_yaml());
        self
    }

    /// `mutual_tls_verification_strategy:`.
    pub fn verification(mut self, strategy: Verification) -> Self {
        self.fields
            .set("mutual_tls_verification_strategy", strategy.as_str());
        self
    }

    /// Adds a file to `mutual_tls_certificate_revocation_lists`.
    pub fn client_crl(mut self, file: impl AsRef<Path>) -> Self {
        self.fields.push_to(
            "mutual_tls_certificate_revocation_lists",
            path_value(file.as_ref()),
        );
        self
    }

    /// `mutual_tls_revocation_check:` (`leaf`, `chain`).
    pub fn revocation_check(mut self, scope: &str) -> Self {
        self.fields.set("mutual_tls_revocation_check", scope);
        self
    }

    /// `mutual_tls_ocsp:`, how to ask about client certificates' revocation.
    pub fn client_ocsp(mut self, ocsp: Ocsp) -> Self {
        self.fields.set("mutual_tls_ocsp", ocsp.fields);
        self
    }

    /// Adds a file to `session_ticket_keys`.
    pub fn session_ticket_key(mut self, file: impl AsRef<Path>) -> Self {
        self.fields
            .push_to("session_ticket_keys", path_value(file.as_ref()));
        self
    }

    /// `session_lifetime:` a duration such as `1h`.
    pub fn session_lifetime(mut self, lifetime: &str) -> Self {
        self.fields.set("session_lifetime", lifetime);
        self
    }

    pub(super) fn to_action(&self) -> Yaml {
        let mut action = Map::new();
        action.set("type", "terminate-tls");
        action.set("config", self.fields.clone());
        action.into()
    }
}

/// A terminate-tls `mutual_tls_ocsp:` block. Keys are written in the order they were set.
#[derive(Debug, Clone, PartialEq)]
pub struct Ocsp {
    fields: Map,
}

impl Ocsp {
    /// `mode:` (`prefer`, `require`).
    pub fn new(mode: &str) -> Self {
        let mut fields = Map::new();
        fields.set("mode", mode);
        Self { fields }
    }

    /// `responder:` the URL to ask instead of the one certificates name.
    pub fn responder(mut self, url: &str) -> Self {
        self.fields.set("responder", url);
        self
    }

    /// `timeout:` a duration such as `2s`.
    pub fn timeout(mut self, timeout: &str) -> Self {
        self.fields.set("timeout", timeout);
        self
    }
}
