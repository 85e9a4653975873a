//! The loader is total: whatever bytes it is given, it returns a config or an error.
//!
//! (cargo-fuzz needs a nightly toolchain; these property tests mutate a valid policy instead,
//! which reaches deep into validation where random text would stop at the YAML parser.)

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use proptest::prelude::*;
use support::{policy, Fixture};

fn base() -> String {
    policy(
        "app.example.com",
        "                min_version: \"1.2\"\n                mutual_tls_certificate_authorities: [ca.crt]\n",
        "        - expressions: [\"conn.tls.client.subject.common_name != 'alice'\"]\n          actions: [{type: deny}]\n      on_http_request:\n        - actions: [{type: add-headers, config: {headers: {x-cn: \"${conn.tls.client.subject.common_name}\"}}}]\n",
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mutated_policies_load_or_fail_cleanly(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let f = Fixture::new("app.example.com");
        let mut bytes = base().into_bytes();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = f.load(&text);
    }

    #[test]
    fn truncated_policies_load_or_fail_cleanly(cut in any::<prop::sample::Index>()) {
        let f = Fixture::new("app.example.com");
        let text = base();
        let mut end = cut.index(text.len());
        while !text.is_char_boundary(end) { end -= 1; }
        let _ = f.load(&text[..end]);
    }

    #[test]
    fn arbitrary_text_fails_cleanly(text in "\\PC{0,200}") {
        let f = Fixture::new("app.example.com");
        let _ = f.load(&text);
    }
}
