//! coffer: a backup appliance service. See `README.md` for how to run it and the module docs for
//! how each part works.

pub mod agent;
pub mod atomic;
pub mod board;
pub mod catalog;
pub mod clock;
pub mod console;
pub mod control;
pub mod device;
pub mod format;
pub mod fsrestore;
pub mod human;
pub mod index;
pub mod jobs;
pub mod journal;
pub mod library;
pub mod lifecycle;
pub mod net;
pub mod pipeline;
pub mod plan;
pub mod scsi;
pub mod secrets;
pub mod service;
pub mod sim;
pub mod source;
pub mod store;
pub mod tape;
pub mod uring;
