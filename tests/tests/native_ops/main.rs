//! Operating the native host: deadlines, reloads with rotated certificates, a bad reload, and
//! a graceful SIGTERM.

// Helpers outside #[test] functions fail the test that called them by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../native_common/mod.rs"]
mod native_common;

mod common;
mod deadlines;
mod reloads;
mod revocation_and_logs;

use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use native_common::start_gate;
use tlsgate_e2e::{echo_upstream, free_port, tlsgate_bin, tool, Curl, Proc, Signal};
use tlsgate_test_support::{Action, Authority, Endpoint, PolicyBuilder, Rule, TerminateTls};
