//! Decisions come in pairs: for each rule, a client it admits and one it refuses.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod common;
mod http_rules;
mod strategies;
mod tcp_rules;
mod upstream;

use common::*;

use std::net::IpAddr;
use std::sync::Arc;

use support::{policy, Fixture};
use tlsgate_core::expr::RuntimeError;
use tlsgate_core::facts::Unverified;
use tlsgate_core::policy::DenyReason;
use tlsgate_core::{
    ClientCert, ClientCertFacts, Forward, Policy, Request, RequestVerdict, Session, TlsFacts,
    TlsVersion, Verdict,
};
use tlsgate_test_support::{Authority, Eku, Issued, LeafSpec};
