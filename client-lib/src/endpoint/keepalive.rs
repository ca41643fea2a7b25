//! HTTP/2 keepalive PINGs on one connection, while calls are in flight (or
//! always, if asked), so a dead peer is found in seconds.
//!
//! Owns: when to PING and how long to wait for the answer.
//! Must never: PING an idle connection unless asked (gRPC servers punish
//! it by default), or close the connection itself (its driver does, when
//! this gives up).

use std::time::Duration;

use super::in_flight::Calls;

/// PINGs the peer every keepalive interval while calls are in flight (or,
/// `while_idle`, always); returns why it gave up. By default an idle
/// connection is not pinged: gRPC servers
/// (Go, Java, C++) by default count PINGs without calls as abuse and close
/// the connection with GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"), as
/// gRPC's own clients avoid (`permit_without_stream` off). A dead idle
/// connection is then found by the next call, within one interval and
/// timeout; with `while_idle` (`ConnectionSettings::keepalive_while_idle`,
/// for servers that permit it) within one interval and timeout of going
/// silent, and the connection made again at once (after a stable one)
/// ejects an endpoint that went away.
/// A peer that still finds the PINGs too many (grpc-go allows one per five
/// minutes by default without data in between) doubles the interval of
/// the next connection (`Shared::calm_down_if_asked`).
pub(super) async fn keepalive(
    mut ping_pong: h2::PingPong,
    calls: Calls,
    interval: Duration,
    timeout: Duration,
    while_idle: bool,
) -> String {
    loop {
        tokio::time::sleep(interval).await;
        if !while_idle && !calls.any() {
            continue;
        }
        match tokio::time::timeout(timeout, ping_pong.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            // The connection itself ended; its own branch reports it.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => {
                return format!("no answer to a PING within {timeout:?}");
            }
        }
    }
}
