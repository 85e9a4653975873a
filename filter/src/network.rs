//! The network filter: one decision per connection, at its first decrypted bytes.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, LogLevel};
use tlsgate_core::facts::escape_control;
use tlsgate_core::{Policy, Session, Verdict};

use crate::attributes::{read_connection, Envoy};
use crate::metrics::{self, log, Phase};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The handshake may still be running; nothing was decided.
    Undecided,
    Allowed,
    Denied,
}

pub(crate) struct NetworkFilter {
    policy: Option<Rc<Policy>>,
    state: State,
}

impl NetworkFilter {
    pub(crate) fn new(policy: Option<Rc<Policy>>) -> Self {
        Self {
            policy,
            state: State::Undecided,
        }
    }

    fn decide(&self) -> State {
        let Some(policy) = &self.policy else {
            log(LogLevel::Error, "no policy loaded; closing the connection");
            metrics::verdict(None, Phase::TcpConnect, "deny", Some("no_policy"));
            return State::Denied;
        };
        let connection = match read_connection(&Envoy, policy) {
            Ok(connection) => connection,
            Err(why) => {
                log(
                    LogLevel::Warn,
                    &format!("closing a connection whose facts are unknown: {why}"),
                );
                metrics::verdict(None, Phase::TcpConnect, "deny", Some(why.label()));
                return State::Denied;
            }
        };
        let index = connection.endpoint.index;
        crate::http::publish_metadata(&connection.endpoint);
        let session = Session::new(connection.endpoint, connection.facts);
        let (verdict, detail) = session.on_tcp_connect_explained();
        match verdict {
            Verdict::Continue => {
                metrics::verdict(
                    Some(index),
                    Phase::TcpConnect,
                    Verdict::Continue.label(),
                    None,
                );
                State::Allowed
            }
            Verdict::Deny(reason) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "closed connection from {} to {} (endpoints[{index}]): {reason}{}",
                        session.facts().client_ip,
                        session.endpoint().host,
                        detail
                            .map(|d| format!(": {}", escape_control(&d)))
                            .unwrap_or_default()
                    ),
                );
                metrics::verdict(
                    Some(index),
                    Phase::TcpConnect,
                    "deny",
                    Some(reason.as_str()),
                );
                State::Denied
            }
        }
    }
}

impl Context for NetworkFilter {}

impl StreamContext for NetworkFilter {
    /// Holds back the filters after this one (tcp_proxy, the HTTP connection manager) until
    /// the policy has decided: tcp_proxy would otherwise connect to the upstream when the
    /// connection is accepted, so a client the policy refuses would still reach it (and see a
    /// server-first protocol's greeting). The first decrypted byte resumes the chain.
    fn on_new_connection(&mut self) -> Action {
        Action::Pause
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        // on_new_connection runs before the TLS handshake; by the first decrypted byte it is
        // over and Envoy's connection attributes are final.
        if self.state == State::Undecided {
            self.state = self.decide();
            if self.state == State::Denied && hostcalls::close_downstream().is_err() {
                log(LogLevel::Error, "could not close a denied connection");
            }
        }
        match self.state {
            State::Allowed => Action::Continue,
            State::Undecided | State::Denied => Action::Pause,
        }
    }
}
