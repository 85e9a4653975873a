//! Helpers the load-error tests share: the endpoint host, a TLS block from lines, and the error a
//! policy fails with.

use super::*;

pub(crate) const HOST: &str = "app.example.com";

pub(crate) fn tls(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| format!("                {l}\n"))
        .collect()
}

/// The error a policy fails with, to match on its kind (and print when it is not the one).
pub(crate) fn failure(f: &Fixture, yaml: &str) -> ConfigError {
    match f.load(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e,
    }
}
