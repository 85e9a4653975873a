//! Self-checks of the harness, with real curl and openssl but nothing from tlsgate.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::*;

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

#[test]
fn free_port_is_bindable_on_loopback() {
    let port = free_port();
    assert_ne!(port, 0);
    TcpListener::bind(localhost(port)).unwrap();
}

#[test]
fn free_ports_are_never_ones_the_kernel_hands_out_and_never_repeat() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let bounds: Vec<u16> = range
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    assert!(
        ports.iter().all(|&p| p < bounds[0] || p > bounds[1]),
        "{ports:?} inside the ephemeral range {bounds:?}"
    );
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ports.len(),
        "a port handed out twice: {ports:?}"
    );
}

#[test]
fn wait_port_sees_a_listener_and_gives_up_on_a_closed_port() {
    let listener = TcpListener::bind(localhost(0)).unwrap();
    wait_port(listener.local_addr().unwrap(), Duration::from_secs(1)).unwrap();

    let closed = localhost(free_port());
    let started = Instant::now();
    let err = wait_port(closed, Duration::from_millis(300)).unwrap_err();
    assert!(err.contains(&closed.to_string()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn proc_captures_both_streams_and_receives_signals() {
    // Python, not a shell trap: a POSIX shell cannot trap a signal that was ignored when it
    // started, and under `nohup` (or a CI runner that ignores SIGHUP) every child inherits
    // SIGHUP ignored; that, not load, is why the shell version failed in nohup'd runs.
    let mut trapper = Command::new("python3");
    trapper.args([
        "-c",
        "import signal, sys, time\n\
         signal.signal(signal.SIGHUP, lambda *_: print('got-hup', flush=True))\n\
         print('ready', flush=True)\n\
         print('oops', file=sys.stderr, flush=True)\n\
         while True: time.sleep(0.05)\n",
    ]);
    let mut proc = Proc::spawn("trapper", trapper);
    proc.wait_for_log("ready", Duration::from_secs(5)).unwrap();
    proc.wait_for_log("oops", Duration::from_secs(5)).unwrap();
    let mark = proc.log_len();
    proc.signal(Signal::Hup).unwrap();
    proc.wait_for_log_after(mark, "got-hup", Duration::from_secs(10))
        .unwrap();
    assert!(proc.try_exit().is_none());

    let err = proc
        .wait_for_log("never printed", Duration::from_millis(100))
        .unwrap_err();
    assert!(err.contains("ready") && err.contains("oops"), "{err}");

    let status = proc.stop().unwrap();
    assert!(!status.success());
    assert!(proc.signal(Signal::Hup).is_err(), "the process is gone");
}

#[test]
fn proc_reports_an_early_exit_instead_of_waiting() {
    let mut proc = Proc::spawn("quitter", sh("echo bye; exit 3"));
    let started = Instant::now();
    let err = proc
        .wait_for_log("never printed", Duration::from_secs(10))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("exited") && err.contains("bye"), "{err}");
    assert_eq!(
        proc.wait_exit(Duration::from_secs(1)).unwrap().code(),
        Some(3)
    );
}

#[test]
fn proc_escalates_to_sigkill_when_sigterm_is_ignored() {
    let proc = Proc::spawn(
        "stubborn",
        sh("trap '' TERM; echo up; while :; do sleep 0.05; done"),
    );
    proc.wait_for_log("up", Duration::from_secs(5)).unwrap();
    let pid = proc.id();
    let started = Instant::now();
    drop(proc);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    let alive = Command::new("kill")
        .args(["-s", "0", &pid.to_string()])
        .output()
        .unwrap();
    assert!(!alive.status.success(), "pid {pid} still exists");
}

#[test]
fn run_bounded_kills_at_the_deadline() {
    let started = Instant::now();
    let run = run_bounded(sh("sleep 10"), b"", Duration::from_millis(200));
    assert!(run.timed_out);
    assert_eq!(run.exit_code, -1);
    assert!(started.elapsed() < Duration::from_secs(3));

    let run = run_bounded(
        sh("cat; echo err >&2; exit 4"),
        b"hello",
        Duration::from_secs(5),
    );
    assert_eq!(
        (run.exit_code, run.stdout.as_str(), run.stderr.as_str()),
        (4, "hello", "err\n")
    );
}

#[test]
fn echo_upstream_reports_what_curl_sent() {
    let upstream = echo_upstream();
    let url = format!("{}/path?q=1", upstream.url());
    let res = curl(&["-H", "X-Test: one", "-H", "X-Test: two", &url]);
    assert_eq!(res.status, Some(200), "{res:?}");
    assert_eq!(res.exit_code, 0);
    assert_eq!(res.header("Content-Type"), Some("application/json"));
    let echoed = res.json();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/path?q=1");
    assert_eq!(echoed["headers"]["x-test"], "one, two");
    assert_eq!(echoed["headers"]["host"], upstream.addr().to_string());

    let res = curl(&["--data-binary", "payload", &upstream.url()]);
    assert_eq!(res.json()["body"], "payload");
    let res = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "chunky",
        &upstream.url(),
    ]);
    assert_eq!(res.json()["body"], "chunky", "{res:?}");

    let requests = upstream
        .wait_for_requests(3, Duration::from_secs(1))
        .unwrap();
    assert_eq!(requests[0].header("X-TEST").as_deref(), Some("one, two"));
    assert_eq!(requests[1].method, "POST");
    assert_eq!(requests[2].body, b"chunky");
}

#[test]
fn echo_upstream_keeps_connections_alive() {
    let upstream = echo_upstream();
    let (a, b) = (
        format!("{}/a", upstream.url()),
        format!("{}/b", upstream.url()),
    );
    // -v: curl says on stderr when it reuses the connection.
    let run = Curl::new(a).then_url(b).arg("-v").run();
    assert_eq!(run.exit_code, 0, "{run:?}");
    assert!(
        run.stderr.contains("Re-using existing connection")
            || run.stderr.contains("Reusing existing"),
        "{}",
        run.stderr
    );
    let paths: Vec<_> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/a", "/b"]);
}

#[test]
fn the_curl_builder_sends_headers_and_reports_status_version_and_the_last_response() {
    let upstream = echo_upstream();
    let res = Curl::new(format!("{}/first", upstream.url()))
        .header("x-test: built")
        .http1_1()
        .run();
    assert_eq!(res.status, Some(200), "{res:?}");
    assert_eq!(res.http_version.as_deref(), Some("1.1"), "{res:?}");
    assert_eq!(res.json()["path"], "/first", "{res:?}");
    assert_eq!(res.json()["headers"]["x-test"], "built", "{res:?}");

    // Two URLs on one connection: both arrive, the result is the last response's.
    let two = Curl::new(format!("{}/a", upstream.url()))
        .then_url(format!("{}/b", upstream.url()))
        .run();
    assert_eq!((two.exit_code, two.status), (0, Some(200)), "{two:?}");
    let paths: Vec<_> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/first", "/a", "/b"]);
}

#[test]
fn curl_reports_a_refused_connection_without_a_status() {
    let res = curl(&[&format!("http://127.0.0.1:{}/", free_port())]);
    assert_eq!(res.status, None);
    assert_eq!(res.http_version, None);
    assert_eq!(res.exit_code, 7, "{res:?}");
    assert!(!res.stderr.is_empty());
}

#[test]
fn s_client_fails_fast_against_a_closed_port() {
    let started = Instant::now();
    let (code, _stdout, stderr) =
        openssl_s_client(&["-connect", &format!("127.0.0.1:{}", free_port())], b"");
    assert_ne!(code, 0, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn tools_are_found_by_absolute_path() {
    for name in ["curl", "openssl"] {
        let path = tool(name);
        assert!(path.is_absolute(), "{}", path.display());
    }
}

#[test]
#[should_panic(expected = "run `make setup`")]
fn a_missing_tool_fails_with_the_make_target() {
    tool("tlsgate-no-such-tool");
}

#[test]
fn repo_root_is_the_workspace() {
    assert!(repo_root().join("Cargo.toml").is_file());
    assert!(repo_root().join("tests").join("Cargo.toml").is_file());
}
