//! Deadlines and slots: a silent client cut at the ClientHello deadline, and silent sockets from
//! one address.

use super::*;

#[test]
fn a_client_that_sends_nothing_is_cut_at_the_client_hello_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    ca.server(&["idle.test"]).write(dir.path(), "server");
    let upstream = echo_upstream();
    let port = free_port();
    let policy = one_endpoint("idle.test", port, &upstream.url(), &[]);
    // The ClientHello deadline, not the (longer) handshake deadline, cuts a silent socket.
    let gate = start_gate(
        dir.path(),
        "deadline",
        &policy,
        &["--client-hello-timeout", "1s", "--handshake-timeout", "5s"],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    // EOF or a reset, either way the server hung up; a timeout here would be the failure.
    let result = stream.read(&mut buf);
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Ok(0))
            || matches!(&result, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut),
        "{result:?} after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "cut too late: {elapsed:?}"
    );
    gate.wait_for_log("client_hello_timeout", Duration::from_secs(5))
        .unwrap();
}

#[test]
fn silent_sockets_from_one_address_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    ca.server(&["slots.test"]).write(dir.path(), "server");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    let upstream = echo_upstream();
    let port = free_port();
    let policy = one_endpoint("slots.test", port, &upstream.url(), &[]);
    let gate = start_gate(
        dir.path(),
        "slots",
        &policy,
        &[
            "--max-connections",
            "4",
            "--max-connections-per-source",
            "2",
            "--client-hello-timeout",
            "4s",
            "--handshake-timeout",
            "4s",
        ],
    );
    // Two silent sockets from 127.0.0.1 take that address's share.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A third from the same address is closed at once, not queued behind them.
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let result = third.read(&mut buf);
    assert!(
        matches!(result, Ok(0)) || result.is_err() && started.elapsed() < Duration::from_secs(4),
        "{result:?} after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Another address is served while they wait.
    let other = Curl::https("slots.test", port, "/")
        .interface("127.0.0.2")
        .ca(&ca_crt)
        .run();
    assert_eq!(other.status, Some(200), "{other:?}\n{}", gate.log());
    gate.wait_for_log("source_connection_limit", Duration::from_secs(5))
        .unwrap();
    drop(held);
}
