//! Per-connection sessions for the HTTP filter, shared by the requests of one connection.
//!
//! Envoy gives every request its own HTTP context, but the connection's facts — TLS attributes,
//! the parsed client certificate, the `on_tcp_connect` verdict, the CEL view built from them —
//! are the same for all of them. Rebuilding them cost ~a dozen host calls, an X.509 parse and
//! a CEL evaluation per request. The root context keeps them by Envoy's `connection.id`
//! (unique within the process), for a bounded number of connections; an evicted or unknown
//! connection is simply rebuilt. There is no connection-close callback in an HTTP filter, so
//! eviction is oldest-first.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use tlsgate_core::{Session, Verdict};

/// How many connections' sessions a VM (one per Envoy worker) keeps.
const CAPACITY: usize = 1024;

/// A connection's session and what `on_tcp_connect` said about it.
pub(crate) struct Cached {
    pub(crate) session: Session,
    pub(crate) tcp_verdict: Verdict,
    /// The network role published the endpoint's filter state on the connection, so requests
    /// need not (`http::connection_carries_metadata`).
    pub(crate) metadata_on_connection: bool,
}

#[derive(Default)]
pub(crate) struct Sessions {
    by_id: HashMap<u64, Rc<Cached>>,
    order: VecDeque<u64>,
}

/// Shared between the root context and its HTTP contexts (one VM is one thread).
pub(crate) type SharedSessions = Rc<RefCell<Sessions>>;

impl Sessions {
    pub(crate) fn get(&self, id: u64) -> Option<Rc<Cached>> {
        self.by_id.get(&id).cloned()
    }

    pub(crate) fn insert(&mut self, id: u64, cached: Rc<Cached>) {
        if self.by_id.insert(id, cached).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }

    /// A new policy invalidates every session built from the old one.
    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// `connection.id` as Envoy encodes it (a little-endian u64); `None` when absent.
pub(crate) fn connection_id(raw: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(raw).ok().map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_connection_id() {
        assert_eq!(connection_id(&7u64.to_le_bytes()), Some(7));
        assert_eq!(connection_id(b"short"), None);
    }

    #[test]
    fn keeps_a_bounded_number_of_connections_oldest_out_first() {
        let mut sessions = Sessions::default();
        let policy = crate::tests::sample_policy();
        let endpoint = std::sync::Arc::clone(&policy.endpoints()[0]);
        let cached = |_: u64| {
            Rc::new(Cached {
                session: Session::new(
                    std::sync::Arc::clone(&endpoint),
                    crate::tests::sample_facts(),
                ),
                tcp_verdict: Verdict::Continue,
                metadata_on_connection: true,
            })
        };
        for id in 0..(CAPACITY as u64 + 10) {
            sessions.insert(id, cached(id));
        }
        assert_eq!(sessions.len(), CAPACITY);
        assert!(sessions.get(0).is_none());
        assert!(sessions.get(CAPACITY as u64 + 9).is_some());
        sessions.clear();
        assert_eq!(sessions.len(), 0);
    }
}
