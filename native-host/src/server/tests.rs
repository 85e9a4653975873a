//! One source address's share of the connection slots.

use super::*;

#[test]
fn one_address_gets_its_share_and_gives_it_back() {
    let limiter = Arc::new(SourceLimiter::new(2));
    let a: std::net::IpAddr = [127, 0, 0, 2].into();
    let b: std::net::IpAddr = [127, 0, 0, 3].into();
    let first = limiter.acquire(a).expect("first");
    let _second = limiter.acquire(a).expect("second");
    assert!(
        limiter.acquire(a).is_none(),
        "a third from the same address"
    );
    assert!(
        limiter.acquire(b).is_some(),
        "another address is unaffected"
    );
    drop(first);
    assert!(limiter.acquire(a).is_some(), "a slot came back");
}
