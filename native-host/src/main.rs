//! `tlsgate`: run the native edge, validate policies, generate Envoy config, make certificates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tlsgate::keys::RustlsKeyCheck;
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::EnvoyConfig {
            config,
            wasm,
            output,
            admin,
        } => envoy_config(&config, wasm, output, admin),
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

fn envoy_config(
    files: &[PathBuf],
    wasm: PathBuf,
    output: Option<PathBuf>,
    admin: std::net::SocketAddr,
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
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}
