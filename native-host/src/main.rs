//! `tlsgate`: run the native edge, validate policies, generate Envoy config, make certificates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tlsgate::certs::{CertsOptions, KeyType};
use tlsgate::keys::RustlsKeyCheck;
use tlsgate::limits::{parse_duration, Limits};
use tlsgate::logging::LogFormat;
use tlsgate::server::RunOptions;
use tlsgate_core::{Config, KeyMode};

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
        /// Policy file (YAML or JSON); repeat for several.
        #[arg(short = 'c', long = "config", required = true)]
        config: Vec<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics (keep it on a private address).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Deadline for the ClientHello and the TLS handshake together.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        handshake_timeout: Duration,
        /// Deadline for an HTTP/1 request's headers.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        header_timeout: Duration,
        /// Close a connection after this long without traffic.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        idle_timeout: Duration,
        /// Deadline for connecting (TCP + TLS) to an upstream; past it the client gets 504.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        connect_timeout: Duration,
        /// Deadline for an upstream's response head; past it the client gets 504.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        upstream_timeout: Duration,
        /// How long SIGTERM waits for in-flight work before exiting.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        drain_timeout: Duration,
        /// Client connections served at once; further ones wait to be accepted.
        #[arg(long, default_value_t = 10_000)]
        max_connections: usize,
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
        /// Policy file (YAML or JSON); repeat for several.
        #[arg(short = 'c', long = "config", required = true)]
        config: Vec<PathBuf>,
    },
    /// Write an Envoy bootstrap that runs the same policy with the tlsgate proxy-wasm filter.
    EnvoyConfig {
        /// Policy file (YAML or JSON); repeat for several.
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
        /// Deadline for the ClientHello and the TLS handshake together (as for `run`).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        handshake_timeout: Duration,
        /// Print only the filter's plugin configuration (the policy with certificates
        /// inlined and private keys removed), e.g. for an Istio WasmPlugin's pluginConfig.
        #[arg(long, conflicts_with = "output")]
        filter_policy: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            metrics,
            log_format,
            handshake_timeout,
            header_timeout,
            idle_timeout,
            connect_timeout,
            upstream_timeout,
            drain_timeout,
            max_connections,
        } => {
            tlsgate::logging::init(log_format);
            let limits = Limits {
                handshake: handshake_timeout,
                request_headers: header_timeout,
                idle: idle_timeout,
                upstream_connect: connect_timeout,
                upstream_response: upstream_timeout,
                drain: drain_timeout,
                max_connections,
            };
            run(RunOptions {
                files: config,
                limits,
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
        Command::Check { config } => check(&config),
        Command::EnvoyConfig {
            config,
            wasm,
            output,
            admin,
            handshake_timeout,
            filter_policy,
        } => {
            if filter_policy {
                print_filter_policy(&config)
            } else {
                envoy_config(&config, wasm, output, admin, handshake_timeout)
            }
        }
    }
}

fn run(options: RunOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(tlsgate::server::run(options));
    // Connections still open after the drain deadline are dropped here, not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn certs(options: &CertsOptions) -> ExitCode {
    match tlsgate::certs::generate(options) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn check(files: &[PathBuf]) -> ExitCode {
    match Config::load_files(files, KeyMode::Load(&RustlsKeyCheck)) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            for endpoint in &config.endpoints {
                println!("{endpoint}");
            }
            println!(
                "ok: {} endpoint{} in {} file{}",
                config.endpoints.len(),
                if config.endpoints.len() == 1 { "" } else { "s" },
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn print_filter_policy(files: &[PathBuf]) -> ExitCode {
    let result = Config::load_files(files, KeyMode::Load(&RustlsKeyCheck))
        .and_then(|_| tlsgate_core::filter_policy(files));
    match result.map(|policy| serde_json::to_string_pretty(&policy)) {
        Ok(Ok(json)) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn envoy_config(
    files: &[PathBuf],
    wasm: PathBuf,
    output: Option<PathBuf>,
    admin: std::net::SocketAddr,
    handshake_timeout: Duration,
) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        // Load with keys so a policy Envoy would choke on is refused here, with our message.
        let config = Config::load_files(files, KeyMode::Load(&RustlsKeyCheck))?;
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        let filter_policy = tlsgate_core::filter_policy(files)?;
        let out_dir = match &output {
            Some(path) => path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            None => PathBuf::from("."),
        };
        let wasm = std::path::absolute(&wasm)?;
        let options = tlsgate_envoy::Options {
            wasm,
            out_dir: std::path::absolute(&out_dir)?,
            admin,
            handshake_timeout,
        };
        let bootstrap = tlsgate_envoy::generate(&config, &filter_policy, &options)?;
        match output {
            Some(path) => {
                std::fs::create_dir_all(&options.out_dir)?;
                for (name, contents) in &bootstrap.files {
                    write_private(&options.out_dir.join(name), contents)?;
                }
                std::fs::write(&path, &bootstrap.yaml)?;
                eprintln!(
                    "wrote {} ({} supporting files)",
                    path.display(),
                    bootstrap.files.len()
                );
            }
            None if bootstrap.files.is_empty() => print!("{}", bootstrap.yaml),
            None => anyhow::bail!(
                "the policy has inline certificates that must be written to files: pass -o FILE"
            ),
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Writes a file readable only by its owner: it may hold a private key.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    tlsgate::files::write_atomic(path, contents.as_bytes(), 0o600)
}
