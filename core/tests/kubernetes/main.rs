//! The seeds' Kubernetes manifests load into the same model a policy file does, and their
//! mistakes are reported at the manifest's file, line and field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod common;
mod endpoints;
mod gateway;
mod ingress;
mod manifests;

use common::*;

use std::path::PathBuf;

use base64::Engine as _;
use support::Fixture;
use tlsgate_core::config::{ClientAuth, UpstreamScheme, VerificationStrategy};
use tlsgate_core::error::{ForwardInternal, Reference, Unsupported};
use tlsgate_core::facts::TlsVersion;
use tlsgate_core::{Config, ConfigError, ConfigErrorKind, Deployment, KeyMode};
