//! The network filter: one decision per connection, at its first decrypted bytes (after the
//! client certificate's OCSP answer, when the endpoint asks for one).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, LogLevel};
use tlsgate_core::config::{ClientAuth, Scheme};
use tlsgate_core::facts::{escape_control, ClientCert};
use tlsgate_core::ocsp::{self, Cache, CertId, Outcome};
use tlsgate_core::policy::{
    connection_labels, endpoint_label, ocsp_cluster_name, OCSP_AIA_CLUSTER,
};
use tlsgate_core::{EndpointPolicy, Policy, Session, TlsFacts, Verdict};

use crate::attributes::{read_connection, Envoy};
use crate::metrics::{self, log};
use crate::trust::RustCrypto;

enum State {
    /// The handshake may still be running; nothing was decided.
    Undecided,
    /// Waiting for the OCSP responder (`mutual_tls_ocsp`) before deciding.
    Asking(Box<Asking>),
    Allowed,
    Denied,
}

/// A connection whose decision waits on an OCSP answer.
struct Asking {
    token: u32,
    endpoint: Arc<EndpointPolicy>,
    facts: TlsFacts,
    id: CertId,
    issuer: Vec<u8>,
}

thread_local! {
    /// Checked OCSP answers of this worker's VM (a VM is single-threaded).
    static OCSP_ANSWERS: RefCell<Cache> = RefCell::new(Cache::default());
}

pub(crate) struct NetworkFilter {
    policy: Option<Rc<Policy>>,
    state: State,
    /// `--max-connections-per-source` (crate::sources), when the configuration sets it.
    per_source: Option<usize>,
    /// This connection's place in its address's share, released when the context goes.
    _counted: Option<crate::sources::Counted>,
    /// Envoy's `connection.id`, under which the connection's start and OCSP outcome wait for
    /// the HTTP role (crate::connections).
    connection: Option<u64>,
    /// When Envoy handed this filter the connection (`conn.ts.start`); the epoch when the
    /// connection is not tracked, as then no endpoint reads it.
    started: std::time::SystemTime,
    /// Whether to note the connection for the HTTP role (crate::connections::needed_by).
    track: bool,
}

impl Drop for NetworkFilter {
    fn drop(&mut self) {
        if let Some(id) = self.connection {
            crate::connections::forget(id);
        }
    }
}

impl NetworkFilter {
    pub(crate) fn new(policy: Option<Rc<Policy>>, per_source: Option<usize>, track: bool) -> Self {
        Self {
            policy,
            state: State::Undecided,
            per_source,
            _counted: None,
            connection: None,
            started: std::time::SystemTime::UNIX_EPOCH,
            track,
        }
    }

    /// Counts the connection against its address's share; `false` (logged and counted) when
    /// the address already holds it.
    fn within_source_share(&mut self) -> bool {
        let Some(cap) = self.per_source else {
            return true;
        };
        // Envoy always has the source of a TCP connection; without it the facts are
        // unavailable later and the connection is closed there.
        let Some(ip) = hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
            .and_then(|a| crate::decode::socket_addr(&a))
            .map(|a| a.ip())
        else {
            return true;
        };
        match crate::sources::acquire(ip, cap) {
            Some(counted) => {
                self._counted = Some(counted);
                true
            }
            None => {
                log(
                    LogLevel::Info,
                    &format!(
                        "closing a connection from {ip}: too many connections from this address \
                         (source_connection_limit, {cap} per worker)"
                    ),
                );
                metrics::connection(None, "deny", "source_connection_limit");
                false
            }
        }
    }

    /// Reads the connection, and either decides or (OCSP) asks first.
    fn start(&mut self) -> State {
        let Some(policy) = &self.policy else {
            log(LogLevel::Error, "no policy loaded; closing the connection");
            metrics::connection(None, "deny", "no_policy");
            return State::Denied;
        };
        let connection = match read_connection(&Envoy, policy, self.started) {
            Ok(connection) => connection,
            Err(why) => {
                log(
                    LogLevel::Warn,
                    &format!("closing a connection whose facts are unknown: {why}"),
                );
                metrics::connection(None, "deny", why.label());
                return State::Denied;
            }
        };
        let (endpoint, facts) = (connection.endpoint, connection.facts);
        let ClientAuth::On {
            authorities,
            ocsp: Some(check),
            ..
        } = &endpoint.tls.client_auth
        else {
            return self.decide(endpoint, facts, None);
        };
        let ClientCert::Verified(cert) = &facts.client_cert else {
            return self.decide(endpoint, facts, None);
        };
        // Envoy shows filters the leaf only: the issuer is one of the endpoint's CAs.
        let candidates = authorities.certs.iter().map(AsRef::as_ref);
        let Some(issuer) = ocsp::issuer_of(&cert.der, candidates).map(<[u8]>::to_vec) else {
            let outcome = unavailable("the certificate's issuer is not among the endpoint's CAs");
            return self.decide(endpoint, facts, Some(outcome));
        };
        let id = match CertId::new(&cert.der, &issuer) {
            Ok(id) => id,
            Err(e) => return self.decide(endpoint, facts, Some(unavailable(&e))),
        };
        if let Some(answer) = OCSP_ANSWERS.with(|c| c.borrow().get(&id, now())) {
            return self.decide(endpoint, facts, Some(Outcome::of(&answer)));
        }
        // The configured responder through its own cluster, else the one the certificate
        // names through the generator's dynamic forward proxy cluster.
        let (cluster, url) = match &check.responder {
            Some(url) => (ocsp_cluster_name(endpoint.index), Some(url.clone())),
            None => (OCSP_AIA_CLUSTER.to_owned(), ocsp::responder_of(&cert.der)),
        };
        let Some(url) = url else {
            let outcome = unavailable("the certificate names no http:// OCSP responder");
            return self.decide(endpoint, facts, Some(outcome));
        };
        let responder = match ocsp::Responder::parse(&url) {
            Ok(responder) => responder,
            Err(e) => return self.decide(endpoint, facts, Some(unavailable(&e))),
        };
        let authority = responder.authority();
        let request = ocsp::request(&id);
        let dispatched = if check.responder.is_some() {
            hostcalls::dispatch_http_call(
                &cluster,
                vec![
                    (":method", "POST"),
                    (":path", responder.path.as_str()),
                    (":authority", authority.as_str()),
                    ("content-type", "application/ocsp-request"),
                    ("accept", "application/ocsp-response"),
                ],
                Some(&request),
                vec![],
                check.timeout,
            )
        } else {
            // The dynamic forward proxy may resolve the host first, and Envoy's async client
            // cannot hold a body meanwhile: ask by GET (ocsp::get_target).
            let target = ocsp::get_target(&responder, &request);
            hostcalls::dispatch_http_call(
                &cluster,
                vec![
                    (":method", "GET"),
                    (":path", target.as_str()),
                    (":authority", authority.as_str()),
                    ("accept", "application/ocsp-response"),
                ],
                None,
                vec![],
                check.timeout,
            )
        };
        match dispatched {
            Ok(token) => State::Asking(Box::new(Asking {
                token,
                endpoint,
                facts,
                id,
                issuer,
            })),
            Err(status) => {
                let outcome = unavailable(&format!("Envoy refused the call ({status:?})"));
                self.decide(endpoint, facts, Some(outcome))
            }
        }
    }

    /// `on_tcp_connect` over the facts, after what the OCSP responder said (if it was asked),
    /// which the HTTP role then finds under the connection's id. An admitted HTTPS connection's
    /// endpoint and facts wait there too, for its first request (crate::connections::admitted).
    fn decide(
        &mut self,
        endpoint: Arc<EndpointPolicy>,
        facts: TlsFacts,
        ocsp: Option<Outcome>,
    ) -> State {
        if let (Some(outcome), Some(id)) = (&ocsp, self.connection) {
            crate::connections::checked(id, outcome.clone());
        }
        let (state, admitted) = decide(endpoint, facts, ocsp);
        if let Some(session) = admitted.filter(|s| s.endpoint().scheme == Scheme::Https) {
            if self.connection.is_none() {
                self.connection = hostcalls::get_property(vec!["connection", "id"])
                    .ok()
                    .flatten()
                    .and_then(|raw| crate::sessions::connection_id(&raw));
            }
            if let Some(id) = self.connection {
                crate::connections::admitted(
                    id,
                    Arc::clone(session.endpoint()),
                    session.facts().clone(),
                );
            }
        }
        state
    }

    /// Closes, or lets the held bytes through, once decided.
    fn settle(&self) {
        match self.state {
            State::Allowed => self.resume_downstream(),
            State::Denied => {
                if hostcalls::close_downstream().is_err() {
                    log(LogLevel::Error, "could not close a denied connection");
                }
            }
            State::Undecided | State::Asking(_) => {}
        }
    }
}

fn unavailable(detail: &str) -> Outcome {
    Outcome::Unavailable {
        reason: "ocsp_unavailable",
        detail: detail.to_owned(),
    }
}

fn now() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// `on_tcp_connect` over the facts, after what the OCSP responder said (if it was asked); the
/// session too when it admits the connection.
fn decide(
    endpoint: Arc<EndpointPolicy>,
    mut facts: TlsFacts,
    ocsp: Option<Outcome>,
) -> (State, Option<Session>) {
    if let (Some(outcome), Some(check)) = (&ocsp, endpoint.tls.client_auth.ocsp()) {
        metrics::ocsp(&endpoint, outcome.reason());
        if let Outcome::Unavailable { reason, detail } = outcome {
            log(
                LogLevel::Warn,
                &format!(
                    "no valid OCSP answer for a client of endpoint={} (mode {}): {reason}: {}",
                    endpoint_label(&endpoint),
                    check.mode.as_str(),
                    escape_control(detail)
                ),
            );
        }
        let cert = std::mem::replace(&mut facts.client_cert, ClientCert::Absent);
        facts.client_cert = outcome.apply(check.mode, cert);
    }
    crate::http::publish_metadata(&endpoint);
    let session = Session::new(endpoint, facts);
    let (verdict, detail, logged) = session.on_tcp_connect_logged();
    if let Some(logged) = logged {
        // The listener's connection line reads it as %FILTER_STATE(wasm.tlsgate.tcp_log:PLAIN)%.
        if hostcalls::set_property(vec!["tlsgate.tcp_log"], Some(logged.as_bytes())).is_err() {
            log(
                LogLevel::Warn,
                "could not record the policy's log fields for the connection line",
            );
        }
    }
    let (label, reason) = connection_labels(&verdict);
    metrics::connection(Some(session.endpoint()), label, reason);
    match verdict {
        Verdict::Continue => (State::Allowed, Some(session)),
        Verdict::Deny(reason) => {
            log(
                LogLevel::Info,
                &format!(
                    "closed connection from {} to endpoint={}: {reason}{}",
                    session.facts().client_ip,
                    endpoint_label(session.endpoint()),
                    detail
                        .map(|why| format!(": {}", escape_control(&why.to_string())))
                        .unwrap_or_default()
                ),
            );
            (State::Denied, None)
        }
    }
}

impl Context for NetworkFilter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let State::Asking(asking) = std::mem::replace(&mut self.state, State::Denied) else {
            return;
        };
        if asking.token != token {
            self.state = State::Asking(asking);
            return;
        }
        let Asking {
            endpoint,
            facts,
            id,
            issuer,
            ..
        } = *asking;
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size);
        let outcome = match (status.as_deref(), body) {
            (Some("200"), Some(body)) => {
                let now = now();
                match ocsp::check(&body, &id, &issuer, now, &RustCrypto) {
                    Ok(answer) => {
                        OCSP_ANSWERS.with(|c| c.borrow_mut().insert(id, answer, now));
                        Outcome::of(&answer)
                    }
                    Err(e) => Outcome::Unavailable {
                        reason: "ocsp_invalid_response",
                        detail: e,
                    },
                }
            }
            (Some(status), _) => unavailable(&format!("the responder answered {status}")),
            // Envoy reports a failed call (no connection, the timeout) without headers.
            (None, _) => unavailable("no answer (the responder is down or late)"),
        };
        self.state = self.decide(endpoint, facts, Some(outcome));
        self.settle();
    }
}

impl StreamContext for NetworkFilter {
    /// Holds back the filters after this one (tcp_proxy, the HTTP connection manager) until
    /// the policy has decided: tcp_proxy would otherwise connect to the upstream when the
    /// connection is accepted, so a client the policy refuses would still reach it (and see a
    /// server-first protocol's greeting). The first decrypted byte resumes the chain.
    fn on_new_connection(&mut self) -> Action {
        if self.track {
            self.started =
                hostcalls::get_current_time().unwrap_or_else(|_| std::time::SystemTime::now());
            self.connection = hostcalls::get_property(vec!["connection", "id"])
                .ok()
                .flatten()
                .and_then(|raw| crate::sessions::connection_id(&raw));
            if let Some(id) = self.connection {
                crate::connections::opened(id, self.started);
            }
        }
        if !self.within_source_share() {
            self.state = State::Denied;
            self.settle();
        }
        Action::Pause
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        // on_new_connection runs before the TLS handshake; by the first decrypted byte it is
        // over and Envoy's connection attributes are final.
        if matches!(self.state, State::Undecided) {
            self.state = self.start();
            if matches!(self.state, State::Denied) {
                self.settle();
            }
        }
        match self.state {
            State::Allowed => Action::Continue,
            // Asking: the bytes wait in Envoy's buffer until the answer resumes or closes.
            State::Undecided | State::Asking(_) | State::Denied => Action::Pause,
        }
    }
}
