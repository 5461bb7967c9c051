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
