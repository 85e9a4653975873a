//! Every load-time error names the file, the field path and the line, and says what to do.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod common;
mod input;
mod rules;
mod settings;
mod tls_block;

use common::*;

use support::{policy, Fixture};
use tlsgate_core::error::{Conflict, UrlProblem};
use tlsgate_core::expr::CompileError;
use tlsgate_core::{ConfigError, ConfigErrorKind};
