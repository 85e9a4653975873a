//! Where the connection goes: a `VirtualService` per endpoint to the upstream's Kubernetes
//! Service, and a `DestinationRule` per upstream host for TLS to it, with the Secret its client
//! certificate and CAs go into.

use std::net::IpAddr;

use tlsgate_core::config::{Scheme, UpstreamScheme, UpstreamTls};
use tlsgate_core::Endpoint;

use super::resources::*;
use super::secrets::{ca_entry, one_file, private_key_pem, source, SecretPlan};
use super::{Error, Site, GATEWAY_NAME};

/// The endpoint's VirtualService, and the Service host it routes to.
pub(super) fn virtual_service(
    site: &Site<'_>,
    warnings: &mut Vec<String>,
    metadata: &impl Fn(String) -> Metadata,
) -> Result<(String, Resource<VirtualServiceSpec>), Error> {
    let (endpoint, here, host, name) = (site.endpoint, &site.here, &site.host, &site.name);
    let unsupported = |field: String, what: String| site.unsupported(field, what);
    // Where the connection goes: the VirtualService.
    let upstream = &endpoint.upstream;
    if upstream.host.parse::<IpAddr>().is_ok() {
        return Err(unsupported(
            "upstream.url".into(),
            format!(
                "{}: Istio routes to a service name, not an address; name the Kubernetes \
                 Service (my-service.my-namespace:{}) or a ServiceEntry's host",
                upstream.url, upstream.port
            ),
        ));
    }
    let (service, in_cluster) = service_host(&upstream.host);
    if !in_cluster {
        warnings.push(format!(
            "{here}: upstream.url: {} is not a Kubernetes Service name; Istio routes to it \
             only when a ServiceEntry declares {service}",
            upstream.url
        ));
    }
    if upstream.address.is_some() {
        warnings.push(format!(
            "{here}: upstream: --resolve does not apply in a cluster; Istio resolves {service}"
        ));
    }
    let destination = vec![RouteDestination {
        destination: Destination {
            host: service.clone(),
            port: PortSelector {
                number: upstream.port,
            },
        },
    }];
    let (http, tcp) = match endpoint.scheme {
        Scheme::Https => (
            Some(vec![HttpRoute {
                route: destination,
                rewrite: Rewrite {
                    authority: upstream.authority(),
                },
            }]),
            None,
        ),
        Scheme::Tls => (None, Some(vec![TcpRoute { route: destination }])),
    };
    let virtual_service = Resource {
        api_version: "networking.istio.io/v1",
        kind: "VirtualService",
        metadata: metadata(format!("tlsgate-{name}")),
        spec: VirtualServiceSpec {
            hosts: vec![host.clone()],
            gateways: vec![GATEWAY_NAME],
            export_to: vec!["."],
            http,
            tcp,
        },
    };
    Ok((service, virtual_service))
}

/// The DestinationRule for the endpoint's upstream `service`, when it is reached over TLS: added
/// to `rules` (host, rule, the endpoint that made it), or checked against the one there.
pub(super) fn destination_rule(
    site: &Site<'_>,
    service: String,
    rules: &mut Vec<(String, Resource<DestinationRuleSpec>, String)>,
    secrets: &mut Vec<SecretPlan>,
    metadata: &impl Fn(String) -> Metadata,
) -> Result<(), Error> {
    let (endpoint, here, name) = (site.endpoint, &site.here, &site.name);
    let unsupported = |field: String, what: String| site.unsupported(field, what);
    let upstream = &endpoint.upstream;
    // How: the DestinationRule, for upstreams over TLS.
    let upstream_tls = match (&upstream.tls, upstream.scheme) {
        (Some(t), UpstreamScheme::Https | UpstreamScheme::Tls) => Some(t),
        _ => None,
    };
    let Some(utls) = upstream_tls else {
        return Ok(());
    };
    let (client_tls, secret) = client_tls(utls, name, endpoint, &unsupported)?;
    match rules.iter().find(|(h, _, _)| *h == service) {
        // Istio applies one DestinationRule per host: two endpoints may share it when they
        // reach the upstream alike. The Secret is named after the endpoint that made the rule,
        // so compare everything else, and the Secret's contents.
        Some((_, rule, first)) => {
            let theirs = &rule.spec.traffic_policy.tls;
            let their_secret = theirs
                .credential_name
                .as_ref()
                .and_then(|n| secrets.iter().find(|s| &s.name == n));
            let same = ClientTls {
                credential_name: theirs.credential_name.clone(),
                ..client_tls
            } == *theirs
                && same_contents(secret.as_ref(), their_secret);
            if !same {
                return Err(unsupported(
                    "upstream.tls".into(),
                    format!(
                        "{service} is also the upstream of {first} with other TLS settings; \
                         Istio applies one DestinationRule per host, so give both endpoints the \
                         same upstream.tls"
                    ),
                ));
            }
        }
        None => {
            secrets.extend(secret);
            rules.push((
                service.clone(),
                Resource {
                    api_version: "networking.istio.io/v1",
                    kind: "DestinationRule",
                    metadata: metadata(format!("tlsgate-{name}-upstream")),
                    spec: DestinationRuleSpec {
                        host: service,
                        export_to: vec!["."],
                        traffic_policy: TrafficPolicy { tls: client_tls },
                    },
                },
                here.clone(),
            ));
        }
    }
    Ok(())
}

/// Whether two Secrets hold the same keys and PEM (where each came from does not matter).
fn same_contents(a: Option<&SecretPlan>, b: Option<&SecretPlan>) -> bool {
    fn entries(s: Option<&SecretPlan>) -> Vec<(&str, &str)> {
        s.map(|s| {
            s.entries
                .iter()
                .map(|(k, pem, _)| (*k, pem.as_str()))
                .collect()
        })
        .unwrap_or_default()
    }
    a.map(|s| s.kind_of) == b.map(|s| s.kind_of) && entries(a) == entries(b)
}

/// Upstream TLS as a DestinationRule's `tls`, and the Secret it names.
fn client_tls(
    tls: &UpstreamTls,
    name: &str,
    endpoint: &Endpoint,
    unsupported: &dyn Fn(String, String) -> Error,
) -> Result<(ClientTls, Option<SecretPlan>), Error> {
    // Refused: a pin is how the policy accepts (or narrows to) one upstream key, and Istio's
    // ClientTLSSettings has no verifyCertificateSpki. Dropping it would accept any certificate
    // the CA issued for the name; the filter never sees the upstream's certificate to re-check.
    if !tls.pinned_spki_sha256.is_empty() {
        return Err(unsupported(
            "upstream.tls.pinned_certificates".into(),
            "Istio's DestinationRule cannot pin an upstream key (ClientTLSSettings has no \
             verifyCertificateSpki), and leaving the pin out would accept any certificate the CA \
             issued for the name. Give the upstream a certificate with its name in \
             subjectAltName and drop the pin, or run this endpoint on plain Envoy"
                .into(),
        ));
    }
    let mut entries = Vec::new();
    let mode = match (&tls.client_certificate, &tls.client_key) {
        (Some(chain), Some(key)) => {
            entries.push((
                "tls.crt",
                chain.to_pem(),
                source(
                    endpoint,
                    one_file(std::iter::once(&chain.origin)),
                    "inlined in the policy",
                ),
            ));
            entries.push((
                "tls.key",
                private_key_pem(key),
                source(
                    endpoint,
                    one_file(std::iter::once(&key.origin)),
                    "inlined in the policy",
                ),
            ));
            ClientTlsMode::Mutual
        }
        (Some(_), None) => {
            return Err(Error::MissingMaterial {
                endpoint: endpoint.index,
                url: endpoint.url.clone(),
                what: "upstream.tls.client_certificate.private_key",
            })
        }
        (None, _) => ClientTlsMode::Simple,
    };
    // No CAs: Istio verifies against the proxy's OS trust store, as tlsgate uses the system's.
    if let Some(authorities) = &tls.authorities {
        entries.push(ca_entry(endpoint, authorities));
    }
    let secret = (!entries.is_empty()).then(|| SecretPlan {
        name: format!("tlsgate-{name}-upstream"),
        kind_of: if mode == ClientTlsMode::Mutual {
            "kubernetes.io/tls"
        } else {
            "Opaque"
        },
        entries,
    });
    let is_ip = tls.server_name.parse::<IpAddr>().is_ok();
    let client_tls = ClientTls {
        mode,
        credential_name: secret.as_ref().map(|s| s.name.clone()),
        sni: (!is_ip).then(|| tls.server_name.clone()),
        // Always the name: a private CA is no reason to accept every certificate it issued.
        subject_alt_names: vec![tls.server_name.clone()],
    };
    Ok((client_tls, secret))
}

/// The Kubernetes Service host Istio routes to for an upstream host, read as tlsgate reads
/// manifests (`--resolve`): `name` is a Service in `default`, `name.namespace` a Service in
/// that namespace, `….svc` / `….svc.cluster.local` as written; anything longer is an external
/// name, which Istio routes only when a ServiceEntry declares it.
pub(super) fn service_host(host: &str) -> (String, bool) {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.ends_with(".svc.cluster.local") {
        return (host, true);
    }
    if host.ends_with(".svc") {
        return (format!("{host}.cluster.local"), true);
    }
    match host.matches('.').count() {
        0 => (format!("{host}.default.svc.cluster.local"), true),
        1 => (format!("{host}.svc.cluster.local"), true),
        _ => (host, false),
    }
}
