//! PROXY protocol headers, as a host reads them: asking only for the bytes `parse` needs, it
//! never reads past the header (so the ClientHello behind it stays unread), always makes
//! progress, and a header it accepts says what `encode` would write for those addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlsgate_core::proxy_protocol::{encode, parse, Progress, Version, V1_MAX, V2_MAX};

fuzz_target!(|bytes: &[u8]| {
    let mut have = 0;
    loop {
        match parse(&bytes[..have]) {
            Ok(Progress::Need(n)) => {
                assert!(n > have, "no progress at {have}");
                assert!(n <= V2_MAX.max(V1_MAX), "asks for {n} bytes");
                if n > bytes.len() {
                    return;
                }
                have = n;
            }
            Ok(Progress::Done { header, length }) => {
                assert_eq!(length, have, "reads exactly the header");
                if let Some(a) = header.addresses {
                    // What we parse, we can say again, and read back the same.
                    let again = encode(header.version, a.source, a.destination, &[]);
                    match parse(&again) {
                        Ok(Progress::Done { header: h, length }) => {
                            assert_eq!(length, again.len());
                            let b = h.addresses.expect("addresses");
                            if header.version == Version::V2
                                || a.source.is_ipv4() == a.destination.is_ipv4()
                            {
                                assert_eq!(b.source.port(), a.source.port());
                                assert_eq!(b.destination.port(), a.destination.port());
                            }
                        }
                        other => panic!("re-encoded header does not parse: {other:?}"),
                    }
                }
                return;
            }
            Err(_) => return,
        }
    }
});
