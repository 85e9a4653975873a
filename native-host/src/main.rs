//! `tlsgate`: run the native edge, validate policies, generate Envoy config, make certificates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tlsgate::certs::{CertsOptions, KeyType};
use tlsgate::limits::{HumanDuration, Limits};
use tlsgate::logging::LogFormat;
use tlsgate::server::RunOptions;
use tlsgate_core::Deployment;

mod cli;

use cli::{certs, check, envoy_config, istio, print_filter_policy, run};

#[derive(Parser, Debug)]
#[command(
    name = "tlsgate",
    version,
    about = "A self-hosted TLS edge: terminate TLS, enforce mTLS, proxy over mTLS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the native edge: terminate TLS, enforce the policy, proxy to the upstreams.
    ///
    /// SIGTERM drains and exits 0; SIGHUP (or a change to any referenced file) reloads.
    Run {
        /// Policy file, Kubernetes manifest (YAML or JSON) or a directory of them; repeat for several.
        #[arg(short = 'c', long = "config", required = true)]
        config: Vec<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics (keep it on a private address).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Hold access lines in a buffer of this size (e.g. 64k) and write them together, as
        /// nginx's `access_log … buffer=`; any other line, a full buffer, the flush interval
        /// and exit write them out. 0 (the default) writes each line as it is made.
        #[arg(long, value_name = "SIZE", default_value = "0", value_parser = tlsgate::logging::parse_size)]
        access_log_buffer: usize,
        /// With --access-log-buffer: the longest an access line waits in the buffer.
        #[arg(long, value_name = "TIME", default_value_t = HumanDuration(Duration::from_secs(1)))]
        access_log_flush: HumanDuration,
        #[command(flatten)]
        limits: LimitsArgs,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Make ca.crt/key, server.crt/key and client.crt/key (clientAuth EKU) in a directory.
    Certs {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Host name or IP address for the server certificate; repeat for several.
        #[arg(long = "name", default_value = "localhost")]
        names: Vec<String>,
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        key_type: KeyType,
        /// Common name of the CA.
        #[arg(long, default_value = "ExampleCA")]
        ca_name: String,
        /// Common name of the client certificate.
        #[arg(long, default_value = "ExampleClient")]
        client_name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Validate policy files and print one line per endpoint.
    Check {
        /// Policy file, Kubernetes manifest (YAML or JSON) or a directory of them; repeat for several.
        #[arg(short = 'c', long = "config", required = true)]
        config: Vec<PathBuf>,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Show what a policy does with a client certificate, server name and request, step by
    /// step, without running a proxy: the endpoint chosen, the certificate's class, each rule's
    /// expressions and values, the verdict and what the upstream would receive.
    Eval {
        /// Policy file, Kubernetes manifest (YAML or JSON) or a directory of them; repeat for several.
        #[arg(short = 'c', long = "config", required = true)]
        config: Vec<PathBuf>,
        /// The server name the client sends.
        #[arg(long)]
        sni: Option<String>,
        /// The client certificate (PEM), optionally followed by its intermediates. Never a
        /// private key: eval does not need one and refuses to read it.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// More intermediates (PEM); repeatable.
        #[arg(long)]
        chain: Vec<PathBuf>,
        /// The TLS version the client offers (default: the endpoint's highest).
        #[arg(long, value_parser = ["1.2", "1.3"])]
        tls: Option<String>,
        /// The key-exchange groups the client offers, e.g. 'X25519,P-256' (default: all).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        /// The client's JA4 fingerprint, for conn.tls.ja4_fingerprint (default: none).
        #[arg(long)]
        ja4: Option<String>,
        /// The client's address, for restrict-ips and conn.client_ip.
        #[arg(long, default_value = "127.0.0.1")]
        client_ip: std::net::IpAddr,
        /// The listener, when the server name is served on several.
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// A request: 'METHOD URL', e.g. 'GET https://app.example.com/admin'.
        #[arg(long)]
        request: Option<String>,
        /// A request header, 'name: value'; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        format: String,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Serve the browser playground (docs/playground/, built by `make playground`): paste a
    /// policy and a certificate, see the decision. Nothing pasted leaves the browser.
    Playground {
        /// Where to serve it (keep it on loopback or a private address).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The playground's directory.
        #[arg(long, default_value = "docs/playground")]
        dir: PathBuf,
    },
    /// Write an Envoy bootstrap that runs the same policy with the tlsgate proxy-wasm filter.
    EnvoyConfig {
        /// Policy file, Kubernetes manifest (YAML or JSON) or a directory of them; repeat for several.
        #[arg(short = 'c', long = "config", required = true)]
        config: Vec<PathBuf>,
        /// The built filter (`make wasm` puts it in target/wasm32-wasip1/release-wasm/).
        #[arg(long)]
        wasm: PathBuf,
        /// Where to write the bootstrap; certificates inlined in the policy go beside it.
        /// Default: standard output (only when the policy references certificate files).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Envoy's admin address (keep it on loopback).
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: std::net::SocketAddr,
        /// The same deadlines and bounds as `tlsgate run`, rendered into the bootstrap.
        #[command(flatten)]
        limits: LimitsArgs,
        /// Print only the filter's plugin configuration (the policy with certificates
        /// inlined and private keys removed), e.g. for an Istio WasmPlugin's pluginConfig.
        #[arg(long, conflicts_with = "output")]
        filter_policy: bool,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Write the Istio resources that run the same policy in an ingress gateway: a Gateway
    /// (TLS per host), VirtualServices, DestinationRules (upstream TLS) and two WasmPlugins
    /// carrying the policy. What Istio cannot express is refused or warned about
    /// (docs/istio.md).
    Istio {
        /// Policy file, Kubernetes manifest (YAML or JSON) or a directory of them; repeat for several.
        #[arg(short = 'c', long = "config", required = true)]
        config: Vec<PathBuf>,
        /// Where the gateway fetches tlsgate_filter.wasm: oci://REGISTRY/IMAGE:TAG,
        /// https://HOST/tlsgate_filter.wasm (with --sha256) or file:///PATH in the proxy image.
        #[arg(long)]
        wasm_url: String,
        /// The module's SHA-256 in hex (`sha256sum tlsgate_filter.wasm`); Istio refuses a
        /// download that does not match.
        #[arg(long)]
        sha256: Option<String>,
        /// The gateway's namespace; every resource and Secret goes there.
        #[arg(long, default_value = "istio-ingress")]
        namespace: String,
        /// KEY=VALUE: a label of the gateway's pods; repeatable (default istio=ingressgateway).
        #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_label)]
        selector: Vec<(String, String)>,
        /// The gateway Service's HTTPS port the servers are on.
        #[arg(long, default_value_t = 443)]
        port: u16,
        /// Also write the Secrets, private keys included (otherwise the output holds no key
        /// and its header lists the `kubectl create secret` commands).
        #[arg(long)]
        with_secrets: bool,
        /// Where to write the resources (default: standard output).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
}

/// `--selector KEY=VALUE`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}`: write KEY=VALUE, e.g. istio=ingressgateway"))
}

/// Where manifests meet this machine; shared by `run`, `check` and `envoy-config`.
#[derive(clap::Args, Debug, Clone)]
struct DeploymentArgs {
    /// PORT=ADDR:PORT: an endpoint a Kubernetes manifest puts on PORT (443 for an https://
    /// URL, a Gateway listener's port) listens on ADDR:PORT instead of 0.0.0.0:PORT. Repeatable.
    #[arg(long = "listen", value_name = "PORT=ADDR:PORT")]
    listen: Vec<tlsgate_core::Listen>,
    /// NAME[.NAMESPACE]:PORT=ADDR:PORT (curl's convention): reach the upstream NAME:PORT (a
    /// Service, outside its cluster) at ADDR:PORT; the name is still sent in SNI and Host.
    /// Repeatable.
    #[arg(long = "resolve", value_name = "NAME:PORT=ADDR:PORT")]
    resolve: Vec<tlsgate_core::Resolve>,
}

impl From<DeploymentArgs> for Deployment {
    fn from(a: DeploymentArgs) -> Self {
        Deployment {
            listen: a.listen,
            resolve: a.resolve,
        }
    }
}

/// Deadlines and bounds, shared by `run` and `envoy-config` so both hosts get the same values.
/// Defaults come from `tlsgate_core::limits::Limits::DEFAULT`, the one definition.
#[derive(clap::Args, Debug, Clone, Copy)]
struct LimitsArgs {
    /// Deadline for a complete ClientHello after accept.
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.client_hello))]
    client_hello_timeout: HumanDuration,
    /// Deadline for the ClientHello and the TLS handshake together.
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.handshake))]
    handshake_timeout: HumanDuration,
    /// Deadline for the first request's headers after the handshake.
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.first_request))]
    first_request_timeout: HumanDuration,
    /// Deadline for a request's headers.
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.request_headers))]
    header_timeout: HumanDuration,
    /// Close a connection after this long without an open request (or, tls://, traffic).
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.idle))]
    idle_timeout: HumanDuration,
    /// Reset a request whose body stops moving in either direction for this long.
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.stream_idle))]
    stream_idle_timeout: HumanDuration,
    /// Deadline for connecting (TCP + TLS) to an upstream; past it the client gets 504.
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.upstream_connect))]
    connect_timeout: HumanDuration,
    /// Deadline for an upstream's response head; past it the client gets 504.
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.upstream_response))]
    upstream_timeout: HumanDuration,
    /// How long SIGTERM waits for in-flight work before exiting.
    #[arg(long, default_value_t = HumanDuration(Limits::DEFAULT.drain))]
    drain_timeout: HumanDuration,
    /// Client connections served at once; further ones wait to be accepted.
    #[arg(long, default_value_t = Limits::DEFAULT.max_connections)]
    max_connections: usize,
    /// Client connections at once from one address; further ones are closed at accept.
    #[arg(long, default_value_t = Limits::DEFAULT.max_connections_per_source)]
    max_connections_per_source: usize,
    /// HTTP/2 streams open at once on one client connection.
    #[arg(long, default_value_t = Limits::DEFAULT.max_concurrent_streams)]
    max_concurrent_streams: u32,
    /// Requests in flight to one endpoint's upstream; further ones are answered 503.
    #[arg(long, default_value_t = Limits::DEFAULT.max_upstream_requests)]
    max_upstream_requests: usize,
}

impl From<LimitsArgs> for Limits {
    fn from(a: LimitsArgs) -> Self {
        Limits {
            client_hello: a.client_hello_timeout.0.min(a.handshake_timeout.0),
            handshake: a.handshake_timeout.0,
            first_request: a.first_request_timeout.0,
            request_headers: a.header_timeout.0,
            idle: a.idle_timeout.0,
            stream_idle: a.stream_idle_timeout.0,
            upstream_connect: a.connect_timeout.0,
            upstream_response: a.upstream_timeout.0,
            drain: a.drain_timeout.0,
            max_connections: a.max_connections.max(1),
            max_connections_per_source: a.max_connections_per_source.max(1),
            max_concurrent_streams: a.max_concurrent_streams.max(1),
            max_upstream_requests: a.max_upstream_requests.max(1),
        }
    }
}

/// jemalloc, not glibc's malloc: allocation was a fifth of a kept-alive request's instructions
/// under glibc (`make profile`), 4% under jemalloc, with no more memory per idle connection
/// (docs/performance.md, "Allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            metrics,
            log_format,
            access_log_buffer,
            access_log_flush,
            limits,
            deployment,
        } => {
            let _log = tlsgate::logging::init(
                log_format,
                Some(tlsgate::logging::Buffering {
                    size: access_log_buffer,
                    flush: access_log_flush.0,
                }),
            );
            run(RunOptions {
                files: config,
                deployment: deployment.into(),
                limits: limits.into(),
                metrics,
            })
        }
        Command::Certs {
            out,
            names,
            key_type,
            ca_name,
            client_name,
            days,
        } => certs(&CertsOptions {
            out,
            names,
            key_type,
            ca_name,
            client_name,
            days,
        }),
        Command::Check { config, deployment } => check(&config, &deployment.into()),
        Command::Playground { listen, dir } => {
            let _log = tlsgate::logging::init(LogFormat::Text, None);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(tlsgate::playground::serve(listen, dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Eval {
            config,
            sni,
            cert,
            chain,
            tls,
            groups,
            ja4,
            client_ip,
            bind,
            request,
            headers,
            format,
            deployment,
        } => {
            let run = || -> anyhow::Result<tlsgate_core::eval::Evaluation> {
                let policy = tlsgate::eval::load(&config, &deployment.into())?;
                let mut certificate = None;
                if cert.is_none() && !chain.is_empty() {
                    anyhow::bail!(
                        "--chain gives intermediates of a --cert: give the certificate too"
                    );
                }
                for path in cert.iter().chain(chain.iter()) {
                    let bytes = std::fs::read(path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                    certificate.get_or_insert_with(Vec::new).extend(bytes);
                    certificate.get_or_insert_with(Vec::new).push(b'\n');
                }
                let headers = headers
                    .iter()
                    .map(|h| {
                        h.split_once(':')
                            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                            .ok_or_else(|| anyhow::anyhow!("-H {h:?}: write 'name: value'"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let input = tlsgate_core::eval::EvalInput {
                    sni,
                    bind,
                    certificate,
                    version: tls.as_deref().map(|v| match v {
                        "1.2" => tlsgate_core::TlsVersion::Tls12,
                        _ => tlsgate_core::TlsVersion::Tls13,
                    }),
                    groups,
                    ja4,
                    client_ip,
                    request,
                    headers,
                    now: tlsgate::clock::unix_now(),
                };
                let verifier = tlsgate::eval::WebPki::default();
                Ok(tlsgate_core::eval::evaluate(&policy, &input, &verifier)?)
            };
            match run() {
                Ok(eval) => {
                    if format == "json" {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&eval.to_json()).unwrap_or_default()
                        );
                    } else {
                        print!("{}", eval.to_text());
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::EnvoyConfig {
            config,
            wasm,
            output,
            admin,
            limits,
            filter_policy,
            deployment,
        } => {
            let deployment = deployment.into();
            if filter_policy {
                print_filter_policy(&config, &deployment)
            } else {
                envoy_config(&config, &deployment, wasm, output, admin, limits.into())
            }
        }
        Command::Istio {
            config,
            wasm_url,
            sha256,
            namespace,
            selector,
            port,
            with_secrets,
            output,
        } => {
            let mut options = tlsgate_envoy::istio::Options::new(wasm_url);
            options.sha256 = sha256;
            options.namespace = namespace;
            if !selector.is_empty() {
                options.selector = selector.into_iter().collect();
            }
            options.port = port;
            options.with_secrets = with_secrets;
            istio(&config, &options, output)
        }
    }
}
