//! The bodies of `tlsgate`'s subcommands; `main.rs` parses the command line and calls them.

use std::process::ExitCode;
use std::time::Duration;

use tlsgate::certs::CertsOptions;
use tlsgate::server::RunOptions;
use tlsgate_core::Config;

mod check;
mod envoy;

pub(crate) use check::{check, print_filter_policy};
pub(crate) use envoy::{envoy_config, istio};

pub(crate) fn run(options: RunOptions) -> ExitCode {
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

pub(crate) fn certs(options: &CertsOptions) -> ExitCode {
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

/// What the loader says beside an error: warnings and notes, on standard error.
fn print_load_notes(config: &Config) {
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    for note in &config.notes {
        eprintln!("note: {note}");
    }
}

/// A generator's outcome as the exit status, its error (if any) on standard error.
fn exit_code(result: anyhow::Result<()>) -> ExitCode {
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
