//! What can be checked without a connection: WebSocket's accept key, bodies that hold or cut
//! their exchange, and the headers the upstream receives.

use super::*;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};

use super::body::Held;
use super::websocket::websocket_accept;
use crate::io::Activity;

/// RFC 6455 section 1.3's own example.
#[test]
fn the_websocket_accept_proves_the_clients_key() {
    let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(
        websocket_accept(&key),
        Some(HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
    );
}

#[tokio::test]
async fn the_exchange_stays_open_until_the_response_body_is_sent() {
    let activity = Activity::new();
    let body =
        ProxyBody::new(Either::Right(Full::new(Bytes::from_static(b"hello")))).holding(Held {
            exchange: activity.request(),
            _upstream_slot: None,
        });
    assert_eq!(activity.open_exchanges(), 1);
    let collected = body.collect().await.map(|c| c.to_bytes());
    assert_eq!(collected.ok(), Some(Bytes::from_static(b"hello")));
    assert_eq!(activity.open_exchanges(), 0);
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

/// A body that never yields a frame.
struct Stalled;

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_moving_is_cut_at_the_stream_idle_deadline() {
    let activity = Activity::new();
    let body = Watched::new(Stalled)
        .idle_after(Duration::from_secs(30))
        .holding(Held {
            exchange: activity.request(),
            _upstream_slot: None,
        });
    let started = tokio::time::Instant::now();
    let result = body.collect().await;
    let error = result.expect_err("cut");
    assert!(error.is::<StreamIdle>(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(activity.open_exchanges(), 0, "the exchange is released");
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
