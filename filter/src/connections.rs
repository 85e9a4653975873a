//! What the network role learned of a connection, for the HTTP role: when it started, what
//! the client certificate's OCSP check concluded, and the endpoint and facts it admitted the
//! connection with.
//!
//! Envoy has no attribute for a connection's start, and the network role asks the OCSP
//! responder once per connection, holding the connection's bytes until the answer, so by a
//! connection's first request both are known there. Under `require-and-verify` an OCSP
//! refusal closes the connection anyway; under `request` and `require-any` the connection stays
//! open and every request must see the certificate as the check left it
//! (`conn.tls.client.verification == 'revoked'`, no identity headers). Both roles run in one VM
//! per worker (the generator gives them one `vm_config`), and a connection lives on one worker,
//! so a thread-local map keyed by Envoy's `connection.id` carries it. The network context
//! removes its entry when Envoy deletes it (the connection closed).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::SystemTime;

use std::sync::Arc;

use tlsgate_core::config::OcspCheck;
use tlsgate_core::facts::ClientCert;
use tlsgate_core::ocsp::Outcome;
use tlsgate_core::{EndpointPolicy, Policy, TlsFacts};

/// Whether the network role must note connections for the HTTP role: some endpoint checks
/// OCSP or reads `conn.ts.start`. Decided once per policy, so a policy without either pays no
/// host call or map entry per connection.
pub(crate) fn needed_by(policy: &tlsgate_core::Policy) -> bool {
    policy
        .endpoints()
        .iter()
        .any(|e| e.tls.client_auth.ocsp().is_some() || e.reads_variable("conn.ts.start"))
}

struct Seen {
    started: SystemTime,
    ocsp: Option<Outcome>,
}

thread_local! {
    static SEEN: RefCell<HashMap<u64, Seen>> = RefCell::new(HashMap::new());
    /// Admitted HTTPS connections whose first request has not come yet.
    static ADMITTED: RefCell<HashMap<u64, (Arc<EndpointPolicy>, TlsFacts)>> =
        RefCell::new(HashMap::new());
}

/// The network role admitted `connection` to `endpoint` with `facts` (its certificate as the
/// OCSP check left it). The connection's first request takes them ([`take_admitted`]) instead
/// of reading Envoy's attributes (about a dozen hostcalls) and parsing the client certificate
/// again; the network context's end removes what no request took ([`forget`]).
pub(crate) fn admitted(connection: u64, endpoint: Arc<EndpointPolicy>, facts: TlsFacts) {
    ADMITTED.with(|a| a.borrow_mut().insert(connection, (endpoint, facts)));
}

/// What the network role admitted `connection` with, if it chose the endpoint from `policy`
/// itself: both roles hold the same compiled policy when their configurations are the same
/// text (crate::root), and an endpoint of any other policy (one of the roles was reconfigured
/// since) is left for the HTTP role to choose again from Envoy's attributes.
pub(crate) fn take_admitted(
    connection: u64,
    policy: &Policy,
) -> Option<(Arc<EndpointPolicy>, TlsFacts)> {
    let (endpoint, facts) = ADMITTED.with(|a| a.borrow_mut().remove(&connection))?;
    policy
        .endpoint(endpoint.index)
        .is_some_and(|own| Arc::ptr_eq(own, &endpoint))
        .then_some((endpoint, facts))
}

/// The network role accepted `connection` at `started` (until [`forget`]).
pub(crate) fn opened(connection: u64, started: SystemTime) {
    SEEN.with(|s| {
        s.borrow_mut().insert(
            connection,
            Seen {
                started,
                ocsp: None,
            },
        )
    });
}

/// When the network role accepted `connection`; `None` if it did not see it.
pub(crate) fn started(connection: u64) -> Option<SystemTime> {
    SEEN.with(|s| s.borrow().get(&connection).map(|seen| seen.started))
}

/// Records `connection`'s OCSP outcome.
pub(crate) fn checked(connection: u64, outcome: Outcome) {
    SEEN.with(|s| {
        if let Some(seen) = s.borrow_mut().get_mut(&connection) {
            seen.ocsp = Some(outcome);
        }
    });
}

/// The connection closed.
pub(crate) fn forget(connection: u64) {
    SEEN.with(|s| s.borrow_mut().remove(&connection));
    ADMITTED.with(|a| a.borrow_mut().remove(&connection));
}

/// The certificate as `connection`'s check left it. Only a recorded outcome is applied with
/// the endpoint's mode. A verified certificate without one was never checked: the network role
/// is not deployed (an HTTP-only filter), Envoy gave no connection id, or the certificate was
/// not verified when the network role looked. That is no identity under either mode —
/// `prefer` forgives a responder that is down, not a check that never ran — and says why.
pub(crate) fn apply_ocsp(
    connection: Option<u64>,
    check: &OcspCheck,
    cert: ClientCert,
) -> (ClientCert, Option<&'static str>) {
    if !matches!(cert, ClientCert::Verified(_)) {
        return (cert, None);
    }
    let outcome = connection
        .and_then(|id| SEEN.with(|s| s.borrow().get(&id).and_then(|seen| seen.ocsp.clone())));
    match outcome {
        Some(outcome) => (outcome.apply(check.mode, cert), None),
        None => {
            let unchecked = Outcome::Unavailable {
                reason: "ocsp_unavailable",
                detail: String::new(),
            };
            (
                unchecked.apply(tlsgate_core::config::OcspMode::Require, cert),
                Some(
                    "the network filter did not check this connection's client certificate \
                     with the OCSP responder (is the tlsgate network filter deployed?)",
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

    use super::*;
    use tlsgate_core::config::OcspMode;
    use tlsgate_core::facts::Unverified;

    fn check(mode: OcspMode) -> OcspCheck {
        OcspCheck {
            mode,
            responder: None,
            timeout: std::time::Duration::from_secs(1),
        }
    }

    fn verified() -> ClientCert {
        let client = tlsgate_test_support::Authority::root("CA").client("alice");
        let der = tlsgate_test_support::pem_to_der(&client.cert_pem);
        let facts =
            tlsgate_core::facts::ClientCertFacts::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
        ClientCert::Verified(Box::new(facts))
    }

    #[test]
    fn what_the_network_role_saw_reaches_the_http_role_until_the_connection_closes() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        opened(7, at);
        opened(8, at);
        checked(7, Outcome::Revoked);
        let (cert, _) = apply_ocsp(Some(7), &check(OcspMode::Prefer), verified());
        assert!(matches!(
            cert,
            ClientCert::Unverified(_, Unverified::Revoked)
        ));
        checked(8, Outcome::Good);
        assert!(matches!(
            apply_ocsp(Some(8), &check(OcspMode::Require), verified()),
            (ClientCert::Verified(_), None)
        ));
        assert_eq!(started(8), Some(at));
        forget(7);
        forget(8);
        assert_eq!(started(8), None);
        // Gone with the connection: unchecked now, which require refuses.
        let (cert, _) = apply_ocsp(Some(8), &check(OcspMode::Require), verified());
        assert!(matches!(
            cert,
            ClientCert::Unverified(_, Unverified::StatusUnavailable)
        ));
    }

    #[test]
    fn an_unchecked_connection_is_no_identity_in_either_mode_and_says_why() {
        for mode in [OcspMode::Require, OcspMode::Prefer] {
            let (cert, why) = apply_ocsp(None, &check(mode), verified());
            assert!(matches!(
                cert,
                ClientCert::Unverified(_, Unverified::StatusUnavailable)
            ));
            assert!(why.is_some_and(|w| w.contains("network filter")));
            // Seen by the network role, but no outcome recorded: the same.
            opened(9, SystemTime::UNIX_EPOCH);
            let (cert, _) = apply_ocsp(Some(9), &check(mode), verified());
            assert!(matches!(
                cert,
                ClientCert::Unverified(_, Unverified::StatusUnavailable)
            ));
            forget(9);
        }
    }
}
