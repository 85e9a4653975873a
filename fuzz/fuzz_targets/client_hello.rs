//! Bytes arriving at the native host's TLS port: read as a ClientHello by rustls' Acceptor (as
//! `tlsgate run` does), routed by SNI through the policy, then handed to the endpoint's real
//! `ServerConfig` (built by the native host's `ServerTls`). Nothing may panic; a connection that
//! completes yields facts. Its JA4 fingerprint is computed from the same bytes.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls::server::Acceptor;
use tlsgate::tls::ServerTls;
use tlsgate_core::Policy;

mod common;

struct Server {
    policy: Policy,
    tls: Vec<ServerTls>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let path = common::fixture().dir.join("policy.yaml");
        std::fs::write(&path, common::policy_text()).expect("write the policy");
        let config = tlsgate_core::Config::load_files(
            &[path],
            tlsgate_core::KeyMode::Load(&tlsgate::keys::RustlsKeyCheck),
            tlsgate_core::Deployment::none(),
        )
        .expect("the fixture policy loads");
        let policy = Policy::new(config);
        let provider = tlsgate::tls::provider();
        let tls = policy
            .endpoints()
            .iter()
            .map(|e| ServerTls::new(e, &provider).expect("server TLS"))
            .collect();
        Server { policy, tls }
    })
}

fuzz_target!(|data: &[u8]| {
    // The native host's JA4 of the same bytes (core::ja4): never a panic, and always the
    // fingerprint's shape, `t13d1516h2_8daaf6152771_b186095e22b6`.
    if let Some(ja4) = tlsgate_core::ja4::from_records(data) {
        let parts: Vec<&str> = ja4.split('_').collect();
        assert!(
            matches!(parts.as_slice(), [a, b, c] if a.len() == 10 && b.len() == 12 && c.len() == 12)
                && ja4.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{ja4}"
        );
    }
    let server = server();
    let mut acceptor = Acceptor::default();
    let mut input = data;
    while !input.is_empty() {
        match acceptor.read_tls(&mut input) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let accepted = match acceptor.accept() {
            Ok(Some(accepted)) => accepted,
            Ok(None) => continue,
            Err((_, mut alert)) => {
                let _ = alert.write_all(&mut Vec::new());
                return;
            }
        };
        let sni = accepted
            .client_hello()
            .server_name()
            .map(tlsgate_core::sni::normalize);
        let Some(index) = server.policy.listeners()[0].route(sni.as_deref()) else {
            return;
        };
        let config = Arc::clone(&server.tls[index].config);
        let Ok(mut conn) = accepted.into_connection(config) else {
            return;
        };
        let mut out = Vec::new();
        let _ = conn.write_tls(&mut out);
        while !input.is_empty() {
            match conn.read_tls(&mut input) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if conn.process_new_packets().is_err() {
                break;
            }
            let _ = conn.write_tls(&mut out);
        }
        if !conn.is_handshaking() {
            let peer = "127.0.0.1:50000".parse().expect("address");
            let local = "127.0.0.1:8443".parse().expect("address");
            let _ = server.tls[index].facts(&conn, (peer, local), std::time::UNIX_EPOCH);
        }
        return;
    }
});
