//! Conversions between std types and the protobuf ones every crate needs
//! (durations, socket addresses), written once.
//!
//! Owns: the pure mapping, and refusing what does not map (a negative
//! duration, an address that is not an IP and port).
//! Must never: hold any other logic.

use std::net::SocketAddr;
use std::time::Duration;

use crate::envoy::config::core::v3::address::Address as AddressKind;
use crate::envoy::config::core::v3::socket_address::PortSpecifier;
use crate::envoy::config::core::v3::{Address, SocketAddress};
use crate::google::protobuf::Duration as ProtoDuration;

/// `duration` as protobuf (saturating at the largest one).
pub fn proto_duration(duration: Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf duration as std, normalised first as prost does (nanos of a
/// second or more carry into the seconds); `None` if negative.
pub fn std_duration(duration: &ProtoDuration) -> Option<Duration> {
    Duration::try_from(prost_types::Duration {
        seconds: duration.seconds,
        nanos: duration.nanos,
    })
    .ok()
}

/// `address` as an xDS socket address (TCP, port value).
pub fn proto_address(address: SocketAddr) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: address.ip().to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(address.port()))),
            ..Default::default()
        })),
    }
}

/// An xDS address as an IP and port; `None` for anything else (a pipe, a
/// host name, a named port, a port out of range).
pub fn socket_addr(address: &Address) -> Option<SocketAddr> {
    let Some(AddressKind::SocketAddress(socket)) = &address.address else {
        return None;
    };
    let Some(PortSpecifier::PortValue(port)) = socket.port_specifier else {
        return None;
    };
    let ip = socket.address.parse().ok()?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_addresses_go_both_ways_and_refuse_what_does_not_map() {
        let duration = Duration::from_millis(2500);
        assert_eq!(std_duration(&proto_duration(duration)), Some(duration));
        let negative = ProtoDuration {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(std_duration(&negative), None);
        let carried = ProtoDuration {
            seconds: 1,
            nanos: 1_000_000_000,
        };
        assert_eq!(std_duration(&carried), Some(Duration::from_secs(2)));
        for text in ["10.0.0.7:50051", "[fd00::7]:443"] {
            let address: SocketAddr = text.parse().unwrap_or_else(|_| panic!("{text}"));
            assert_eq!(socket_addr(&proto_address(address)), Some(address));
        }
        let named = Address {
            address: Some(AddressKind::SocketAddress(SocketAddress {
                address: "greeter.default".into(),
                port_specifier: Some(PortSpecifier::PortValue(80)),
                ..Default::default()
            })),
        };
        assert_eq!(socket_addr(&named), None);
    }
}
