//! Faults, load and long runs against real processes on loopback, both hosts where it applies:
//! many idle mTLS connections held, slow clients cut at their deadlines while others are served,
//! reloads under load, and a mixed-load soak with memory and descriptors sampled.
//!
//! `make test` runs the short form of each (seconds); `make soak` runs the long form
//! (`TLSGATE_SOAK=1`: 10,000 connections, a minute of reloads, three minutes of soak) and
//! prints the figures `docs/reliability.md` records. Each test prints one `RELIABILITY |` row.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../envoy_harness/mod.rs"]
mod envoy_harness;
#[path = "../h2_client/mod.rs"]
mod h2_client;
#[path = "../native_common/mod.rs"]
mod native_common;

mod common;
mod held_connections;
mod reloads;
mod slow_clients;
mod soak;

use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use native_common::start_gate;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tlsgate_e2e::{
    echo_upstream, free_port, run_bounded, tool, wait_port, Curl, EchoUpstream, Proc, Signal,
};
use tlsgate_test_support::{
    Action, Authority, Endpoint, PolicyBuilder, Rule, TerminateTls, Upstream, UpstreamTls,
    Verification,
};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
