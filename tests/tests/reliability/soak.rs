//! Soak: mixed load with memory and descriptors sampled.

use super::*;

// ---------------------------------------------------------------------------------------------
// Soak: mixed load, memory and descriptors sampled

fn soak(kind: &str) {
    let duration = scale().soak;
    raise_fd_limit(4096);
    let Bed {
        p,
        port,
        edge,
        _upstream,
    } = bed(kind, Verification::Request, &[]);
    let pid = edge.pid();
    assert_eq!(
        curl_alice(&p, port).run().status,
        Some(200),
        "{}",
        edge.log()
    );
    let (rss0, fds0) = (rss_kib(pid), open_fds(pid));
    let seconds = duration.as_secs().to_string();
    let target = format!("https://{HOST}:{port}/");
    let connect_to = format!("127.0.0.1:{port}");
    let h2load = tool("h2load");
    let spawn_load = |extra: &[&str]| {
        let mut cmd = Command::new(&h2load);
        cmd.args(["-D", &seconds, "--connect-to", &connect_to])
            .args(extra)
            .arg(&target);
        std::thread::spawn(move || run_bounded(cmd, &[], duration + Duration::from_secs(60)))
    };
    // Keep-alive HTTP/2 and HTTP/1.1, and new connections (a handshake per request).
    let loads = [
        spawn_load(&["-c", "4", "-m", "8"]),
        spawn_load(&["-c", "4", "--h1"]),
    ];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (mallory_crt, mallory_key) = Authority::root("Other CA")
            .client("mallory")
            .write(p.dir.path(), "mallory");
        let (stop, alice, mallory) = (
            stop.clone(),
            curl_alice(&p, port),
            curl_with(&p, port, &mallory_crt, &mallory_key),
        );
        std::thread::spawn(move || {
            let mut counts = [0u64; 4];
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                match i % 4 {
                    // A full handshake with a trusted certificate.
                    0 => {
                        let status = alice.run().status;
                        counts[0] += u64::from(status == Some(200));
                    }
                    // A certificate from a CA nobody trusts: admitted unverified under `request`.
                    1 => {
                        let status = mallory.run().status;
                        counts[1] += u64::from(status == Some(200));
                    }
                    // Hostile bytes where a ClientHello belongs.
                    2 => {
                        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                            let _ = s.write_all(b"\x16\x03\x01\xff\xffGARBAGE\r\n\r\n");
                            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut buf = [0u8; 64];
                            let _ = s.read(&mut buf);
                            counts[2] += 1;
                        }
                    }
                    // Plain HTTP at the TLS port.
                    _ => {
                        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut buf = [0u8; 64];
                            let _ = s.read(&mut buf);
                            counts[3] += 1;
                        }
                    }
                }
            }
            counts
        })
    };
    // Sample once a second.
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        samples.push((rss_kib(pid), open_fds(pid), client_sockets(pid, port)));
    }
    let results: Vec<_> = loads
        .into_iter()
        .map(|l| l.join().expect("h2load"))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let counts = churn.join().expect("churn");
    std::thread::sleep(Duration::from_secs(2));
    let (rss_end, fds_end) = (rss_kib(pid), open_fds(pid));
    let log = edge.log();

    let mut total = 0;
    for run in &results {
        let (ok, failed, errored, timeout, not_2xx) = h2load_summary(&run.stdout);
        assert!(
            ok > 0 && failed == 0 && errored == 0 && timeout == 0 && not_2xx == 0,
            "{kind}: load failed: {ok} ok, {failed} failed, {errored} errored, {timeout} timeout, \
             {not_2xx} not 2xx\n{}\n{}",
            run.stdout,
            not_access_lines(&log)
        );
        total += ok;
    }
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "{kind}: handshakes failed: {counts:?}\n{log}"
    );
    // Memory: the peak after the first quarter (warm caches, pools) bounds the rest; the
    // second half may not exceed the first half's peak by more than 20% + 8 MiB.
    let half = samples.len() / 2;
    let peak_first = samples[..half].iter().map(|s| s.0).max().unwrap_or(rss0);
    let peak_second = samples[half..].iter().map(|s| s.0).max().unwrap_or(rss0);
    assert!(
        peak_second <= peak_first + peak_first / 5 + 8 * 1024,
        "{kind}: RSS kept growing: first half peak {peak_first} KiB, second half {peak_second} KiB"
    );
    // Descriptors: no client connection outlives the load, and the rest is bounded by the
    // upstream pool, which keeps at most as many idle connections as requests were in flight at
    // once (4 × 8 + 4 + 1 here) until its idle timeout.
    let clients_peak = samples.iter().map(|s| s.2).max().unwrap_or(0);
    assert!(
        clients_peak > 0,
        "{kind}: no client connection was ever seen open"
    );
    let clients_end = client_sockets(pid, port);
    assert_eq!(
        clients_end, 0,
        "{kind}: {clients_end} client connections still open after the load\n{log}"
    );
    assert!(
        fds_end <= fds0 + 64,
        "{kind}: {fds_end} descriptors open after the load, {fds0} before"
    );
    assert!(!log.contains("panicked"), "{kind}: a panic\n{log}");
    if kind == "native" {
        let unexpected: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
            .collect();
        assert!(
            unexpected.is_empty(),
            "native: unexpected error lines:\n{}",
            unexpected.join("\n")
        );
    }
    let fds_peak = samples.iter().map(|s| s.1).max().unwrap_or(fds0);
    report(&format!(
        "{kind} | soak {} s: h2 keep-alive + h1 keep-alive ({total} requests, all 2xx), {} trusted and {} untrusted handshakes, {} garbage and {} plaintext connections | RSS {} → peak {} → {} MiB | fds {fds0} → peak {fds_peak} → {fds_end}, client connections peak {clients_peak} → 0 | no panic",
        duration.as_secs(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        rss0 / 1024,
        samples.iter().map(|s| s.0).max().unwrap_or(rss0) / 1024,
        rss_end / 1024
    ));
}

#[test]
fn native_soak_keeps_memory_and_descriptors_bounded() {
    let _serial = serial();
    soak("native");
}

#[test]
fn envoy_soak_keeps_memory_and_descriptors_bounded() {
    let _serial = serial();
    soak("envoy");
}
