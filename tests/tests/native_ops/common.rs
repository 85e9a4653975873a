//! What the operations tests share: a policy with one https endpoint.

use super::*;

/// A policy with one https endpoint for `host` on `port`, terminating with the `server.crt` and
/// `server.key` written beside it, in front of `upstream`, with `rules` as on_http_request.
pub(crate) fn one_endpoint(host: &str, port: u16, upstream: &str, rules: &[Rule]) -> String {
    PolicyBuilder::new()
        .endpoint(
            Endpoint::https(host)
                .on_loopback(port)
                .upstream(upstream)
                .terminate_tls(TerminateTls::files("server.crt", "server.key"))
                .on_http_requests(rules.iter().cloned()),
        )
        .to_yaml()
}
