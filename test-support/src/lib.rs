//! The one certificate factory every tlsgate test uses, good certificates and bad ones alike.
//!
//! Fixtures are generated at test time rather than committed, so they never expire in the
//! repository and every bad case is one visible line in the test that needs it.
//!
//! # What it makes
//!
//! | need | call |
//! | --- | --- |
//! | a trust anchor | [`Authority::root`], [`Authority::root_with`] (key type), [`Authority::root_from`] (any [`LeafSpec`]) |
//! | an intermediate CA | [`Authority::intermediate`], [`Authority::subordinate`] |
//! | an issuer with `CA:FALSE` | [`Authority::not_a_ca`] |
//! | a server certificate | [`Authority::server`] (SANs from host names and IPs, EKU serverAuth) |
//! | a client certificate | [`Authority::client`] (CN, EKU clientAuth) |
//! | anything else | [`Authority::issue`] with a [`LeafSpec`] |
//! | expired / not yet valid | [`LeafSpec::with_validity`] with [`Validity`] |
//! | no clientAuth EKU | [`LeafSpec::with_eku`] |
//! | wrong CA | a second [`Authority::root`] |
//! | self-signed | [`Issued::self_signed`] |
//! | certificate and key that do not match | [`Issued::with_mismatched_key`] |
//! | RSA instead of ECDSA | [`LeafSpec::with_key`] / [`KeyKind::Rsa2048`] |
//! | the seed document's files | [`write_seed_style_set`] (rcgen) or [`seed_openssl_certs`] (the real openssl commands) |
//! | a policy document for them | [`PolicyBuilder`] with [`Endpoint`], [`TerminateTls`], [`Rule`]; the seed's own: [`seed_endpoint`] |
//!
//! Every certificate carries basicConstraints (explicit `CA:FALSE` on leaves), key usage and,
//! when issued by an authority, an authority key identifier; serial numbers are random. Keys are
//! ECDSA P-256 unless asked otherwise. [`Issued::write`] and [`Authority::write`] put PEM files
//! where a process under test can read them.
//!
//! ```
//! use tlsgate_test_support::{Authority, LeafSpec, Validity};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let root = Authority::root("Test Root");
//! let issuing = root.intermediate("Test Issuing CA");
//! let (server_crt, server_key) = issuing.server(&["localhost", "127.0.0.1"]).write(dir.path(), "server");
//! let (ca_crt, _) = root.write(dir.path(), "ca");
//! let expired_client = issuing.issue(&LeafSpec::client("alice").with_validity(Validity::Expired));
//! # let _ = (server_crt, server_key, ca_crt, expired_client);
//! ```
//!
//! # Failure
//!
//! These are fixtures: they panic with a message instead of returning errors, so a broken
//! fixture is a failing test that says what broke. The exception is [`seed_openssl_certs`],
//! whose failure (openssl missing) is itself something tests report.

// A panic is how a fixture reports that it could not be built; see "Failure" above.
#![allow(clippy::panic, clippy::expect_used)]

mod authority;
mod key;
mod policy;
mod seed;
mod spec;

use std::path::{Path, PathBuf};

pub use authority::{pem_to_der, Authority, Issued};
pub use key::KeyKind;
pub use policy::{
    emit, Action, Endpoint, Ocsp, PolicyBuilder, Rule, TerminateTls, Upstream, UpstreamTls,
    Verification,
};
pub use seed::{
    seed_endpoint, seed_openssl_certs, seed_policy, write_seed_style_set, SeedFiles,
    SEED_OPENSSL_COMMANDS, SEED_SERVER_NAME,
};
pub use spec::{Eku, LeafSpec, Validity};

/// The first executable file called `name` in the directories of `PATH`.
///
/// Tests look tools up themselves so that a missing one becomes an error naming the tool and the
/// `make` target that installs it, instead of an opaque "No such file or directory".
pub fn find_executable(name: &str) -> Option<PathBuf> {
    find_executable_in(name, &std::env::var_os("PATH")?)
}

/// [`find_executable`] over an explicit `PATH` value, so the "tool missing" path is testable.
pub(crate) fn find_executable_in(name: &str, search_path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a regular file that may be executed.
pub fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    path.is_file()
}

#[cfg(test)]
mod tests;
