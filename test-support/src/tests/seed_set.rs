//! The seed document's certificate set and its openssl commands.

use super::*;

#[test]
fn seed_style_set_is_coherent() {
    let dir = tempfile::tempdir().unwrap();
    let set = write_seed_style_set(dir.path(), "terminate-tls-example.ngrok.app");
    for (path, name) in [
        (&set.ca_cert, "ca.crt"),
        (&set.ca_key, "ca.key"),
        (&set.server_cert, "server.crt"),
        (&set.server_key, "server.key"),
        (&set.client_cert, "client.crt"),
        (&set.client_key, "client.key"),
    ] {
        assert_eq!(*path, dir.path().join(name));
        assert!(path.is_file(), "{name}");
    }
    let ca = std::fs::read(&set.ca_cert).unwrap();
    let ca = pems(std::str::from_utf8(&ca).unwrap());
    assert_eq!(ca.len(), 1);
    assert_eq!(cn(&parse(&ca[0])), "ExampleCA");
    let server = parse(&set.server.cert_der);
    assert_eq!(sans(&server), ["DNS:terminate-tls-example.ngrok.app"]);
    assert_eq!(issuer_cn(&server), "ExampleCA");
    let client = parse(&set.client.cert_der);
    assert_eq!(cn(&client), "ExampleClient");
    assert_eq!(eku(&client), Some((false, true)));
}

#[test]
fn seed_openssl_certs_reproduce_the_seed_document() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    let read = |name: &str| {
        let pem = std::fs::read_to_string(dir.path().join(name)).unwrap();
        pems(&pem).remove(0)
    };

    let ca_der = read("ca.crt");
    let ca = parse(&ca_der);
    assert_eq!(cn(&ca), "ExampleCA");
    assert_eq!(ca_flag(&ca), Some(true));

    let server_der = read("server.crt");
    let server = parse(&server_der);
    assert_eq!(server.version(), X509Version::V1);
    assert!(server.extensions().is_empty());
    assert_eq!(cn(&server), SEED_SERVER_NAME);
    assert_eq!(issuer_cn(&server), "ExampleCA");
    assert_eq!(days_from_now(&server), (0, 365));

    let client_der = read("client.crt");
    let client = parse(&client_der);
    assert_eq!(client.version(), X509Version::V3);
    assert_eq!(cn(&client), "ExampleClient");
    assert_eq!(eku(&client), Some((false, true)));

    for name in [
        "ca.key",
        "server.key",
        "client.key",
        "server.csr",
        "client.csr",
        "ca.srl",
    ] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
    let server_key = std::fs::read_to_string(dir.path().join("server.key")).unwrap();
    assert_eq!(spki_of_key(&server_key), server.public_key().raw);
}

#[test]
fn seed_openssl_certs_name_openssl_and_make_setup_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let err = seed_openssl_certs_with(dir.path(), empty.path().as_os_str()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let message = err.to_string();
    assert!(message.contains("openssl"), "{message}");
    assert!(message.contains("run `make setup`"), "{message}");
}

#[test]
fn seed_commands_are_the_eight_of_the_document() {
    assert_eq!(SEED_OPENSSL_COMMANDS.len(), 8);
    assert!(SEED_OPENSSL_COMMANDS
        .iter()
        .all(|c| c.starts_with("openssl ")));
    assert!(
        SEED_OPENSSL_COMMANDS[7].ends_with(r#"-extfile <(printf "extendedKeyUsage = clientAuth")"#)
    );
}
