//! Choosing an endpoint by server name.
//!
//! Names are compared lowercased with any trailing dot removed. A wildcard `*.example.com`
//! covers exactly one label (`a.example.com`, not `example.com` nor `a.b.example.com`), as in
//! RFC 6125 and Envoy's `server_names`. The most specific pattern wins: an exact name before any
//! wildcard, and a longer wildcard suffix before a shorter one.
//!
//! A ClientHello without SNI, or with a name no endpoint claims, matches nothing: the host ends
//! the handshake (alert `unrecognized_name`). There is no default endpoint, because serving the
//! first tenant's certificate to a stranger leaks which tenants share the listener.

use std::collections::HashMap;
use std::fmt;

use crate::quoted::Quoted;

/// A host an endpoint answers for: `api.example.com` or `*.example.com`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// The suffix after `*.`, e.g. `example.com`.
    Wildcard(String),
}

/// Why a host is not one an endpoint can answer for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error("the host is empty")]
    Empty,
    #[error("`{host}`: a wildcard may only be the whole first label, as in `*.example.com`")]
    WildcardNotFirstLabel { host: Quoted },
    #[error("`{host}` is not a valid DNS name (label `{label}`)")]
    BadLabel { host: Quoted, label: Quoted },
    #[error("`{host}`: a wildcard needs at least two labels after `*.` (`*.example.com`)")]
    WildcardTooShort { host: Quoted },
}

impl HostPattern {
    /// Parses and normalises a host from a policy. Errors say what is wrong with it.
    pub fn parse(host: &str) -> Result<Self, HostError> {
        let host = normalize(host);
        if host.is_empty() {
            return Err(HostError::Empty);
        }
        let (wildcard, rest) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host.as_str()),
        };
        if rest.contains('*') {
            return Err(HostError::WildcardNotFirstLabel {
                host: host.as_str().into(),
            });
        }
        for label in rest.split('.') {
            let valid = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !valid {
                return Err(HostError::BadLabel {
                    host: host.as_str().into(),
                    label: label.into(),
                });
            }
        }
        if wildcard && !rest.contains('.') {
            return Err(HostError::WildcardTooShort {
                host: host.as_str().into(),
            });
        }
        Ok(if wildcard {
            Self::Wildcard(rest.to_owned())
        } else {
            Self::Exact(host)
        })
    }

    /// Whether `name` (already normalised) falls under this pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(host) => host == name,
            Self::Wildcard(suffix) => name
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        }
    }

    /// Whether a certificate name (SAN DNS entry or CN, possibly a wildcard) covers this
    /// pattern. A wildcard pattern is covered only by the same wildcard.
    pub fn covered_by(&self, cert_name: &str) -> bool {
        let Ok(cert) = HostPattern::parse(cert_name) else {
            return false;
        };
        match (self, &cert) {
            (Self::Exact(host), _) => cert.matches(host),
            (Self::Wildcard(a), Self::Wildcard(b)) => a == b,
            (Self::Wildcard(_), Self::Exact(_)) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(host) => f.write_str(host),
            Self::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Lowercases and drops one trailing dot, the forms in which a name may arrive in SNI or Host.
pub fn normalize(name: &str) -> String {
    // One trailing dot (a fully qualified name) is dropped; a name ending in two is no host name
    // and is kept as it is, so it matches nothing and normalizing it again changes nothing.
    let name = name
        .strip_suffix('.')
        .filter(|rest| !rest.ends_with('.'))
        .unwrap_or(name);
    name.to_ascii_lowercase()
}

/// Picks among patterns by server name; `T` is whatever the host attaches (an endpoint index).
///
/// Two hash lookups per name whatever the number of tenants: the exact name, then the suffix
/// after its first label (the only wildcard that can cover it, since a wildcard spans one label).
#[derive(Clone, Debug)]
pub struct SniRouter<T> {
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
    patterns: Vec<HostPattern>,
}

impl<T> SniRouter<T> {
    /// Builds the router. A pattern given twice keeps its first value (the config loader
    /// refuses duplicates before this point).
    pub fn new(routes: Vec<(HostPattern, T)>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut patterns = Vec::with_capacity(routes.len());
        for (pattern, value) in routes {
            match &pattern {
                HostPattern::Exact(host) => {
                    exact.entry(host.clone()).or_insert(value);
                }
                HostPattern::Wildcard(suffix) => {
                    wildcard.entry(suffix.clone()).or_insert(value);
                }
            }
            patterns.push(pattern);
        }
        Self {
            exact,
            wildcard,
            patterns,
        }
    }

    /// The route for a server name as sent by a client; `None` when no pattern covers it.
    pub fn route(&self, name: &str) -> Option<&T> {
        let needs_normalizing = name.ends_with('.') || name.bytes().any(|b| b.is_ascii_uppercase());
        if needs_normalizing {
            self.find(&normalize(name))
        } else {
            self.find(name)
        }
    }

    fn find(&self, name: &str) -> Option<&T> {
        if let Some(value) = self.exact.get(name) {
            return Some(value);
        }
        match name.split_once('.') {
            Some((first, rest)) if !first.is_empty() => self.wildcard.get(rest),
            _ => None,
        }
    }

    pub fn patterns(&self) -> impl Iterator<Item = &HostPattern> {
        self.patterns.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn router(hosts: &[&str]) -> SniRouter<String> {
        SniRouter::new(
            hosts
                .iter()
                .map(|h| (HostPattern::parse(h).expect("valid"), (*h).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn routes_exact_names_case_insensitively_with_trailing_dot() {
        let r = router(&["api.example.com"]);
        assert_eq!(
            r.route("API.Example.com.").map(String::as_str),
            Some("api.example.com")
        );
    }

    #[test]
    fn does_not_route_unknown_names() {
        let r = router(&["api.example.com"]);
        assert_eq!(r.route("www.example.com"), None);
        assert_eq!(r.route(""), None);
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let r = router(&["*.example.com"]);
        assert!(r.route("a.example.com").is_some());
        assert!(r.route("example.com").is_none());
        assert!(r.route("a.b.example.com").is_none());
        assert!(r.route(".example.com").is_none());
        assert!(r.route("aexample.com").is_none());
    }

    #[test]
    fn exact_beats_wildcard_and_longer_wildcard_beats_shorter() {
        let r = router(&["*.example.com", "api.example.com", "*.eu.example.com"]);
        assert_eq!(
            r.route("api.example.com").map(String::as_str),
            Some("api.example.com")
        );
        assert_eq!(
            r.route("x.example.com").map(String::as_str),
            Some("*.example.com")
        );
        assert_eq!(
            r.route("x.eu.example.com").map(String::as_str),
            Some("*.eu.example.com")
        );
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in [
            "",
            "*",
            "*.com",
            "a.*.com",
            "ex ample.com",
            "-a.com",
            "a..com",
            "f*o.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn certificate_names_cover_patterns() {
        let exact = HostPattern::parse("a.example.com").expect("valid");
        assert!(exact.covered_by("a.example.com"));
        assert!(exact.covered_by("*.example.com"));
        assert!(!exact.covered_by("b.example.com"));
        let wild = HostPattern::parse("*.example.com").expect("valid");
        assert!(wild.covered_by("*.example.com"));
        assert!(!wild.covered_by("a.example.com"));
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,10}"
    }

    proptest! {
        #[test]
        fn a_wildcard_matches_any_single_label_under_it(first in label(), a in label(), b in label()) {
            let suffix = format!("{a}.{b}");
            let pattern = HostPattern::parse(&format!("*.{suffix}")).expect("valid");
            let name = format!("{first}.{suffix}");
            prop_assert!(pattern.matches(&name));
            let deeper = format!("{first}.{name}");
            prop_assert!(!pattern.matches(&deeper));
            prop_assert!(!pattern.matches(&suffix));
        }

        #[test]
        fn routing_ignores_case_and_one_trailing_dot(first in label(), a in label(), b in label()) {
            let host = format!("{first}.{a}.{b}");
            let r = router(&[host.as_str()]);
            let shouted = format!("{}.", host.to_ascii_uppercase());
            prop_assert!(r.route(&shouted).is_some());
        }

        #[test]
        fn exact_routes_never_match_other_names(x in label(), y in label()) {
            prop_assume!(x != y);
            let r = router(&[format!("{x}.example.com").as_str()]);
            let other = format!("{y}.example.com");
            prop_assert!(r.route(&other).is_none());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = HostPattern::parse(&s);
        }
    }
}
