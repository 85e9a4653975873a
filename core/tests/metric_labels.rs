//! One vocabulary for both hosts' metrics: the filter's Envoy stat names carry the native
//! host's metric names and labels, and the stats tags the generator writes take them back out
//! exactly (what Envoy does with them is checked against Envoy by the e2e `metrics_parity`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tlsgate_core::policy::{envoy_stat_name, envoy_stats_tags, Counter};

/// What Envoy's regex tag extractor does: for each tag, the first capture group is cut from
/// the name and the second is the value.
fn extract(mut name: String) -> (String, Vec<(String, String)>) {
    let mut tags = Vec::new();
    for (tag, regex) in envoy_stats_tags() {
        let regex = regex::Regex::new(&regex).unwrap();
        let Some(caps) = regex.captures(&name) else {
            continue;
        };
        let (whole, value) = (caps.get(1).unwrap(), caps.get(2).unwrap());
        tags.push((tag.to_owned(), value.as_str().to_owned()));
        name.replace_range(whole.range(), "");
    }
    (name, tags)
}

#[test]
fn the_stats_tags_give_back_the_native_name_and_labels() {
    for (counter, values) in [
        (
            Counter::Connections,
            &["https://*.app.example.com:8443", "allow", "-"][..],
        ),
        (
            Counter::HttpRequests,
            &["tls://[::1]:9000", "deny", "policy_deny"][..],
        ),
        (Counter::ClientOcspChecks, &["https://a.test", "good"][..]),
    ] {
        let (name, tags) = extract(envoy_stat_name(counter, values));
        assert_eq!(name, counter.prometheus_name());
        let mut expected: Vec<(String, String)> = counter
            .labels()
            .iter()
            .zip(values)
            .map(|(l, v)| ((*l).to_owned(), (*v).to_owned()))
            .collect();
        let mut tags = tags;
        tags.sort();
        expected.sort();
        assert_eq!(tags, expected);
    }
}

#[test]
fn a_value_cannot_end_its_tag_early() {
    let (name, tags) = extract(envoy_stat_name(Counter::ClientOcspChecks, &["a;.;b", "x"]));
    assert_eq!(name, "tlsgate_client_ocsp_checks_total");
    assert_eq!(tags[0], ("endpoint".to_owned(), "a_._b".to_owned()));
}

#[test]
fn the_native_names_are_the_documented_ones() {
    assert_eq!(
        Counter::ALL.map(Counter::prometheus_name),
        [
            "tlsgate_connections_total",
            "tlsgate_http_requests_total",
            "tlsgate_client_ocsp_checks_total",
        ]
    );
}
