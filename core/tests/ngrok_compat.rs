//! docs/ngrok-compatibility.md says what of ngrok's Traffic Policy tlsgate accepts; this test
//! holds the tables to the loader, so the page cannot drift from the code.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{policy, Fixture};
use tlsgate_core::expr::{CompileError, Expression, Phase};

const HOST: &str = "app.example.com";

/// The rows of the table under `## {heading}`: cells without backticks.
fn table(heading: &str) -> Vec<Vec<String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/ngrok-compatibility.md"
    );
    let text = std::fs::read_to_string(path).expect("docs/ngrok-compatibility.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no section `## {heading}`"));
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "the table under `## {heading}` has no rows"
    );
    rows
}

/// Both hosts load policies through core, so a row's two host columns must agree with the
/// loader; a difference between hosts is a fact one host lacks, which the loader cannot know.
fn supported(row: &[String], native: usize, envoy: usize) -> bool {
    let (n, e) = (row[native].as_str(), row[envoy].as_str());
    assert!(
        matches!(n, "yes" | "no") && matches!(e, "yes" | "no"),
        "{row:?}"
    );
    n == "yes"
}

fn action_config(action: &str) -> &'static str {
    match action {
        "restrict-ips" => ", config: {allow: [127.0.0.1]}",
        "custom-response" => ", config: {status_code: 200}",
        "add-headers" => ", config: {headers: {x-a: b}}",
        "remove-headers" => ", config: {headers: [x-a]}",
        "log" => ", config: {metadata: {event: x}}",
        "set-vars" => ", config: {vars: [{tier: gold}]}",
        "deny" => "",
        _ => ", config: {}",
    }
}

#[test]
fn the_actions_table_matches_the_loader() {
    let f = Fixture::new(HOST);
    for row in table("Actions") {
        let (action, phase) = (row[0].as_str(), row[1].as_str());
        if action == "terminate-tls" {
            continue; // every policy here has one
        }
        let rule = format!(
            "        - actions: [{{type: {action}{}}}]\n",
            action_config(action)
        );
        let yaml = match phase {
            "on_tcp_connect" => policy(HOST, "", &rule),
            "on_http_request" => policy(HOST, "", &format!("      on_http_request:\n{rule}")),
            other => panic!("unknown phase {other}"),
        };
        match (supported(&row, 2, 3), f.load(&yaml)) {
            (true, Ok(_)) => {}
            (true, Err(e)) => panic!("{action} in {phase} is documented as supported: {e}"),
            (false, Ok(_)) => panic!("{action} in {phase} loads but is documented as not"),
            (false, Err(e)) => assert!(
                e.to_string().contains("tlsgate does not implement"),
                "{action}: {e}"
            ),
        }
    }
}

#[test]
fn the_terminate_tls_table_matches_the_loader() {
    let f = Fixture::new(HOST);
    for row in table("`terminate-tls` fields") {
        let field = row[0].as_str();
        let line = match field {
            "min_version" | "max_version" => format!("                {field}: \"1.3\"\n"),
            "server_certificate" | "server_private_key" => continue, // in every policy here
            "mutual_tls_certificate_authorities" => format!("                {field}: [ca.crt]\n"),
            "mutual_tls_verification_strategy" => format!(
                "                mutual_tls_certificate_authorities: [ca.crt]\n                {field}: request\n"
            ),
            "session_resumption" => format!("                {field}: false\n"),
            "session_lifetime" => format!("                {field}: 30m\n"),
            "session_ticket_keys" => {
                std::fs::write(f.path().join("ticket.key"), [0u8; 80]).unwrap();
                format!("                {field}: [ticket.key]\n")
            }
            "mutual_tls_certificate_revocation_lists" => {
                std::fs::write(f.path().join("ca.crl"), f.ca.crl(&[], -60, 3600)).unwrap();
                format!(
                    "                mutual_tls_certificate_authorities: [ca.crt]\n                {field}: [ca.crl]\n"
                )
            }
            "mutual_tls_revocation_check" => {
                std::fs::write(f.path().join("ca.crl"), f.ca.crl(&[], -60, 3600)).unwrap();
                format!(
                    "                mutual_tls_certificate_authorities: [ca.crt]\n                mutual_tls_certificate_revocation_lists: [ca.crl]\n                {field}: leaf\n"
                )
            }
            "mutual_tls_ocsp" => format!(
                "                mutual_tls_certificate_authorities: [ca.crt]\n                {field}: {{mode: require, responder: 'http://127.0.0.1:8888/'}}\n"
            ),
            "key_exchange_groups" => format!("                {field}: [X25519, P-256]\n"),
            other => panic!("a row for `{other}`: give it a value here"),
        };
        let loaded = f.load(&policy(HOST, &line, ""));
        assert_eq!(supported(&row, 1, 2), loaded.is_ok(), "{field}: {loaded:?}");
    }
}

#[test]
fn the_variable_tables_match_the_loader() {
    for heading in ["Connection variables", "Request variables"] {
        for row in table(heading) {
            let variable = row[0].as_str();
            let compiled =
                Expression::compile(&format!("{variable} == {variable}"), Phase::HttpRequest);
            // The envoy column says no exactly where the filter has no attribute for it.
            let behind_envoy = row[2] == "yes";
            let unknown_to_envoy = tlsgate_core::policy::UNKNOWN_BEHIND_ENVOY
                .iter()
                .any(|u| u.variable == variable && !u.network_filter_only);
            if row[1] == "yes" {
                assert_eq!(
                    behind_envoy, !unknown_to_envoy,
                    "{variable}: the envoy column"
                );
            }
            match (supported(&row, 1, 2), compiled) {
                (true, Ok(_)) => {}
                (true, Err(e)) => panic!("{variable} is documented as provided: {e}"),
                (false, Ok(_)) => panic!("{variable} compiles but is documented as not provided"),
                (false, Err(e)) => {
                    assert!(
                        matches!(e, CompileError::NgrokVariable { .. }),
                        "{variable}: {e}"
                    )
                }
            }
        }
    }
}

#[test]
fn the_macros_table_matches_the_loader() {
    for row in table("Macros") {
        let name = row[0].as_str();
        let call = match name {
            "inCidrRange" => "inCidrRange(conn.client_ip, '10.0.0.0/8')".to_owned(),
            "inCidrRanges" => "inCidrRanges(conn.client_ip, ['10.0.0.0/8'])".to_owned(),
            other => format!("{other}('x-a') == {other}('x-a')"),
        };
        match (
            supported(&row, 1, 2),
            Expression::compile(&call, Phase::HttpRequest),
        ) {
            (true, Ok(_)) => {}
            (true, Err(e)) => panic!("{name} is documented as provided: {e}"),
            (false, Ok(_)) => panic!("{name} compiles but is documented as not provided"),
            (false, Err(e)) => assert!(matches!(e, CompileError::NgrokMacro { .. }), "{name}: {e}"),
        }
    }
}
