//! Connections held: many idle mTLS connections while newcomers are served, and a kept-alive
//! connection past the request deadlines.

use super::*;

// ---------------------------------------------------------------------------------------------
// Many idle mTLS connections

fn idle_connections_are_held(kind: &str) {
    let n = scale().connections;
    // Per process: the connections' ends here, and in the edge (which inherits the limit).
    raise_fd_limit(n as u64 + 512);
    let cap = (n + 100).to_string();
    let Bed {
        p,
        port,
        edge,
        _upstream,
    } = bed(
        kind,
        Verification::RequireAndVerify,
        &[
            "--idle-timeout",
            "10m",
            "--max-connections",
            &cap,
            "--max-connections-per-source",
            &cap,
        ],
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(
        curl_alice(&p, port).run().status,
        Some(200),
        "{}",
        edge.log()
    );
    let before = rss_kib(edge.pid());

    let rt = runtime();
    let tls = connector(&p);
    let started = Instant::now();
    let (held, failed) = rt.block_on(async {
        // 64 handshakes at a time: the point is holding them, not a connection storm.
        let gate = Arc::new(Semaphore::new(64));
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (gate, tls) = (gate.clone(), tls.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("semaphore");
                tokio::time::timeout(Duration::from_secs(30), open(addr, tls))
                    .await
                    .unwrap_or_else(|_| Err("no answer in 30 s".into()))
            }));
        }
        let mut held = Vec::with_capacity(n);
        let mut failed = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(s) => held.push(s),
                Err(e) => failed.push(e),
            }
        }
        (held, failed)
    });
    let opened_in = started.elapsed();
    assert!(
        failed.is_empty(),
        "{} of {n} connections failed, first: {:?}\n{}",
        failed.len(),
        failed.first(),
        edge.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(edge.pid());
    let fds = open_fds(edge.pid());

    // A newcomer is still served while all of them are held.
    assert_eq!(
        curl_alice(&p, port).run().status,
        Some(200),
        "a new connection was not served with {n} held\n{}",
        edge.log()
    );
    // Every held connection is still open and answers a second request.
    let mut held = held;
    let lost = rt.block_on(async {
        let gate = Arc::new(Semaphore::new(256));
        let mut tasks = Vec::with_capacity(n);
        for mut sender in held.drain(..) {
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("semaphore");
                let r = tokio::time::timeout(Duration::from_secs(30), get(&mut sender)).await;
                let outcome = match r {
                    Ok(Ok(200)) => None,
                    Ok(Ok(status)) => Some(format!("answered {status}")),
                    Ok(Err(e)) => Some(e),
                    Err(_) => Some("no answer in 30 s".to_owned()),
                };
                (outcome, sender)
            }));
        }
        let mut lost = std::collections::BTreeMap::<String, usize>::new();
        for t in tasks {
            let (outcome, sender) = t.await.expect("task");
            if let Some(why) = outcome {
                *lost.entry(why).or_default() += 1;
            }
            held.push(sender);
        }
        lost
    });
    assert!(
        lost.is_empty(),
        "held connections were dropped ({n} held): {lost:?}\n{}",
        not_access_lines(&edge.log())
    );
    let per_conn = (after.saturating_sub(before)) as f64 / n as f64;
    report(&format!(
        "{kind} | {n} idle mTLS connections held | opened in {:.1} s | RSS {} → {} MiB | {per_conn:.1} KiB per connection | {fds} fds | dropped 0 | newcomer served",
        opened_in.as_secs_f64(),
        before / 1024,
        after / 1024
    ));
    drop(held);
}

#[test]
fn native_holds_idle_mtls_connections_and_serves_newcomers() {
    let _serial = serial();
    idle_connections_are_held("native");
}

#[test]
fn envoy_holds_idle_mtls_connections_and_serves_newcomers() {
    let _serial = serial();
    idle_connections_are_held("envoy");
}

// ---------------------------------------------------------------------------------------------
// A kept-alive connection outlives the deadlines that bound a request's start

/// One connection, a request, a wait longer than the first-request and header deadlines (1 s
/// each) but shorter than the idle timeout, then a second request on the same connection.
/// The native host used to cut it at both: the first-request deadline fired whether or not a
/// request had come, and hyper's header timeout also ran while the connection waited.
fn kept_alive_connection_survives_the_request_deadlines(kind: &str) {
    let Bed {
        p,
        port,
        edge,
        _upstream,
    } = bed(
        kind,
        Verification::RequireAndVerify,
        &[
            "--first-request-timeout",
            "1s",
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "30s",
        ],
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let second = runtime().block_on(async {
        let mut sender = open(addr, connector(&p)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        get(&mut sender).await
    });
    assert_eq!(
        second,
        Ok(200),
        "{kind}: the kept-alive connection's second request\n{}",
        not_access_lines(&edge.log())
    );
    report(&format!(
        "{kind} | a kept-alive connection idle 3 s past 1 s first-request and header deadlines | second request 200"
    ));
}

#[test]
fn native_keeps_a_kept_alive_connection_past_the_request_deadlines() {
    let _serial = serial();
    kept_alive_connection_survives_the_request_deadlines("native");
}

#[test]
fn envoy_keeps_a_kept_alive_connection_past_the_request_deadlines() {
    let _serial = serial();
    kept_alive_connection_survives_the_request_deadlines("envoy");
}
