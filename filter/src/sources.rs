//! `--max-connections-per-source` behind Envoy, which has no per-address connection limit.
//!
//! `tlsgate envoy-config` passes the cap to the VM as the environment variable
//! [`VARIABLE`]; the network role counts each worker's open connections per client address
//! (after the `proxy_protocol` listener filter, so a trusted balancer's clients are counted
//! each by its own address) and closes one past the cap before its handshake runs. Envoy's
//! listener filters have by then seen a ClientHello: a silent socket is bounded by the
//! ClientHello deadline (`listener_filters_timeout`) instead, and by the overload manager's
//! global cap. Counts live in the worker's VM, so the cap applies per worker (Envoy's
//! `--concurrency`); a VM that goes away takes its counts with it, so nothing can leak into a
//! lockout.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

/// The environment variable that carries the cap.
pub(crate) const VARIABLE: &str = "TLSGATE_MAX_CONNECTIONS_PER_SOURCE";

thread_local! {
    static OPEN: RefCell<HashMap<IpAddr, usize>> = RefCell::new(HashMap::new());
}

/// The cap from the VM's environment: `Ok(None)` without one (a configuration written by
/// hand); `Err` for a value that is not a positive integer, which the plugin refuses.
pub(crate) fn cap() -> Result<Option<usize>, String> {
    match std::env::var(VARIABLE) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{VARIABLE} is not text")),
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!(
                "{VARIABLE}={text:?} is not a positive number of connections"
            )),
        },
    }
}

/// One connection counted against its address; uncounts when dropped.
#[derive(Debug)]
pub(crate) struct Counted(IpAddr);

/// Counts a connection from `ip`, or `None` when `ip` already holds `cap` of this worker's.
pub(crate) fn acquire(ip: IpAddr, cap: usize) -> Option<Counted> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let count = open.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(Counted(ip))
    })
}

impl Drop for Counted {
    fn drop(&mut self) {
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            if let Some(count) = open.get_mut(&self.0) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    open.remove(&self.0);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_its_share_and_gets_it_back() {
        let (a, b): (IpAddr, IpAddr) = ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        let first = acquire(a, 2);
        let second = acquire(a, 2);
        assert!(first.is_some() && second.is_some());
        assert!(acquire(a, 2).is_none(), "a third from the same address");
        assert!(acquire(b, 2).is_some(), "another address has its own share");
        drop(first);
        assert!(
            acquire(a, 2).is_some(),
            "a closed connection frees its slot"
        );
        OPEN.with(|open| assert!(!open.borrow().contains_key(&b), "empty entries are removed"));
    }
}
