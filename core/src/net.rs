//! IP ranges as policies write them: `restrict-ips`, `inCidrRange`.

use std::net::IpAddr;

use ipnet::IpNet;

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address (a /32 or /128).
pub fn parse_range(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports for an IPv4
/// client) as the IPv4 address it is, so IPv4 ranges match it.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_addresses() {
        assert_eq!(parse_range("10.0.0.0/8"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_range("10.1.2.3"), "10.1.2.3/32".parse().ok());
        assert_eq!(parse_range("::1"), "::1/128".parse().ok());
        assert_eq!(parse_range("10.0.0/8"), None);
        let mapped: IpAddr = "::ffff:10.0.0.1"
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(canonical(mapped), IpAddr::from([10, 0, 0, 1]));
    }
}
