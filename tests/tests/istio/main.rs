//! `tlsgate istio` as a user runs it, and what it writes checked against Istio's own CRD
//! schemas (tests/fixtures/istio/crds.yaml, from istio/api): every field name, type, enum value
//! and required field of every generated resource. `examples/istio/istio.yaml` is the example
//! policy's output, kept current here (certificate bodies elided); regenerate it with
//! `TLSGATE_BLESS=1 cargo test -p tlsgate-e2e --test istio`.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tlsgate_e2e::{repo_root, run_bounded, tlsgate_bin, RunResult};
use tlsgate_test_support::{
    seed_openssl_certs, Authority, Endpoint, Ocsp, PolicyBuilder, TerminateTls, Upstream,
    UpstreamTls, Verification,
};

#[path = "../envoy_harness/mod.rs"]
mod envoy_harness;

mod common;
mod generated;
mod refusals;

use common::*;

const WASM_URL: &str = "oci://registry.example.com/tlsgate/filter:0.1.0";

mod schema;
