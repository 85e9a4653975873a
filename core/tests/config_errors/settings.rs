//! Listener and session settings: PROXY protocol, session ticket keys, key exchange groups, set-
//! vars and log metadata.

use super::*;

#[test]
fn proxy_protocol_settings_load_and_their_mistakes_are_named() {
    let f = Fixture::new(HOST);
    let with = |listeners: &str| format!("{}listeners:\n{listeners}", policy(HOST, "", ""));
    let config = f
        .load(&with(
            "  - bind: 127.0.0.1:8443\n    proxy_protocol: { trusted_sources: [10.0.0.0/8, \"::1\"] }\n",
        ))
        .expect("loads");
    let pp = config.listener("127.0.0.1:8443".parse().unwrap()).unwrap();
    let pp = pp.proxy_protocol.as_ref().unwrap();
    assert!(pp.trusts("10.1.2.3".parse().unwrap()));
    assert!(
        pp.trusts("::ffff:10.1.2.3".parse().unwrap()),
        "IPv4-mapped peers match"
    );
    assert!(!pp.trusts("127.0.0.1".parse().unwrap()));

    for (listeners, at, says) in [
        (
            "  - bind: 127.0.0.1:9000\n    proxy_protocol: { trusted_sources: [10.0.0.0/8] }\n",
            "policy.yaml:14:11: listeners[0].bind",
            "no endpoint of this file binds 127.0.0.1:9000",
        ),
        (
            "  - bind: 127.0.0.1:8443\n    proxy_protocol: { trusted_sources: [] }\n",
            "listeners[0].proxy_protocol.trusted_sources",
            "list the addresses (CIDRs) the load balancer connects from",
        ),
        (
            "  - bind: 127.0.0.1:8443\n    proxy_protocol: { trusted_sources: [10.0.0/8] }\n",
            "listeners[0].proxy_protocol.trusted_sources[0]",
            "`10.0.0/8` is not an address or CIDR range",
        ),
        (
            "  - bind: 127.0.0.1:8443\n  - bind: 127.0.0.1:8443\n",
            "listeners[1].bind",
            "has another listeners: entry above",
        ),
        (
            "  - bind: 127.0.0.1:8443\n    proxy_protocol: { from: [10.0.0.0/8] }\n",
            "listeners[0].proxy_protocol.from",
            "unknown field `from`",
        ),
    ] {
        let e = f.error(&with(listeners));
        assert!(e.contains(at) && e.contains(says), "{listeners}: {e}");
    }

    let upstream = |version: &str| {
        policy(HOST, "", "").replace(
            "      url: http://127.0.0.1:8080\n",
            &format!("      url: http://127.0.0.1:8080\n      proxy_protocol: {version}\n"),
        )
    };
    for (version, want) in [("1", "1"), ("\"2\"", "2"), ("2", "2")] {
        let config = f.load(&upstream(version)).expect("loads");
        let got = config.endpoints[0]
            .upstream
            .proxy_protocol
            .map(|v| v.as_str());
        assert_eq!(got, Some(want));
    }
    let e = f.error(&upstream("v3"));
    assert!(
        e.contains("policy.yaml:6:23: endpoints[0].upstream.proxy_protocol: `v3` is not")
            && e.contains("write 1 (text) or 2 (binary)"),
        "{e}"
    );
}

#[test]
fn session_ticket_keys_are_80_byte_files_never_inline_and_never_echoed() {
    let f = Fixture::new(HOST);
    std::fs::write(f.dir.path().join("ticket.key"), [7u8; 80]).unwrap();
    std::fs::write(f.dir.path().join("short.key"), [7u8; 48]).unwrap();
    let config = f
        .load(&policy(
            HOST,
            &tls(&["session_ticket_keys: [ticket.key]", "session_lifetime: 30m"]),
            "",
        ))
        .expect("loads");
    let t = &config.endpoints[0].tls;
    assert_eq!(t.session_lifetime, std::time::Duration::from_secs(1800));
    assert_eq!(t.session_ticket_keys[0].name(), Some(&[7u8; 16][..]));
    assert!(!format!("{t:?}").contains("7, 7"), "{t:?}");
    // The filter's copy of the policy carries neither the keys nor their paths.
    assert!(!config.filter_policy().to_string().contains("ticket"));

    let e = failure(
        &f,
        &policy(HOST, &tls(&["session_ticket_keys: [short.key]"]), ""),
    );
    assert!(
        matches!(*e.kind, ConfigErrorKind::TicketKeyLength { len: 48, .. }),
        "{e}"
    );
    let e = e.to_string();
    assert!(e.starts_with("policy.yaml:13:"), "{e}");
    assert!(e.contains("session_ticket_keys[0]"), "{e}");
    assert!(
        e.contains("holds 48 bytes") && e.contains("openssl rand 80"),
        "{e}"
    );

    let e = f.error(&policy(
        HOST,
        &tls(&["session_ticket_keys: [missing.key]"]),
        "",
    ));
    assert!(
        e.contains("session_ticket_keys[0]") && e.contains("missing.key"),
        "{e}"
    );

    let e = failure(
        &f,
        &policy(
            HOST,
            &tls(&["session_ticket_keys: [\"-----BEGIN SECRET-----\\nAAAA\\n\"]"]),
            "",
        ),
    );
    assert!(
        matches!(*e.kind, ConfigErrorKind::InlineSecret { .. }),
        "{e}"
    );
    assert!(!format!("{e:?}").contains("AAAA"), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("a ticket key is a secret"), "{e}");
    assert!(!e.contains("AAAA"), "{e}");

    let e = f.error(&policy(
        HOST,
        &tls(&[
            "session_resumption: false",
            "session_ticket_keys: [ticket.key]",
        ]),
        "",
    ));
    assert!(
        e.contains("session_ticket_keys has no effect with session_resumption: false"),
        "{e}"
    );

    for bad in ["0s", "8d", "soon"] {
        let e = failure(
            &f,
            &policy(HOST, &tls(&[&format!("session_lifetime: {bad}")]), ""),
        );
        assert!(
            matches!(&*e.kind, ConfigErrorKind::BadDuration { value, .. } if *value == bad),
            "{e}"
        );
        let e = e.to_string();
        assert!(
            e.contains("session_lifetime") && e.contains("7 days"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn key_exchange_groups_are_known_names_in_the_order_given() {
    let f = Fixture::new(HOST);
    let groups = |lines: &[&str]| policy(HOST, &tls(lines), "");
    let config = f
        .load(&groups(&["key_exchange_groups: [p-256, X25519]"]))
        .expect("loads");
    assert_eq!(
        config.endpoints[0].tls.key_exchange_groups,
        ["P-256", "X25519"]
    );
    let config = f.load(&groups(&[])).expect("loads");
    assert_eq!(
        config.endpoints[0].tls.key_exchange_groups,
        tlsgate_core::facts::KEY_EXCHANGE_GROUPS
    );
    let e = f.error(&groups(&["key_exchange_groups: [X25519, x448]"]));
    assert!(
        e.contains("key_exchange_groups[1]") && e.contains("`x448` is not") && e.contains("P-384"),
        "{e}"
    );
    let e = failure(&f, &groups(&["key_exchange_groups: [X25519, x25519]"]));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::ListedTwice { item } if item == "X25519"),
        "{e}"
    );
    assert!(e.to_string().contains("X25519 is listed twice"), "{e}");
    let e = failure(&f, &groups(&["key_exchange_groups: []"]));
    assert!(matches!(*e.kind, ConfigErrorKind::NoGroups { .. }), "{e}");
    assert!(e.to_string().contains("no key-exchange group left"), "{e}");
    // The hybrid alone shuts TLS 1.2 clients out unless the endpoint does too.
    let e = failure(&f, &groups(&["key_exchange_groups: [X25519MLKEM768]"]));
    assert_eq!(
        *e.kind,
        ConfigErrorKind::Conflict(Conflict::PostQuantumOnlyWithTls12),
        "{e}"
    );
    assert!(e.to_string().contains("TLS 1.3 group"), "{e}");
    f.load(&groups(&[
        "min_version: \"1.3\"",
        "key_exchange_groups: [X25519MLKEM768]",
    ]))
    .expect("TLS 1.3 only may pin the hybrid alone");
}

#[test]
fn set_vars_are_named_and_set_before_they_are_read() {
    let f = Fixture::new(HOST);
    let http = |rules: &str| policy(HOST, "", &format!("      on_http_request:\n{rules}"));
    f.load(&http(
        "        - actions: [{type: set-vars, config: {vars: [{tier: gold}, {who: '${conn.client_ip}'}, {n: '${1 + 1}'}]}}]\n\
         \x20       - expressions: [\"vars.tier == 'gold' && vars.n == 2\"]\n\
         \x20         actions: [{type: add-headers, config: {headers: {x-who: '${vars.who}'}}}]\n",
    ))
    .expect("set, then read");
    let e = failure(
        &f,
        &http(
            "        - expressions: [\"vars.tier == 'gold'\"]\n\
             \x20         actions: [{type: deny}]\n\
             \x20       - actions: [{type: set-vars, config: {vars: [{tier: gold}]}}]\n",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::UnsetVariable { name, phase: "on_http_request" }
            if name == "tier"),
        "{e}"
    );
    let e = e.to_string();
    assert!(
        e.contains("on_http_request[0].expressions[0]")
            && e.contains("reads vars.tier, which no earlier set-vars of on_http_request sets"),
        "{e}"
    );
    // Each phase has its own: on_tcp_connect's are not on_http_request's.
    let e = f.error(&policy(
        HOST,
        "",
        "        - actions: [{type: set-vars, config: {vars: [{tier: gold}]}}]\n\
         \x20     on_http_request:\n\
         \x20       - expressions: [\"vars.tier == 'gold'\"]\n\
         \x20         actions: [{type: deny}]\n",
    ));
    assert!(e.contains("reads vars.tier"), "{e}");
    for (bad, why) in [
        ("{vars: [{a: 1, b: 2}]}", "a map with one key"),
        ("{vars: [{'9lives': 1}]}", "is not a variable name"),
        ("{vars: []}", "the list is empty"),
        ("{vars: [{a: '${req.nope}'}]}", "unknown variable"),
    ] {
        let e = f.error(&http(&format!(
            "        - actions: [{{type: set-vars, config: {bad}}}]\n"
        )));
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn log_metadata_is_checked_at_load() {
    let f = Fixture::new(HOST);
    let http = |action: &str| {
        policy(
            HOST,
            "",
            &format!("      on_http_request:\n        - actions: [{action}]\n"),
        )
    };
    let e = failure(&f, &http("{type: log}"));
    assert!(
        matches!(
            *e.kind,
            ConfigErrorKind::ActionNeeds {
                action: "log",
                needs: "config.metadata",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("log needs config.metadata"), "{e}");
    let e = f.error(&http("{type: log, config: {metadata: {'has space': x}}}"));
    assert!(
        e.contains("metadata.has space") && e.contains("a log key is"),
        "{e}"
    );
    let e = failure(
        &f,
        &http("{type: log, config: {metadata: {k: {nested: 1}}}}"),
    );
    assert_eq!(*e.kind, ConfigErrorKind::BadLogValue, "{e}");
    assert!(e.to_string().contains("a log value is a string"), "{e}");
    let e = f.error(&http(
        "{type: log, config: {metadata: {k: '${conn.nope}'}}}",
    ));
    assert!(e.contains("metadata.k"), "{e}");
    // In on_tcp_connect too, with connection variables only: no request exists yet.
    f.load(&policy(
        HOST,
        "",
        "        - actions: [{type: log, config: {metadata: {k: '${conn.client_ip}'}}}]\n",
    ))
    .expect("log in on_tcp_connect");
    let e = f.error(&policy(
        HOST,
        "",
        "        - actions: [{type: log, config: {metadata: {k: '${req.path}'}}}]\n",
    ));
    assert!(
        e.contains("on_http_request") && e.contains("metadata"),
        "{e}"
    );
    f.load(&http(
        "{type: log, config: {metadata: {n: 1, b: true, s: '${conn.client_ip}'}}}",
    ))
    .expect("numbers, booleans and templates load");
}
