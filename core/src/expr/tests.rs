//! Expressions compiled, checked and evaluated: known and unknown variables, phases, type
//! errors, templates and ngrok's functions.

use super::*;
use crate::facts::{ClientCert, TlsFacts};

/// A connection from 127.0.0.1 with no certificate, for a test to change what it is about.
fn connection() -> TlsFacts {
    TlsFacts {
        version: crate::facts::TlsVersion::Tls13,
        cipher_suite: String::new(),
        sni: None,
        alpn: None,
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        client_port: 50_000,
        server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: ClientCert::Absent,
    }
}

#[test]
fn accepts_known_variables() {
    for e in [
        "conn.tls.client.subject.common_name == 'ExampleClient'",
        "'Org' in conn.tls.client.subject.organization",
        "conn.tls.client.san.dns_names.exists(d, d.endsWith('.example.com'))",
        "conn.tls.version == '1.3' && conn.tls.sni != ''",
        "conn.tls.client.validity.not_after > timestamp('2020-01-01T00:00:00Z')",
        "size(conn.tls.client.extensions) >= 0",
    ] {
        Expression::compile(e, Phase::TcpConnect).unwrap_or_else(|err| panic!("{e}: {err}"));
    }
    Expression::compile(
        "req.method == 'GET' && 'x-a' in req.headers && req.path.startsWith('/')",
        Phase::HttpRequest,
    )
    .expect("compiles");
}

#[test]
fn refuses_unknown_variables_with_the_known_ones() {
    let err = Expression::compile("conn.tls.client.subject.cn == 'x'", Phase::TcpConnect)
        .expect_err("unknown field");
    assert!(
        matches!(&err, CompileError::UnknownVariable { variable, parent: Some(parent), known }
            if variable == "conn.tls.client.subject.cn"
                && parent == "conn.tls.client.subject"
                && known.contains("common_name")),
        "{err:?}"
    );
    let err = Expression::compile("foo == 1", Phase::TcpConnect).expect_err("unknown root");
    assert!(
        matches!(&err, CompileError::UnknownVariable { variable, parent: None, .. } if variable == "foo"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "unknown variable `foo`; variables start with `conn.`"
    );
}

#[test]
fn knows_which_conn_variables_it_reads_directly_or_through_an_enclosing_object() {
    let reads = |source: &str| {
        let e = Expression::compile(source, Phase::HttpRequest)
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        e.reads_variable("conn.tls.cipher_suite")
    };
    assert!(reads("conn.tls.cipher_suite == 'TLS_AES_128_GCM_SHA256'"));
    assert!(reads("has(conn.tls.cipher_suite)"));
    assert!(!reads("conn.tls.sni == 'a.example.com'"));
    // A name that merely starts like another is not inside it.
    let longer = Reads {
        conn: vec!["conn.tls.cipher_suite_x".into()],
        ..Reads::default()
    };
    assert!(!longer.variable("conn.tls.cipher_suite"));
    // Through an index or the whole object: it may read anything under it.
    assert!(reads("conn.tls['cipher_suite'] == ''"));
    assert!(reads("[conn].exists(c, c.tls.sni == '')"));
    // A comprehension variable named like a root is not the connection.
    assert!(!reads("[1].exists(conn, conn == 1)"));
    let t = Template::compile("suite=${conn.tls.cipher_suite}", Phase::HttpRequest)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(t.reads_variable("conn.tls.cipher_suite"));
    assert!(!t.reads_variable("conn.tls.session_resumed"));
}

#[test]
fn refuses_requests_in_tcp_phase() {
    let err = Expression::compile("req.method == 'GET'", Phase::TcpConnect).expect_err("no req");
    assert_eq!(
        err,
        CompileError::NoRequest {
            phase: "on_tcp_connect"
        }
    );
    assert!(err.to_string().contains("on_http_request"), "{err}");
}

#[test]
fn ngrok_header_macros_are_req_headers_and_only_in_requests() {
    let e = Expression::compile("hasReqHeader('X-Api-Key')", Phase::HttpRequest)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        e.reads_request_headers(),
        "the host must collect headers for it"
    );
    let e = Expression::compile("size(getReqHeader('x-tag')) == 0", Phase::HttpRequest)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(e.reads_request_headers());
    let err = Expression::compile("hasReqHeader('x-api-key')", Phase::TcpConnect)
        .expect_err("no request yet");
    assert!(matches!(err, CompileError::NoRequest { .. }), "{err:?}");
    let err = Expression::compile("hasReqHeader(req.method)", Phase::HttpRequest)
        .expect_err("not a literal");
    assert!(matches!(err, CompileError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("quoted string"), "{err}");
}

#[test]
fn a_distinguished_name_is_a_string_where_used_as_one_and_a_map_elsewhere() {
    let verified = Expression::compile("conn.tls.client.verified", Phase::TcpConnect).unwrap();
    let all = samples(Phase::TcpConnect);
    let vars = all
        .iter()
        .find(|v| verified.matches(v) == Ok(true))
        .expect("a sample with a verified certificate");
    for source in [
        // As ngrok's string.
        "conn.tls.client.subject == 'CN=client,O=Example'",
        "conn.tls.client.subject.startsWith('CN=client,')",
        "conn.tls.client.issuer == 'CN=ca'",
        "conn.tls.client.subject in ['CN=other', 'CN=client,O=Example']",
        "size(conn.tls.client.subject) == 19",
        "conn.tls.client.subject + '' == conn.tls.client.subject.rfc4514",
        "string(conn.tls.client.issuer).contains('ca')",
        "conn.tls.client.subject.matches('^CN=[a-z]+,')",
        // As a map, in the same expression.
        "conn.tls.client.subject.common_name == 'client'",
        "'common_name' in conn.tls.client.subject",
        "conn.tls.client.subject['common_name'] == 'client'",
        "conn.tls.client.subject.exists(k, k == 'organization')",
        "has(conn.tls.client.subject.common_name)",
        "has(conn.tls.client.subject)",
        "conn.tls.client.subject.rfc4514 == 'CN=client,O=Example'",
    ] {
        let e = Expression::compile(source, Phase::TcpConnect)
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(e.matches(vars), Ok(true), "{source}");
    }
    // No certificate: the string is empty, as every identity field is.
    let absent = all
        .iter()
        .find(|v| verified.matches(v) == Ok(false))
        .expect("a sample without one");
    let e = Expression::compile("conn.tls.client.subject == ''", Phase::TcpConnect).unwrap();
    assert_eq!(e.matches(absent), Ok(true));
    // Templates read the string too.
    let t = Template::compile("${conn.tls.client.subject}", Phase::TcpConnect).unwrap();
    assert_eq!(t.render(vars).as_deref(), Ok("CN=client,O=Example"));
}

#[test]
fn every_served_certificate_field_loads() {
    // The load-time type check evaluates with no served certificate too: every field must
    // be there, empty, not only the names.
    for field in [
        "subject.common_name",
        "issuer.organization",
        "san.dns_names",
        "serial_number",
        "signature_algorithm",
        "validity.not_after",
        "fingerprint.sha256",
    ] {
        let source = format!("conn.tls.server.{field} == conn.tls.server.{field}");
        Expression::compile(&source, Phase::TcpConnect).unwrap_or_else(|e| panic!("{source}: {e}"));
    }
}

#[test]
fn refuses_type_errors_and_non_booleans() {
    let err = Expression::compile("conn.tls.version > 2", Phase::TcpConnect).expect_err("type");
    assert!(matches!(err, CompileError::Type { .. }), "{err:?}");
    let err = Expression::compile("conn.tls.version", Phase::TcpConnect).expect_err("string");
    assert_eq!(err, CompileError::NotBoolean { found: "a string" });
    assert!(err.to_string().contains("true or false"), "{err}");
    assert!(Expression::compile("conn.tls.version ==", Phase::TcpConnect).is_err());
    let err =
        Expression::compile("conn.tls.sni.matches('(')", Phase::TcpConnect).expect_err("bad regex");
    assert!(matches!(err, CompileError::BadRegex { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("invalid regular expression"),
        "{err}"
    );
    Expression::compile(
        "conn.tls.sni.matches('^[a-z]+\\\\.test$')",
        Phase::TcpConnect,
    )
    .expect("a valid regex compiles");
}

#[test]
fn ngrok_ip_macros_match_ranges() {
    let facts = TlsFacts {
        client_ip: std::net::IpAddr::from([10, 1, 2, 3]),
        ..connection()
    };
    let vars = Variables::for_connection(&facts, None);
    let eval = |source: &str| {
        Expression::compile(source, Phase::TcpConnect)
            .unwrap_or_else(|e| panic!("{source}: {e}"))
            .matches(&vars)
    };
    assert_eq!(eval("inCidrRange(conn.client_ip, '10.0.0.0/8')"), Ok(true));
    assert_eq!(
        eval("inCidrRange(conn.client_ip, '192.168.0.0/16')"),
        Ok(false)
    );
    assert_eq!(
        eval("inCidrRanges(conn.client_ip, ['192.168.0.0/16', '10.1.2.3'])"),
        Ok(true)
    );
    assert_eq!(eval("inCidrRanges(conn.client_ip, [])"), Ok(false));
    let err = Expression::compile("inCidrRange(conn.client_ip, '10.0.0/8')", Phase::TcpConnect)
        .expect_err("a bad literal range");
    assert!(
        matches!(&err, CompileError::BadCidr { range, function } if range == "10.0.0/8" && function == "inCidrRange"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a CIDR"), "{err}");
    let err = Expression::compile("inCidrRange(conn.client_ip, 8)", Phase::TcpConnect)
        .expect_err("a number is no range");
    assert!(matches!(err, CompileError::Type { .. }), "{err:?}");
}

#[test]
fn templates_interpolate() {
    let t = Template::compile(
        "cn=${conn.tls.client.subject.common_name};v=${conn.tls.version}",
        Phase::HttpRequest,
    )
    .expect("compiles");
    let facts = TlsFacts {
        version: crate::facts::TlsVersion::Tls12,
        cipher_suite: "x".into(),
        ..connection()
    };
    assert_eq!(
        t.render(&Variables::for_connection(&facts, None))
            .expect("renders"),
        "cn=;v=1.2"
    );
    assert!(Template::compile("${conn.nope}", Phase::HttpRequest).is_err());
    assert!(Template::compile("${conn.tls.version", Phase::HttpRequest).is_err());
    assert_eq!(
        Template::compile("plain", Phase::HttpRequest)
            .expect("ok")
            .as_literal(),
        Some("plain")
    );
}

#[test]
fn timestamps_take_utc_or_an_offset_and_a_named_zone_is_refused_at_load() {
    let facts = TlsFacts {
        cipher_suite: "x".into(),
        started: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        ..connection()
    };
    let vars = Variables::for_connection(&facts, None);
    let eval = |source: &str| {
        Expression::compile(source, Phase::TcpConnect)
            .unwrap_or_else(|e| panic!("{source}: {e}"))
            .matches(&vars)
    };
    // 1,700,000,000 s is 2023-11-14T22:13:20Z.
    assert_eq!(eval("conn.ts.start.getHours() == 22"), Ok(true));
    assert_eq!(eval("conn.ts.start.getHours('UTC') == 22"), Ok(true));
    assert_eq!(eval("conn.ts.start.getHours('+01:00') == 23"), Ok(true));
    assert_eq!(eval("conn.ts.start.getDayOfWeek('-05:30') == 2"), Ok(true));
    for zone in ["America/New_York", "Europe/Paris", "Etc/UTC", "utc"] {
        let source = format!("conn.ts.start.getHours('{zone}') == 1");
        let err = Expression::compile(&source, Phase::TcpConnect).expect_err(&source);
        assert!(
            matches!(&err, CompileError::NamedTimeZone { zone: z, function } if z == zone && function == "getHours"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("write \"UTC\" or an offset"),
            "{err}"
        );
    }
    // A zone that only arrives at run time cannot be checked at load: it fails the rule
    // (and so denies), as any run-time error does.
    let zone_from_sni = Expression::compile(
        "conn.ts.start.getHours(conn.tls.sni) == 1",
        Phase::TcpConnect,
    );
    assert!(zone_from_sni.is_ok(), "{zone_from_sni:?}");
}
