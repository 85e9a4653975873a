//! Behind Envoy, "verified" means "by this endpoint's CAs" even when Envoy trusts more.
//!
//! Envoy verifies the client's chain against its own trust store. The generated bootstrap
//! points it at the policy's CA file, but an Istio Gateway or a hand-edited configuration may
//! trust more CAs than the policy names. The filter checks, inside the VM, that one of the
//! endpoint's CAs signed the leaf before it takes the certificate as an identity. Here the CA
//! file Envoy reads grows a second CA after the configuration was generated, which is exactly
//! such a trust store: a certificate from that CA passes Envoy's handshake and must still be
//! nobody to tlsgate.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use envoy_harness::{generate, ports, Envoy};
use tlsgate_e2e::{echo_upstream, Curl};
use tlsgate_test_support::{
    Action, Authority, Endpoint, PolicyBuilder, Rule, TerminateTls, Verification,
};

#[test]
fn a_ca_envoy_trusts_but_the_policy_does_not_gives_no_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::root("Policy CA");
    let gateway_only = Authority::root("Gateway-only CA");
    for name in ["verify.example.com", "request.example.com"] {
        ca.server(&[name]).write(dir.path(), name);
    }
    ca.client("alice").write(dir.path(), "alice");
    gateway_only.client("alice").write(dir.path(), "mallory");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write");
    let upstream = echo_upstream();
    let (port, admin) = ports();
    let endpoint = |name: &str, strategy: Verification| {
        Endpoint::https(name)
            .on_loopback(port)
            .upstream(upstream.url())
            .terminate_tls(
                TerminateTls::files(format!("{name}.crt"), format!("{name}.key"))
                    .client_ca("ca.crt")
                    .verification(strategy),
            )
            .on_http_request(Rule::new().then(Action::add_headers(&[
                ("x-cn", "${conn.tls.client.subject.common_name}"),
                ("x-verified", "${conn.tls.client.verified}"),
            ])))
    };
    let policy = PolicyBuilder::new()
        .endpoint(endpoint(
            "verify.example.com",
            Verification::RequireAndVerify,
        ))
        .endpoint(endpoint("request.example.com", Verification::Request))
        .to_yaml();
    let config = generate(dir.path(), &policy, admin);
    // Envoy reads the CA file when it starts; the filter holds the policy's CAs as generated.
    std::fs::write(
        dir.path().join("ca.crt"),
        format!("{}{}", ca.cert_pem(), gateway_only.cert_pem()),
    )
    .expect("write");
    let envoy = Envoy::start(&config, admin, &[port]);
    let call = |host: &str, client: &str| {
        Curl::https(host, port, &format!("/{client}"))
            .ca(dir.path().join("ca.crt"))
            .client_cert(
                dir.path().join(format!("{client}.crt")),
                dir.path().join(format!("{client}.key")),
            )
            .run()
    };

    // The policy's own client: verified on both endpoints.
    for host in ["verify.example.com", "request.example.com"] {
        let res = call(host, "alice");
        assert_eq!(
            res.status,
            Some(200),
            "{host}: {res:?}\n{}",
            envoy.proc.log()
        );
    }
    // The Gateway-only CA's client passes Envoy's handshake (its trust store has that CA)...
    let res = call("verify.example.com", "mallory");
    assert_ne!(
        res.status,
        Some(200),
        "require-and-verify admitted a certificate the policy's CAs did not sign: {res:?}"
    );
    let res = call("request.example.com", "mallory");
    assert_eq!(res.status, Some(200), "{res:?}\n{}", envoy.proc.log());

    let seen = upstream.requests();
    let by_path = |p: &str| {
        seen.iter()
            .filter(|r| r.path == p)
            .map(|r| (r.header("x-cn"), r.header("x-verified")))
            .collect::<Vec<_>>()
    };
    let alice = (Some("alice".to_owned()), Some("true".to_owned()));
    assert_eq!(by_path("/alice"), vec![alice.clone(), alice], "{seen:?}");
    // ...and is nobody: never verified, its subject never readable as an identity.
    assert_eq!(
        by_path("/mallory"),
        vec![(Some(String::new()), Some("false".to_owned()))],
        "{seen:?}"
    );
}
