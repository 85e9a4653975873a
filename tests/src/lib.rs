//! Harness for tlsgate's end-to-end tests: real processes on `127.0.0.1`, real clients.
//!
//! The tests in `tests/tests/*.rs` start the `tlsgate` binary ([`tlsgate_bin`]) or Envoy with the
//! built filter ([`tool`]`("envoy")`, [`filter_wasm`]) as [`Proc`]esses on [`free_port`]s, put an
//! [`echo_upstream`] behind them, and talk to them with [`Curl`] and [`openssl_s_client`].
//! Certificates and policies (`PolicyBuilder`) come from [`tlsgate_test_support`].
//!
//! Two rules hold everywhere:
//!
//! - **Fail, never skip.** A missing tool or a failed build panics with the `make` target that
//!   fixes it, so a green run means every component was really exercised.
//! - **Every wait is bounded.** Helpers take or impose a timeout, and [`Proc`] kills its process
//!   on drop, so a broken build makes tests fail rather than hang.
//!
//! ```no_run
//! use std::time::Duration;
//! use tlsgate_e2e::{echo_upstream, free_port, tlsgate_bin, wait_port, Curl, Proc};
//!
//! let upstream = echo_upstream();
//! let port = free_port();
//! let mut cmd = std::process::Command::new(tlsgate_bin());
//! cmd.args(["--config", "tlsgate.yaml"]); // whatever the CLI expects
//! let gate = Proc::spawn("tlsgate", cmd);
//! wait_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}\n{}", gate.log()));
//! let res = Curl::https("localhost", port, "/hello").ca("ca.crt").run();
//! assert_eq!(res.status, Some(200), "{res:?}");
//! # let _ = upstream;
//! ```

// Panicking with a message is how a harness helper fails the test that called it.
#![allow(clippy::panic, clippy::expect_used)]

mod artifacts;
mod clients;
mod metrics;
mod net;
mod process;
mod upstream;

pub use artifacts::{filter_wasm, repo_root, target_dir, tlsgate_bin, tool};
pub use clients::{curl, openssl_s_client, run_bounded, Curl, CurlResult, RunResult};
pub use metrics::{prometheus_series, prometheus_value};
pub use net::{free_port, localhost, wait_port};
pub use process::{Proc, Signal};
pub use upstream::{
    echo_upstream, echo_upstream_expecting_proxy_protocol, EchoUpstream, EchoedRequest,
};

#[cfg(test)]
mod tests;
