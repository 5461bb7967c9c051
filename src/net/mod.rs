//! The network side of the box: how backup agents on client machines talk to it.
//!
//! Agents connect over TCP with mutual TLS. [`frame`] is the wire protocol inside that TLS
//! stream, as data: versioned, length-bounded frames, the messages they carry, a sans-io
//! decoder and thin async read/write helpers. It knows nothing of sockets, certificates or
//! sessions; the TLS, CA and service layers sit above it and call into it, never the reverse.

pub mod frame;
