//! The appliance's serial console and front panel.
//!
//! `coffer console --tty DEV` ([`tty`]) runs a line-oriented console on a serial port (or a
//! pty): a person logs in with the board's PIN and runs the box — status, jobs, run, hold,
//! release, cancel, inventory, load, unload, eject, drive online/offline, log, help — through
//! the running service's control socket. It works on a dumb terminal at 115200 8N1: plain
//! ASCII, CR LF line ends, no escape codes unless the person says the terminal takes them.
//!
//! The pure parts: [`line`] (bytes typed to lines), [`command`] (a line to a command),
//! [`session`] (login and the conversation), [`render`] (replies as 80-column text) and
//! [`panel`] (the front panel's two 20-character lines, which the service computes for its
//! status snapshot).

pub mod command;
pub mod line;
pub mod panel;
pub mod render;
pub mod session;
pub mod tty;
