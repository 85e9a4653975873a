//! The handshake as Istio's `Gateway`: one server per endpoint, its certificate and key in the
//! Secret its `credentialName` names, the client-certificate requirement as its TLS mode. What
//! the Gateway cannot say is a warning or a refusal, each saying why.

use tlsgate_core::config::{ClientAuth, Scheme, VerificationStrategy};
use tlsgate_core::revocation::RevocationDepth;

use super::resources::*;
use super::secrets::{ca_entry, one_file, private_key_pem, source, SecretPlan};
use super::{Error, Options, Site, GATEWAY_NAME};

/// The endpoint's server in the Gateway; the Secret it names goes into `secrets`.
pub(super) fn server(
    site: &Site<'_>,
    options: &Options,
    secrets: &mut Vec<SecretPlan>,
    warnings: &mut Vec<String>,
) -> Result<Server, Error> {
    let (endpoint, here, host, name) = (site.endpoint, &site.here, &site.host, &site.name);
    let unsupported = |field: String, what: String| site.unsupported(field, what);
    let tls = &endpoint.tls;
    let terminate = format!("traffic_policy.on_tcp_connect[{}] terminate-tls", tls.rule);

    // The handshake: the Gateway server.
    let certificate = tls.certificate.as_ref().ok_or_else(|| {
        unsupported(
            format!("{terminate}.server_certificate"),
            "Istio's gateway needs the endpoint's certificate to terminate TLS".into(),
        )
    })?;
    let key = tls
        .private_key
        .as_ref()
        .ok_or_else(|| Error::MissingMaterial {
            endpoint: endpoint.index,
            url: endpoint.url.clone(),
            what: "terminate-tls.server_private_key",
        })?;
    let credential = format!("tlsgate-{name}");
    let mut entries = vec![
        (
            "tls.crt",
            certificate.to_pem(),
            source(
                endpoint,
                one_file(std::iter::once(&certificate.origin)),
                "inlined in the policy",
            ),
        ),
        (
            "tls.key",
            private_key_pem(key),
            source(
                endpoint,
                one_file(std::iter::once(&key.origin)),
                "inlined in the policy",
            ),
        ),
    ];
    let mode = match &tls.client_auth {
        ClientAuth::Off => ServerTlsMode::Simple,
        ClientAuth::On {
            authorities,
            strategy,
            revocation,
            // The filter asks the responder through a cluster of its own, which Istio
            // does not generate: the EnvoyFilter below adds it.
            ocsp: _,
        } => {
            entries.push(ca_entry(endpoint, authorities));
            if let Some(revocation) = revocation {
                // Istio reads a CRL from the credential's `ca.crl` and hands it to Envoy,
                // which checks every certificate of the chain (Envoy's default): a leaf-only
                // policy is stricter there, never looser, and the filter re-checks.
                let pem_file = one_file(revocation.lists.iter().map(|l| &l.origin))
                    .filter(|_| revocation.lists.iter().all(|l| l.pem));
                entries.push((
                    "ca.crl",
                    revocation.to_pem(),
                    source(
                        endpoint,
                        pem_file,
                        "inlined, in DER or spread over several files; Istio wants one PEM file",
                    ),
                ));
                if revocation.depth == RevocationDepth::Leaf {
                    warnings.push(format!(
                        "{here}: {terminate}.mutual_tls_revocation_check: leaf: Istio does \
                         not expose Envoy's only_verify_leaf_cert_crl, so the gateway checks \
                         the CRLs for every certificate of the chain; a client whose \
                         intermediate CA publishes no CRL is refused"
                    ));
                }
            }
            match strategy {
                VerificationStrategy::RequireAndVerify => ServerTlsMode::Mutual,
                // A certificate that does not chain is refused at the handshake instead of
                // admitted unverified: stricter, and the rules still see every other case.
                VerificationStrategy::Request => {
                    warnings.push(format!(
                        "{here}: {terminate}.mutual_tls_verification_strategy: request: \
                         Istio's OPTIONAL_MUTUAL refuses a client certificate that does not \
                         chain to the CAs at the handshake, where tlsgate admits it as \
                         unverified; no certificate, or a verified one, behaves the same"
                    ));
                    ServerTlsMode::OptionalMutual
                }
                // Refused: the strategy exists to admit certificates from issuers not in the
                // list (identified by rules on their fields); MUTUAL would refuse every one
                // of them, so the endpoint would not do what the policy is for.
                VerificationStrategy::RequireAny => {
                    return Err(unsupported(
                        format!("{terminate}.mutual_tls_verification_strategy"),
                        "require-any accepts a client certificate from any issuer, which \
                         needs Envoy's trust_chain_verification: ACCEPT_UNTRUSTED; Istio's \
                         Gateway does not expose it (ServerTLSSettings.insecureSkipVerify \
                         arrives with Istio 1.31), and MUTUAL would refuse every client this \
                         strategy is for. Use require-and-verify with the clients' CAs, or \
                         run this endpoint on plain Envoy (tlsgate envoy-config)"
                            .into(),
                    ));
                }
            }
        }
    };
    if !tls.session_ticket_keys.is_empty()
        || tls.session_lifetime != tlsgate_core::config::DEFAULT_SESSION_LIFETIME
    {
        warnings.push(format!(
            "{here}: {terminate}.session_ticket_keys / session_lifetime: Istio's Gateway \
             has no setting for them; each gateway pod makes its own ticket keys and keeps \
             Envoy's default lifetime, so sessions resume on the pod that issued them only"
        ));
    }
    if !tls.session_resumption {
        warnings.push(format!(
            "{here}: {terminate}.session_resumption: false: Istio's Gateway has no setting \
             for it; the gateway resumes TLS sessions (a resumed session keeps the \
             certificate it was verified with)"
        ));
    }
    if endpoint
        .tcp_rules
        .iter()
        .flat_map(|r| &r.actions)
        .any(|a| matches!(a, tlsgate_core::config::TcpAction::Log(_)))
    {
        warnings.push(format!(
            "{here}: on_tcp_connect log: the gateway's listeners are Istio's, and none writes \
             the connection line that carries these fields (wasm.tlsgate.tcp_log); log in \
             on_http_request, or add a listener access log with an EnvoyFilter"
        ));
    }
    if tls.key_exchange_groups != tlsgate_core::facts::KEY_EXCHANGE_GROUPS {
        warnings.push(format!(
            "{here}: {terminate}.key_exchange_groups: Istio's Gateway has no per-server \
             setting for them; the gateway offers the mesh's (meshConfig.tlsDefaults.ecdhCurves)"
        ));
    }
    secrets.push(SecretPlan {
        name: credential.clone(),
        kind_of: "kubernetes.io/tls",
        entries,
    });
    let (port_name, protocol) = match endpoint.scheme {
        Scheme::Https => (format!("https-{name}"), "HTTPS"),
        Scheme::Tls => (format!("tls-{name}"), "TLS"),
    };
    Ok(Server {
        port: ServerPort {
            number: options.port,
            name: port_name,
            protocol,
        },
        // `./`: only VirtualServices in the gateway's namespace may bind this host, so no
        // other namespace can route (or hijack) the endpoint's traffic.
        hosts: vec![format!("./{host}")],
        tls: ServerTls {
            mode,
            credential_name: credential,
            min_protocol_version: tls.min_version.into(),
            max_protocol_version: tls.max_version.into(),
        },
    })
}

/// The Gateway, with a server per endpoint, on the selected gateway pods.
pub(super) fn gateway(
    options: &Options,
    servers: Vec<Server>,
    metadata: &impl Fn(String) -> Metadata,
) -> Resource<GatewaySpec> {
    Resource {
        api_version: "networking.istio.io/v1",
        kind: "Gateway",
        metadata: metadata(GATEWAY_NAME.into()),
        spec: GatewaySpec {
            selector: options.selector.clone(),
            servers,
        },
    }
}
