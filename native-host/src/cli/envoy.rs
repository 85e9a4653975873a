//! `tlsgate envoy-config` and `tlsgate istio`: generate Envoy's bootstrap or Istio's resources.

use std::path::PathBuf;
use std::process::ExitCode;

use tlsgate::keys::RustlsKeyCheck;
use tlsgate::limits::Limits;
use tlsgate_core::{Config, Deployment, KeyMode};

use super::{exit_code, print_load_notes, write_private};

pub(crate) fn envoy_config(
    files: &[PathBuf],
    deployment: &Deployment,
    wasm: PathBuf,
    output: Option<PathBuf>,
    admin: std::net::SocketAddr,
    limits: Limits,
) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        // Load with keys so a policy Envoy would choke on is refused here, with our message.
        let config = Config::load_files(files, KeyMode::Load(&RustlsKeyCheck), deployment)?;
        print_load_notes(&config);
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
            limits,
            ocsp_staples: tlsgate::stapling::fetch_for_envoy(&config),
        };
        let bootstrap = tlsgate_envoy::generate(&config, &options)?;
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
    exit_code(result)
}

pub(crate) fn istio(
    files: &[PathBuf],
    options: &tlsgate_envoy::istio::Options,
    output: Option<PathBuf>,
) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        // The same loader as `check`: a bad policy is reported with its file, line and field.
        // Keys are loaded (and checked against their certificates) for the Secrets.
        let config = Config::load_files(files, KeyMode::Load(&RustlsKeyCheck), Deployment::none())?;
        print_load_notes(&config);
        let resources = tlsgate_envoy::istio::generate(&config, options)?;
        for warning in &resources.warnings {
            eprintln!("warning: {warning}");
        }
        match output {
            // With --with-secrets the file holds private keys.
            Some(path) if options.with_secrets => write_private(&path, &resources.yaml)?,
            Some(path) => std::fs::write(&path, &resources.yaml)?,
            None => print!("{}", resources.yaml),
        }
        Ok(())
    })();
    exit_code(result)
}
