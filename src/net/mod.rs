//! The box's network service for backup agents on client machines: TCP with mutual TLS, the
//! box its own small certificate authority that enrols agents by a one-time token and the
//! fingerprint the operator reads off the box.

pub mod ca;
