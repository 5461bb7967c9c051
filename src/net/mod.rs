//! The network side of the box: how backup agents on client machines talk to it.
//!
//! Agents connect over TCP with mutual TLS. [`ca`] is the box's own small certificate
//! authority: it enrols an agent by a one-time token and the fingerprint the operator reads off
//! the box, and makes the TLS configurations of both ends. [`frame`] is the wire protocol inside
//! that TLS stream, as data: versioned, length-bounded frames, the messages they carry, a
//! sans-io decoder and thin async read/write helpers. Neither knows of sessions or jobs; the
//! service and the agent sit above them.

pub mod ca;
pub mod frame;
pub mod token;

use std::time::Duration;

/// Sets an agent connection's socket options: no Nagle delay (small control messages), and
/// keepalives, so that a peer that vanished is found while the connection is idle (about a
/// minute). No TCP user timeout: while a tape is changed the box may not read for minutes, and
/// Linux would count its answered zero-window probes against that timeout and kill a healthy
/// connection. A peer that vanishes mid-transfer is found by the retransmission limit, or
/// sooner by the box's silence limit.
pub fn tune(stream: &tokio::net::TcpStream) {
    use rustix::net::sockopt;
    let _ = stream.set_nodelay(true);
    // Best effort: a kernel without one of these still works, it just notices death later.
    let _ = sockopt::set_socket_keepalive(stream, true);
    let _ = sockopt::set_tcp_keepidle(stream, Duration::from_secs(20));
    let _ = sockopt::set_tcp_keepintvl(stream, Duration::from_secs(5));
    let _ = sockopt::set_tcp_keepcnt(stream, 8);
}
