//! The proxy-wasm filter's decoding of Envoy's attributes: any bytes decode or are refused;
//! percent-decoding inverts core's percent-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlsgate_filter::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::peer_certificate_der(data);
    let _ = decode::boolean(data);
    let _ = decode::socket_addr(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode::endpoint_index(text);
        let encoded = tlsgate_core::encoding::url_encode(text);
        assert_eq!(
            decode::percent_decode(&encoded).as_deref(),
            Ok(text.as_bytes())
        );
    }
});
