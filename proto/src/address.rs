//! Which endpoint addresses no call can be sent to: one rule, so the
//! control plane never publishes an address its clients would NACK.
//!
//! Owns: the rule (port 0, and IPs that name no one host).
//! Must never: resolve names or touch the network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why no call can be sent to `ip`, if so: it names no one host (the
/// unspecified address, which reaches this host; multicast; broadcast),
/// IPv4-mapped IPv6 forms included.
pub fn unroutable_ip(ip: IpAddr) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if ip.is_unspecified() {
        Some("the unspecified address (it reaches this host)")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("the broadcast address")
    } else {
        None
    }
}

/// Why no call can be sent to `address`, if so: port 0, or see
/// [`unroutable_ip`].
pub fn unroutable(address: SocketAddr) -> Option<&'static str> {
    if address.port() == 0 {
        return Some("port 0");
    }
    unroutable_ip(address.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_name_no_one_host_are_unroutable() {
        let why = |text: &str| unroutable(text.parse().unwrap());
        assert_eq!(why("10.0.0.1:0"), Some("port 0"));
        for address in [
            "0.0.0.0:80",
            "[::]:80",
            "[::ffff:0.0.0.0]:80",
            "224.0.0.1:80",
            "[ff02::1]:80",
            "[::ffff:224.0.0.1]:80",
            "255.255.255.255:80",
            "[::ffff:255.255.255.255]:80",
        ] {
            assert!(why(address).is_some(), "{address}");
        }
        for address in [
            "10.0.0.1:80",
            "[fd00::7]:80",
            "127.0.0.1:80",
            "[fe80::1]:80",
        ] {
            assert_eq!(why(address), None, "{address}");
        }
    }
}
