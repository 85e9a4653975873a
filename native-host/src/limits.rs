//! Every deadline and bound of the native host, in one place, with the strict defaults.
//!
//! A peer that waits costs a timer, never a thread: each phase that waits on someone else has
//! exactly one deadline here.

use std::time::Duration;

/// Deadlines and bounds for `tlsgate run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From accept to the end of the TLS handshake (ClientHello included).
    pub handshake: Duration,
    /// For an HTTP/1 request's header block, from the first byte.
    pub request_headers: Duration,
    /// A connection with no bytes in either direction (and no request waiting for its upstream)
    /// is closed after this long.
    pub idle: Duration,
    /// TCP connect plus TLS handshake to the upstream.
    pub upstream_connect: Duration,
    /// From sending a request upstream to its response head.
    pub upstream_response: Duration,
    /// After SIGTERM, how long in-flight work may take before the process exits anyway.
    pub drain: Duration,
    /// Client connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            request_headers: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(5),
            upstream_response: Duration::from_secs(60),
            drain: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// How often referenced files are checked for changes (mtime and size).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// How long idle pooled upstream connections are kept.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(60);

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
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("`{text}`: a duration must be positive"));
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
    }
}
