//! What the network role's OCSP check concluded, per connection, for the HTTP role.
//!
//! The network role asks the responder once per connection and holds the connection's bytes
//! until the answer, so by a connection's first request its outcome is here. Under
//! `require-and-verify` a refusal closes the connection anyway; under `request` and
//! `require-any` the connection stays open and every request must see the certificate as the
//! check left it (`conn.tls.client.verification == 'revoked'`, no identity headers). Both roles
//! run in one VM per worker (the generator gives them one `vm_config`), and a connection lives on
//! one worker, so a thread-local map keyed by Envoy's `connection.id` carries it. The network
//! context removes its entry when Envoy deletes it (the connection closed).

use std::cell::RefCell;
use std::collections::HashMap;

use tlsgate_core::config::OcspCheck;
use tlsgate_core::facts::ClientCert;
use tlsgate_core::ocsp::Outcome;

thread_local! {
    static OUTCOMES: RefCell<HashMap<u64, Outcome>> = RefCell::new(HashMap::new());
}

/// Records the outcome for `connection` (until [`forget`]).
pub(crate) fn record(connection: u64, outcome: Outcome) {
    OUTCOMES.with(|o| o.borrow_mut().insert(connection, outcome));
}

/// The connection closed.
pub(crate) fn forget(connection: u64) {
    OUTCOMES.with(|o| o.borrow_mut().remove(&connection));
}

/// The certificate as `connection`'s check left it. A verified certificate whose connection
/// has no recorded outcome (the network role is not deployed, or Envoy gave no connection id)
/// was never checked: it counts as `ocsp_unavailable` under the endpoint's mode, so `require`
/// never passes unchecked.
pub(crate) fn apply(connection: Option<u64>, check: &OcspCheck, cert: ClientCert) -> ClientCert {
    if !matches!(cert, ClientCert::Verified(_)) {
        return cert;
    }
    let outcome = connection
        .and_then(|id| OUTCOMES.with(|o| o.borrow().get(&id).cloned()))
        .unwrap_or_else(|| Outcome::Unavailable {
            reason: "ocsp_unavailable",
            detail: "the network filter did not check this connection".into(),
        });
    outcome.apply(check.mode, cert)
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
    fn a_recorded_outcome_reaches_the_http_role_until_the_connection_closes() {
        record(7, Outcome::Revoked);
        let cert = apply(Some(7), &check(OcspMode::Prefer), verified());
        assert!(matches!(
            cert,
            ClientCert::Unverified(_, Unverified::Revoked)
        ));
        record(8, Outcome::Good);
        assert!(matches!(
            apply(Some(8), &check(OcspMode::Require), verified()),
            ClientCert::Verified(_)
        ));
        forget(7);
        forget(8);
        // Gone with the connection: unchecked now, which require refuses.
        let cert = apply(Some(8), &check(OcspMode::Require), verified());
        assert!(matches!(
            cert,
            ClientCert::Unverified(_, Unverified::StatusUnavailable)
        ));
    }

    #[test]
    fn an_unchecked_connection_is_unavailable_never_good() {
        let cert = apply(None, &check(OcspMode::Require), verified());
        assert!(matches!(
            cert,
            ClientCert::Unverified(_, Unverified::StatusUnavailable)
        ));
        // prefer admits it, as it admits a responder that is down.
        assert!(matches!(
            apply(None, &check(OcspMode::Prefer), verified()),
            ClientCert::Verified(_)
        ));
    }
}
