//! Slow and abusive clients: slow clients cut at their deadlines while others are served, and
//! HTTP/2 control-frame floods bounded.

use super::*;

// ---------------------------------------------------------------------------------------------
// Slow clients

/// Opens a TLS connection with alice's certificate offering `alpn` (std, blocking), for
/// byte-level trickling.
fn tls_stream(
    p: &Pki,
    port: u16,
    alpn: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut config = client_config(p);
    config.alpn_protocols = vec![alpn.to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(HOST).expect("name"))
            .expect("client connection");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    rustls::StreamOwned::new(conn, tcp)
}

/// Writes `chunks` one every 300 ms until the peer closes, `cut` says what it sent ends the
/// exchange, or `give_up` passes; returns when the exchange ended (None if it never did).
fn trickle<S: Read + Write>(
    stream: &mut S,
    chunks: impl Iterator<Item = Vec<u8>>,
    cut: impl Fn(&[u8]) -> bool,
    give_up: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut received = Vec::new();
    for chunk in chunks {
        if start.elapsed() > give_up {
            return None;
        }
        if stream
            .write_all(&chunk)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return Some(start.elapsed());
        }
        // Read what the server sends (SETTINGS, a reset, a GOAWAY); EOF or an error ends it.
        // The read waits up to 300 ms (the stream's timeout); pace the rest so a server that
        // answers every chunk (PING ACKs) does not speed the trickle up.
        let sent = Instant::now();
        let read = stream.read(&mut buf);
        if let Some(rest) = Duration::from_millis(300).checked_sub(sent.elapsed()) {
            std::thread::sleep(rest);
        }
        match read {
            Ok(0) => return Some(start.elapsed()),
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                if cut(&received) {
                    return Some(start.elapsed());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Whether the server's HTTP/2 frames reset stream 1 or announce the connection's end.
fn h2_stream_cut(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let kind = bytes[3];
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        if kind == 0x7 || (kind == 0x3 && stream == 1) {
            return true;
        }
        bytes = bytes.get(9 + len..).unwrap_or_default();
    }
    false
}

/// An HTTP/2 frame header + payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET for `/` to `HOST` as an HPACK block with no Huffman coding and no dynamic table.
fn h2_get_headers() -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84]; // :method GET, :scheme https, :path /
    block.push(0x01); // :authority, literal without indexing, name index 1
    block.push(HOST.len() as u8);
    block.extend_from_slice(HOST.as_bytes());
    block
}

/// Four slow clients against one edge, each cut at its deadline, while a fast client's
/// requests keep completing: a ClientHello sent a byte at a time, HTTP/1.1 headers sent a line
/// at a time, an HTTP/2 HEADERS frame sent a few bytes at a time, and an HTTP/2 GET that grants
/// no flow-control window.
fn slow_clients_are_cut(kind: &str) {
    let Bed {
        p,
        port,
        edge,
        _upstream,
    } = bed(
        kind,
        Verification::RequireAndVerify,
        &[
            "--client-hello-timeout",
            "2s",
            "--handshake-timeout",
            "3s",
            "--header-timeout",
            "2s",
            "--first-request-timeout",
            "2s",
            // A connection that never completes a stream is also bounded by the idle timeout
            // (Envoy: a GOAWAY, then the close after the drain time).
            "--idle-timeout",
            "4s",
            "--drain-timeout",
            "2s",
            "--stream-idle-timeout",
            "2s",
        ],
    );
    // The fast client: a new mTLS connection and request every 200 ms, for the whole test.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fast = {
        let (stop, alice) = (stop.clone(), curl_alice(&p, port));
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut failures = Vec::new();
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let start = Instant::now();
                let status = alice.run().status;
                slowest = slowest.max(start.elapsed());
                count += 1;
                if status != Some(200) {
                    failures.push(format!("{status:?}"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (count, slowest, failures)
        })
    };

    // 1. A ClientHello a byte at a time (the record header first): cut at the 2 s deadline.
    let hello = {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut record = vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        record.extend(std::iter::repeat_n(0x2a, 500));
        trickle(
            &mut tcp,
            record.into_iter().map(|b| vec![b]),
            |_| false,
            Duration::from_secs(20),
        )
    };
    // 2. HTTP/1.1 headers a line at a time after a complete handshake: cut at 2 s.
    let headers = {
        let mut s = tls_stream(&p, port, b"http/1.1");
        let mut lines = vec![format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n").into_bytes()];
        lines.extend((0..200).map(|i| format!("x-slow-{i}: 1\r\n").into_bytes()));
        // An answer (408, 400) ends it as surely as a close.
        let answered = |r: &[u8]| r.starts_with(b"HTTP/1.1 ");
        trickle(&mut s, lines.into_iter(), answered, Duration::from_secs(20))
    };
    // 3. HTTP/2: the preface and SETTINGS, then a HEADERS frame a byte at a time.
    let h2 = {
        let mut s = tls_stream(&p, port, b"h2");
        let mut chunks = vec![[
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            h2_frame(0x4, 0, 0, &[]),
        ]
        .concat()];
        // HEADERS without END_HEADERS, then CONTINUATION frames that never end it.
        let mut frames = h2_frame(0x1, 0, 1, &h2_get_headers());
        for i in 0..200u8 {
            frames.extend(h2_frame(
                0x9,
                0,
                1,
                &[0x40, 0x01, b'x', 0x01, b'0' + i % 10],
            ));
        }
        chunks.extend(frames.chunks(3).map(<[u8]>::to_vec));
        // The server's connection preface is a SETTINGS frame: its bytes parse as frames.
        trickle(
            &mut s,
            chunks.into_iter(),
            h2_stream_cut,
            Duration::from_secs(30),
        )
    };
    // 4. HTTP/2 with a zero flow-control window: a complete GET whose response can never be
    //    sent (the client grants no window); PINGs keep the connection busy but not the stream.
    let zero_window = {
        let mut s = tls_stream(&p, port, b"h2");
        let mut chunks = vec![[
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            // SETTINGS_INITIAL_WINDOW_SIZE = 0
            h2_frame(0x4, 0, 0, &[0x00, 0x04, 0, 0, 0, 0]),
            h2_frame(0x4, 0x1, 0, &[]), // ACK of the server's SETTINGS
            h2_frame(0x1, 0x5, 1, &h2_get_headers()), // END_STREAM | END_HEADERS
        ]
        .concat()];
        chunks.extend((0..100u8).map(|i| h2_frame(0x6, 0, 0, &[i; 8])));
        trickle(
            &mut s,
            chunks.into_iter(),
            h2_stream_cut,
            Duration::from_secs(30),
        )
    };

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (count, slowest, failures) = fast.join().expect("fast client");
    let log = edge.log();
    let hello = hello.unwrap_or_else(|| panic!("a trickled ClientHello was never cut\n{log}"));
    let headers =
        headers.unwrap_or_else(|| panic!("trickled HTTP/1.1 headers were never cut\n{log}"));
    let h2 = h2.unwrap_or_else(|| panic!("a trickled HTTP/2 HEADERS was never cut\n{log}"));
    let zero_window = zero_window
        .unwrap_or_else(|| panic!("an HTTP/2 stream with no window was never cut\n{log}"));
    // Deadlines of 2 s (3 s for the handshake as a whole), with slack for a loaded machine.
    for (what, took, limit) in [
        ("ClientHello", hello, 8),
        ("HTTP/1.1 headers", headers, 8),
        ("HTTP/2 HEADERS", h2, 12),
        ("HTTP/2 zero-window stream", zero_window, 12),
    ] {
        assert!(
            took < Duration::from_secs(limit),
            "the slow {what} was cut only after {took:?}\n{log}"
        );
    }
    assert!(
        failures.is_empty() && count > 0,
        "the fast client failed while slow ones were connected ({count} requests): {failures:?}\n{log}"
    );
    report(&format!(
        "{kind} | slow clients | ClientHello cut after {:.1} s, HTTP/1.1 headers after {:.1} s, HTTP/2 HEADERS after {:.1} s, an HTTP/2 stream with no window after {:.1} s (deadlines 2 s; idle 4 s + drain 2 s) | fast client: {count} requests, all 200, slowest {:.0} ms",
        hello.as_secs_f64(),
        headers.as_secs_f64(),
        h2.as_secs_f64(),
        zero_window.as_secs_f64(),
        slowest.as_secs_f64() * 1000.0
    ));
}

#[test]
fn native_cuts_slow_clients_at_their_deadlines() {
    let _serial = serial();
    slow_clients_are_cut("native");
}

#[test]
fn envoy_cuts_slow_clients_at_their_deadlines() {
    let _serial = serial();
    slow_clients_are_cut("envoy");
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 control-frame floods

/// A client that floods PING frames (each asks for an ACK) or SETTINGS frames (each asks for
/// one too) and never reads the answers is closed (Envoy: `max_outbound_control_frames`;
/// native: `io::ControlFrames`), without growing the edge's memory, and a new client is served
/// meanwhile.
fn control_frame_floods_are_bounded(kind: &str) {
    let _serial = serial();
    let Bed {
        p,
        port,
        edge,
        _upstream,
    } = bed(kind, Verification::RequireAndVerify, &[]);
    let pid = edge.pid();
    assert_eq!(
        curl_alice(&p, port).run().status,
        Some(200),
        "{kind}: the edge serves"
    );
    let before = rss_kib(pid);
    let ping = h2_frame(0x6, 0, 0, &[7; 8]);
    let settings = h2_frame(0x4, 0, 0, &[]);
    for (name, frame) in [("PING", ping), ("SETTINGS", settings)] {
        let mut stream = tls_stream(&p, port, b"h2");
        stream
            .sock
            .set_write_timeout(Some(Duration::from_secs(2)))
            .expect("write timeout");
        let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        opening.extend(h2_frame(0x4, 0, 0, &[]));
        stream.write_all(&opening).expect("preface");
        let batch = frame.repeat(1000);
        let start = Instant::now();
        let mut sent = 0u64;
        let stopped = loop {
            if sent >= 2_000_000 || start.elapsed() > Duration::from_secs(10) {
                break "the flood ran its course";
            }
            match stream.write_all(&batch).and_then(|()| stream.flush()) {
                Ok(()) => sent += 1000,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break "the edge stopped reading";
                }
                Err(_) => break "the edge closed the connection",
            }
        };
        // The flooding connection is still open (or just closed): others are served.
        assert_eq!(
            curl_alice(&p, port).run().status,
            Some(200),
            "{kind}: a new client during a {name} flood"
        );
        let rss = rss_kib(pid);
        report(&format!(
            "{kind} | {name} flood | {sent} frames sent in {:.1}s, {stopped} | RSS {before} -> {rss} KiB",
            start.elapsed().as_secs_f64()
        ));
        assert!(
            rss < before + 64 * 1024,
            "{kind}: a {name} flood of {sent} frames grew the edge from {before} to {rss} KiB"
        );
        assert_eq!(
            stopped,
            "the edge closed the connection",
            "{kind}: a {name} flood ({sent} frames in {:?}) must be cut, not just slowed",
            start.elapsed()
        );
        drop(stream);
    }
}

#[test]
fn native_bounds_http2_control_frame_floods() {
    control_frame_floods_are_bounded("native");
}

#[test]
fn envoy_bounds_http2_control_frame_floods() {
    control_frame_floods_are_bounded("envoy");
}
