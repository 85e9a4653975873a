//! Every deadline and bound of both hosts, defined once.
//!
//! The native host enforces these itself; the Envoy generator renders the same values into the
//! bootstrap (listener, HTTP connection manager, route and cluster), so a client waits as long,
//! and is cut off at the same point, whichever host it reaches. A peer that waits costs a timer,
//! never a thread: each phase that waits on someone else has exactly one deadline here.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Deadlines and bounds. [`Limits::DEFAULT`] holds the strict defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From accept to a complete ClientHello. Short: a client that opens a socket and says
    /// nothing holds a connection slot for this long at most.
    pub client_hello: Duration,
    /// From accept to the end of the TLS handshake (the ClientHello included).
    pub handshake: Duration,
    /// From the end of the handshake to the first request's headers (https endpoints).
    pub first_request: Duration,
    /// For a request's header block, from its first byte.
    pub request_headers: Duration,
    /// A connection with no open exchange (HTTP) or no bytes moving (tls://) is closed after
    /// this long.
    pub idle: Duration,
    /// An open exchange whose body stops moving in either direction (a response that sends its
    /// head and stalls) is reset after this long (Envoy's `stream_idle_timeout`).
    pub stream_idle: Duration,
    /// TCP connect plus TLS handshake to the upstream.
    pub upstream_connect: Duration,
    /// From sending a request upstream to its response head (the route timeout in Envoy).
    pub upstream_response: Duration,
    /// After SIGTERM (or a reload that changes an endpoint), how long in-flight work may take.
    pub drain: Duration,
    /// Client connections served at once, all sources together.
    pub max_connections: usize,
    /// Client connections served at once from one source address; past it a new connection
    /// is closed at accept. Behind a load balancer without PROXY protocol every client has
    /// the balancer's address: raise this to `max_connections` there.
    pub max_connections_per_source: usize,
    /// HTTP/2 streams open at once on one client connection.
    pub max_concurrent_streams: u32,
    /// Requests in flight to one endpoint's upstream, including those waiting for a pooled
    /// connection; past it a request is answered 503 at once instead of queueing without end.
    pub max_upstream_requests: usize,
}

impl Limits {
    pub const DEFAULT: Self = Self {
        client_hello: Duration::from_secs(5),
        handshake: Duration::from_secs(10),
        first_request: Duration::from_secs(10),
        request_headers: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        stream_idle: Duration::from_secs(60),
        upstream_connect: Duration::from_secs(5),
        upstream_response: Duration::from_secs(60),
        drain: Duration::from_secs(10),
        max_connections: 10_000,
        max_connections_per_source: 256,
        max_concurrent_streams: 100,
        max_upstream_requests: 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A duration written as people write them: `10s`, `500ms`, `2m`, `1h`, or bare seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else {
            write!(f, "{}ms", d.as_millis())
        }
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(Self)
    }
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "`{other}` is not a duration unit; use ms, s, m or h"
            ))
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 1e9 {
        return Err(format!(
            "`{text}`: a duration must be positive and below 30 years"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn refuses_bad_durations() {
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e300").is_err());
    }

    #[test]
    fn durations_print_as_they_parse() {
        for text in ["10s", "250ms", "3600s"] {
            let d: HumanDuration = text.parse().expect("parses");
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn the_client_hello_deadline_fits_inside_the_handshake_deadline() {
        let l = Limits::DEFAULT;
        assert!(l.client_hello <= l.handshake);
        assert!(l.max_connections_per_source <= l.max_connections);
    }
}
