//! The native host's deadlines and bounds: core's [`Limits`] (one definition for both hosts)
//! plus what only this host has.

use std::time::Duration;

pub use tlsgate_core::limits::{parse_duration, HumanDuration, Limits};

/// How often referenced files are checked for changes (mtime and size).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// How long idle pooled upstream connections are kept.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(60);
