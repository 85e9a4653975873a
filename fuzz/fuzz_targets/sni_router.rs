//! SNI routing agrees with a naive reference: the first endpoint whose pattern is exactly the
//! normalized name, else the first whose `*.` wildcard covers it (one label, never more).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tlsgate_core::sni::{normalize, HostPattern, SniRouter};

#[derive(Debug, Arbitrary)]
struct Input {
    patterns: Vec<String>,
    names: Vec<String>,
}

fuzz_target!(|input: Input| {
    let patterns: Vec<HostPattern> = input
        .patterns
        .iter()
        .filter_map(|p| HostPattern::parse(p).ok())
        .collect();
    let router = SniRouter::new(
        patterns
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, p)| (p, i))
            .collect(),
    );
    for name in &input.names {
        let n = normalize(name);
        assert_eq!(normalize(&n), n, "normalize is idempotent");
        let exact = patterns
            .iter()
            .position(|p| matches!(p, HostPattern::Exact(h) if *h == n));
        let naive = exact.or_else(|| {
            patterns
                .iter()
                .position(|p| matches!(p, HostPattern::Wildcard(_)) && p.matches(&n))
        });
        assert_eq!(router.route(name).copied(), naive, "name {name:?}");
    }
});
