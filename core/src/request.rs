//! A request as the policy sees it, and exactly what the upstream receives when it is forwarded.
//!
//! Both hosts hand core the request as the client sent it and apply what core answers; neither
//! decides a header or a path on its own. That is what keeps the upstream's view identical
//! behind `tlsgate run` and behind Envoy with the filter:
//!
//! 1. every header the edge owns ([`EDGE_HEADERS`]) and every header name with `_`
//!    ([`drops_client_header`]) is removed from what the client sent;
//! 2. the names in [`Forward::remove_headers`] are removed (`remove-headers`);
//! 3. each of [`Forward::set_headers`] is set, replacing any value under that name;
//! 4. the request target becomes [`Forward::target`] (the normalized path and the query) and
//!    `Host`/`:authority` becomes [`Forward::authority`].

use std::fmt;
use std::sync::Arc;

/// A request as the client sent it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Host or `:authority`, possibly with a port; repeated Host fields joined with `,`.
    pub host: &'a str,
    /// The request target as received: path and query (`/a/../b?x=1`), not yet normalized.
    pub target: &'a str,
    /// Only needed when a rule reads `req.headers`; see
    /// [`crate::policy::EndpointPolicy::reads_request_headers`].
    pub headers: &'a [(&'a str, &'a str)],
}

/// Headers a client could send to impersonate a certificate identity.
pub const IDENTITY_HEADERS: [&str; 3] = [
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
];

/// Headers the edge owns. Whatever a client sends under these names is removed before the
/// upstream sees the request, and a policy cannot set them: the upstream must be able to trust
/// that each one says what tlsgate asserts, or that it is absent.
pub const EDGE_HEADERS: [&str; 10] = [
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
    "forwarded",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-tlsgate-endpoint",
    JA4_HEADER,
];

/// The methods both hosts send to the upstream a second time when it closed a pooled
/// connection under the first attempt before answering (RFC 9110's safe methods).
pub const SAFE_METHODS: [&str; 4] = ["GET", "HEAD", "OPTIONS", "TRACE"];

/// How Envoy hands the filter the JA4 fingerprint its `tls_inspector` computed: the generated
/// configuration sets it on every request (`ja4=` and the fingerprint, so it is never empty
/// and a client's own value never survives), the filter reads it, and like every edge header
/// it never reaches the upstream.
pub const JA4_HEADER: &str = "x-tlsgate-ja4";

/// The header that names the endpoint which served a request (its host pattern).
pub const ENDPOINT_HEADER: &str = "x-tlsgate-endpoint";

/// Whether a header the client sent is dropped before rules run and before forwarding.
///
/// Header names with `_` are dropped as nginx does by default (and Envoy with
/// `headers_with_underscores_action: DROP_HEADER`, which the generator sets): many upstream
/// frameworks (CGI, WSGI, Rack, PHP) fold `-` and `_` together, so `x_forwarded_client_cert`
/// would reach an application as the identity header the edge removed.
pub fn drops_client_header(name: &str) -> bool {
    name.contains('_') || EDGE_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// What the upstream receives for a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The normalized path and the query, as sent upstream.
    pub target: String,
    /// Lowercase names; each replaces whatever the client sent under that name. The identity
    /// header (after a verified handshake), `x-forwarded-*`, the endpoint header and the
    /// policy's `add-headers`, in that order.
    pub set_headers: Vec<(String, String)>,
    /// Lowercase names the policy removes (`remove-headers`): hosts drop the client's values
    /// under these names, as they drop the edge's own.
    pub remove_headers: Vec<String>,
    /// `Host` / `:authority` for the upstream: its own name (see
    /// [`crate::config::Upstream::authority`]).
    pub authority: Arc<str>,
}

impl Forward {
    /// Removes `name`: the client's value and any value set so far.
    pub(crate) fn remove(&mut self, name: &str) {
        self.set_headers.retain(|(n, _)| n != name);
        if !self.remove_headers.iter().any(|n| n == name) {
            self.remove_headers.push(name.to_owned());
        }
    }

    /// Sets `name` to `value`, replacing an earlier value under that name.
    pub(crate) fn set(&mut self, name: &str, value: String) {
        match self.set_headers.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.set_headers.push((name.to_owned(), value)),
        }
    }

    /// The value set for `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.set_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the usual extras): never forwarded, and neither is
/// any header a `Connection` header names. Both hosts drop these; `te: trailers` alone survives
/// towards an HTTP/2 upstream, where gRPC needs it.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "keep-alive",
    "proxy-connection",
];

/// The headers the upstream receives for `client`'s request headers and core's [`Forward`]:
/// hop-by-hop headers and `Host` go (the authority is [`Forward::authority`]), the headers core
/// drops and the policy removes go, and `forward.set_headers` replace whatever stood under their
/// names. The native host applies the same steps to its `HeaderMap` (a test holds the two
/// together); `tlsgate eval` and the playground show this list. `Err` names a set header whose
/// value HTTP cannot carry.
pub fn upstream_headers(
    client: &[(String, String)],
    forward: &Forward,
    h2: bool,
) -> Result<Vec<(String, String)>, String> {
    let connection_named: Vec<String> = client
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out: Vec<(String, String)> =
        Vec::with_capacity(client.len() + forward.set_headers.len());
    for (name, value) in client {
        let name = name.to_ascii_lowercase();
        let named = connection_named.contains(&name);
        let te_trailers =
            h2 && name == "te" && !named && value.trim().eq_ignore_ascii_case("trailers");
        if te_trailers {
            out.push((name, "trailers".into()));
            continue;
        }
        if HOP_BY_HOP.contains(&name.as_str())
            || named
            || name == "host"
            || drops_client_header(&name)
            || forward.remove_headers.contains(&name)
        {
            continue;
        }
        out.push((name, value.clone()));
    }
    for (name, value) in &forward.set_headers {
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(name.clone());
        }
        out.retain(|(n, _)| n != name);
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}

/// Why a request target cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadTarget {
    /// Not origin-form (`/…`): `*`, or an empty path.
    NotOriginForm,
    /// `%` not followed by two hex digits.
    InvalidEscape,
    /// `%2F` or `%5C`: whether it separates segments depends on who decodes it, so a rule on
    /// the path cannot be sure what the upstream will see.
    EscapedSeparator,
    /// A backslash, which some servers read as `/`.
    Backslash,
}

impl BadTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOriginForm => "path_not_origin_form",
            Self::InvalidEscape => "path_invalid_escape",
            Self::EscapedSeparator => "path_escaped_separator",
            Self::Backslash => "path_backslash",
        }
    }
}

impl fmt::Display for BadTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOriginForm => "the request target is not a path starting with `/`",
            Self::InvalidEscape => "`%` in the path is not followed by two hex digits",
            Self::EscapedSeparator => "the path holds an encoded `/` or `\\` (%2F, %5C)",
            Self::Backslash => "the path holds a `\\`",
        })
    }
}

/// A request target split and normalized once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The normalized path: what `req.path` is and what the upstream receives.
    pub path: String,
    /// The query without its `?`, as received.
    pub query: Option<String>,
}

impl Target {
    pub fn parse(target: &str) -> Result<Self, BadTarget> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        Ok(Self {
            path: normalize_path(path)?,
            query,
        })
    }

    /// Path and query, as sent upstream.
    pub fn to_target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Normalizes a path so that every spelling of the same resource reads the same to a rule and
/// to the upstream (RFC 3986 §6.2.2, plus merged slashes):
///
/// - percent-encoded unreserved characters are decoded (`%61` → `a`), other escapes are kept
///   with uppercase hex (`%c3%a9` → `%C3%A9`);
/// - runs of `/` become one (`//admin` → `/admin`);
/// - `.` and `..` segments are resolved (`/x/../admin`, `/./admin`, `/%2e%2e/admin` → `/admin`),
///   never above the root.
///
/// Encoded separators (`%2F`, `%5C`) and backslashes are refused rather than guessed at.
/// Matching stays case-sensitive: `/Admin` and `/admin` are different paths, as they are to
/// most upstreams.
pub fn normalize_path(path: &str) -> Result<String, BadTarget> {
    if !path.starts_with('/') {
        return Err(BadTarget::NotOriginForm);
    }
    // Decode unreserved escapes and canonicalize the rest; refuse separators.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(BadTarget::InvalidEscape);
                };
                let byte = hi << 4 | lo;
                match byte {
                    b'/' | b'\\' => return Err(BadTarget::EscapedSeparator),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        decoded.push(char::from(b));
                    }
                    b => {
                        decoded.push('%');
                        decoded.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
                        decoded.push(char::from(HEX_UPPER[usize::from(b & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(BadTarget::Backslash),
            _ => {
                // Copy up to the next escape; `%` and `\` are ASCII, so slicing there stays on
                // a character boundary.
                let end = path[i..].find(['%', '\\']).map_or(path.len(), |n| i + n);
                decoded.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    // Segments, with empty ones (merged slashes) and dot segments resolved.
    let mut out: Vec<&str> = Vec::new();
    let mut segments = decoded.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" | "." => trailing_slash = last,
            ".." => {
                out.pop();
                trailing_slash = last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut normalized = String::with_capacity(decoded.len());
    for segment in &out {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        normalized.push('/');
    }
    Ok(normalized)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_spellings_of_admin_normalize_to_admin() {
        for spelling in [
            "/admin",
            "//admin",
            "///admin",
            "/%61dmin",
            "/%61%64%6D%69%6e",
            "/./admin",
            "/x/../admin",
            "/x/y/../../admin",
            "/../admin",
            "/%2e/admin",
            "/%2E%2E/admin",
            "/x/%2e%2e/admin",
        ] {
            assert_eq!(
                normalize_path(spelling).as_deref(),
                Ok("/admin"),
                "{spelling}"
            );
        }
    }

    #[test]
    fn keeps_what_is_already_normal() {
        for path in [
            "/",
            "/a/b",
            "/a/b/",
            "/caf%C3%A9",
            "/a%20b",
            "/a.b/c..d/...",
            "/é",
        ] {
            assert_eq!(normalize_path(path).as_deref(), Ok(path), "{path}");
        }
        assert_eq!(normalize_path("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(normalize_path("/a/b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(normalize_path("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(normalize_path("/a//").as_deref(), Ok("/a/"));
    }

    #[test]
    fn refuses_ambiguous_or_malformed_paths() {
        assert_eq!(normalize_path("/a%2Fb"), Err(BadTarget::EscapedSeparator));
        assert_eq!(normalize_path("/a%2fb"), Err(BadTarget::EscapedSeparator));
        assert_eq!(normalize_path("/a%5Cb"), Err(BadTarget::EscapedSeparator));
        assert_eq!(normalize_path("/a\\b"), Err(BadTarget::Backslash));
        assert_eq!(normalize_path("/a%zz"), Err(BadTarget::InvalidEscape));
        assert_eq!(normalize_path("/a%4"), Err(BadTarget::InvalidEscape));
        assert_eq!(normalize_path("*"), Err(BadTarget::NotOriginForm));
        assert_eq!(normalize_path(""), Err(BadTarget::NotOriginForm));
    }

    #[test]
    fn normalization_is_idempotent_and_case_sensitive() {
        for path in ["//a/./b/../c//", "/%7Euser/%41", "/A/a", "/x/%25/y"] {
            let once = normalize_path(path).expect("normalizes");
            assert_eq!(
                normalize_path(&once).as_deref(),
                Ok(once.as_str()),
                "{path}"
            );
        }
        assert_eq!(normalize_path("/Admin").as_deref(), Ok("/Admin"));
        assert_eq!(normalize_path("/%7Euser").as_deref(), Ok("/~user"));
    }

    #[test]
    fn the_query_is_kept_as_received() {
        let t = Target::parse("//a/../b?x=%2F&y=..").expect("parses");
        assert_eq!(t.path, "/b");
        assert_eq!(t.to_target(), "/b?x=%2F&y=..");
    }

    #[test]
    fn drops_edge_and_underscore_headers() {
        for name in [
            "x-forwarded-client-cert",
            "X-Forwarded-For",
            "forwarded",
            "x-real-ip",
            "x_forwarded_client_cert",
            "client_cert",
            "x-tlsgate-endpoint",
        ] {
            assert!(drops_client_header(name), "{name}");
        }
        for name in ["x-client-cn", "authorization", "cookie", "user-agent"] {
            assert!(!drops_client_header(name), "{name}");
        }
    }
}
