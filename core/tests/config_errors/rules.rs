//! Endpoints, actions and expressions: host conflicts, unknown or misplaced actions, CEL errors,
//! URLs, binds, upstreams and restrict-ips.

use super::*;

#[test]
fn two_endpoints_may_not_claim_one_host_on_one_bind() {
    let f = Fixture::new(HOST);
    let one = policy(HOST, "", "");
    let endpoint = one.strip_prefix("endpoints:\n").expect("prefix");
    let e = f.error(&format!("{one}{endpoint}"));
    assert!(
        e.contains(
            "endpoints[1].url: app.example.com on 127.0.0.1:8443 is already served by endpoints[0]"
        ),
        "{e}"
    );
}

#[test]
fn unknown_action_names_the_phase_and_the_alternatives() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(HOST, "", "        - actions: [{type: dney}]\n"));
    assert!(
        e.contains(
            "on_tcp_connect[1].actions[0].type: unknown action type `dney` in on_tcp_connect"
        ),
        "{e}"
    );
    assert!(
        e.contains("terminate-tls, deny, close-connection, restrict-ips"),
        "{e}"
    );
}

#[test]
fn an_ngrok_action_tlsgate_does_not_implement_is_named_as_such() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(
        HOST,
        "",
        "      on_http_request:\n        - actions: [{type: rate-limit, config: {capacity: 10}}]\n",
    ));
    assert!(
        e.contains(
            "on_http_request[0].actions[0].type: `rate-limit` is an ngrok action tlsgate does \
             not implement; on_http_request accepts deny, close-connection, custom-response, \
             add-headers, remove-headers, restrict-ips"
        ),
        "{e}"
    );
}

#[test]
fn http_only_action_in_tcp_phase_is_refused() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(
        HOST,
        "",
        "        - actions: [{type: add-headers, config: {headers: {a: b}}}]\n",
    ));
    assert!(
        e.contains("unknown action type `add-headers` in on_tcp_connect"),
        "{e}"
    );
}

#[test]
fn cel_errors_point_at_the_expression() {
    let f = Fixture::new(HOST);
    let e = failure(
        &f,
        &policy(
            HOST,
            "",
            "        - expressions: [\"conn.tls.client.subject.cn == 'x'\"]\n          actions: [{type: deny}]\n",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::Expression {
            reason: CompileError::UnknownVariable { variable, .. }, ..
        } if variable == "conn.tls.client.subject.cn"),
        "{e}"
    );
    let e = e.to_string();
    assert!(e.starts_with("policy.yaml:13:"), "{e}");
    assert!(e.contains("on_tcp_connect[1].expressions[0]: expression `conn.tls.client.subject.cn == 'x'`: unknown variable"), "{e}");
    let e = failure(
        &f,
        &policy(
            HOST,
            "",
            "        - expressions: [\"conn.tls.version > 1\"]\n          actions: [{type: deny}]\n",
        ),
    );
    assert!(
        matches!(
            &*e.kind,
            ConfigErrorKind::Expression {
                reason: CompileError::Type { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn terminate_tls_behind_an_expression_is_refused() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, "", "").replace(
        "        - actions:\n            - type: terminate-tls",
        "        - expressions: [\"conn.tls.sni == 'a'\"]\n          actions:\n            - type: terminate-tls",
    );
    let e = failure(&f, &yaml);
    assert_eq!(
        *e.kind,
        ConfigErrorKind::Conflict(Conflict::TerminateTlsBehindExpression),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("terminate-tls cannot depend on expressions"),
        "{e}"
    );
}

#[test]
fn bad_urls_binds_and_upstreams_are_refused() {
    let f = Fixture::new(HOST);
    let e = failure(
        &f,
        &policy(HOST, "", "").replace("bind: 127.0.0.1:8443", "bind: localhost"),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::BadAddress { value, .. } if *value == "localhost"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("endpoints[0].bind: `localhost` is not an address to listen on"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(HOST, "", "").replace(
            "url: https://app.example.com",
            "url: http://app.example.com",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::BadUrl { url, problem: UrlProblem::PlainEndpoint }
            if *url == "http://app.example.com"),
        "{e}"
    );
    assert!(e.to_string().contains("endpoints[0].url:"), "{e}");
    let e = failure(
        &f,
        &policy(HOST, "", "").replace("url: http://127.0.0.1:8080", "url: tcp://127.0.0.1:8080"),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::WrongUpstreamScheme { found, .. } if *found == "tcp"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("endpoints[0].upstream.url: an https endpoint proxies HTTP"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(HOST, "", "").replace("url: http://127.0.0.1:8080", "url: http://127.0.0.1:0"),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::BadUrl { problem: UrlProblem::BadPort { port }, .. }
            if *port == "0"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(HOST, "", "").replace(
            "url: http://127.0.0.1:8080",
            "url: http://127.0.0.1:8080\n      tls: {server_name: x}",
        ),
    );
    assert!(
        matches!(
            &*e.kind,
            ConfigErrorKind::Conflict(Conflict::UpstreamTlsUnencrypted { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("endpoints[0].upstream.tls:"), "{e}");
}

#[test]
fn restrict_ips_needs_valid_cidrs() {
    let f = Fixture::new(HOST);
    let e = failure(
        &f,
        &policy(
            HOST,
            "",
            "        - actions: [{type: restrict-ips, config: {allow: [10.0.0.0/33]}}]\n",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::BadAddress { value, .. } if *value == "10.0.0.0/33"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("on_tcp_connect[1].actions[0].config.allow[0]: `10.0.0.0/33` is not a CIDR"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(
            HOST,
            "",
            "        - actions: [{type: restrict-ips, config: {}}]\n",
        ),
    );
    assert!(
        matches!(
            *e.kind,
            ConfigErrorKind::ActionNeeds {
                action: "restrict-ips",
                ..
            }
        ),
        "{e}"
    );
}
