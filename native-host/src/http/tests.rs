//! What can be checked without a connection: WebSocket's accept key and the headers the
//! upstream receives (bodies that hold or cut their exchange: `crate::watched`).

use super::*;

use super::websocket::websocket_accept;

/// RFC 6455 section 1.3's own example.
#[test]
fn the_websocket_accept_proves_the_clients_key() {
    let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(
        websocket_accept(&key),
        Some(HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
    );
}

/// What `tlsgate eval` shows the upstream receives (core's list) is what this host sends.
#[test]
fn upstream_headers_match_cores_list_that_eval_shows() {
    let client: Vec<(String, String)> = [
        ("Host", "app.test"),
        ("Connection", "keep-alive, X-Hop"),
        ("x-hop", "gone"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("x_forwarded_client_cert", "forged"),
        ("x-secret", "removed by policy"),
        ("x-client-cn", "admin"),
        ("Accept", "*/*"),
        ("accept", "text/plain"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    let forward = Forward {
        target: "/".into(),
        set_headers: vec![
            ("x-forwarded-for".into(), "127.0.0.1".into()),
            ("x-client-cn".into(), "alice".into()),
        ],
        remove_headers: vec!["x-secret".into()],
        authority: "upstream.test".into(),
    };
    for h2 in [false, true] {
        let mut map = HeaderMap::new();
        for (n, v) in &client {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        upstream_headers(&mut map, &forward, h2, false).unwrap();
        let mut ours: Vec<(String, String)> = map
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let mut cores = tlsgate_core::request::upstream_headers(&client, &forward, h2).unwrap();
        ours.sort();
        cores.sort();
        assert_eq!(ours, cores, "h2 = {h2}");
    }
}

#[test]
fn hop_by_hop_names_are_cores_list() {
    let names = HOP_BY_HOP;
    let ours: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
    assert_eq!(ours, tlsgate_core::request::HOP_BY_HOP);
}

#[test]
fn header_names_are_parsed_once_and_given_back_as_parsed() {
    for _ in 0..2 {
        assert_eq!(
            super::header_name("x-forwarded-for").unwrap().as_str(),
            "x-forwarded-for"
        );
        assert_eq!(
            super::header_name("X-Client-CN").unwrap().as_str(),
            "x-client-cn"
        );
        assert_eq!(super::header_name("host").unwrap(), http::header::HOST);
        assert!(super::header_name("bad name").is_err());
        assert!(super::header_name("").is_err());
    }
    // More names than the cache keeps are still parsed right.
    for i in 0..100 {
        let name = format!("x-n{i}");
        assert_eq!(super::header_name(&name).unwrap().as_str(), name);
    }
}
