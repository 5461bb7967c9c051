//! The console on a tty: sets the line to raw 8N1 at the board's speed, echoes what is typed
//! ([`super::line`]), runs the [`Session`] and sends its requests to the service over the
//! control socket, one connection per request (so the console outlives service restarts).
//!
//! Ends when the line hangs up (the terminal or pty went away); systemd starts it again.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Mode, OFlags};
use rustix::termios::{ControlModes, OptionalActions, tcgetattr, tcsetattr};

use super::line::Editor;
use super::session::{Session, Step};
use crate::control::client::Client;

/// Why the console cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The tty cannot be opened.
    #[error("cannot open the console's tty {tty}: {error} (check the board's [console] tty)")]
    Open {
        /// The device.
        tty: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// It is not a terminal, or refuses the line settings.
    #[error("{tty} is not a usable terminal: {error} (give a serial port or a pty)")]
    NotTty {
        /// The device.
        tty: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Reading or writing the line failed.
    #[error("the console's tty {tty} failed: {error}")]
    Io {
        /// The device.
        tty: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

/// What the console needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The tty.
    pub tty: PathBuf,
    /// Line speed (bits per second).
    pub baud: u32,
    /// The service's state directory (its control socket).
    pub state: PathBuf,
    /// The box's name, for the greeting.
    pub board: String,
}

/// Runs the console until the line hangs up.
pub fn run(o: &Options) -> Result<(), ConsoleError> {
    let mut tty = open(&o.tty, o.baud)?;
    let io = |error| ConsoleError::Io { tty: o.tty.clone(), error };
    let mut session = Session::new(&o.tty.to_string_lossy(), false);
    let mut editor = Editor::new();
    let say = |tty: &mut File, text: &str| -> Result<(), ConsoleError> {
        // Raw mode: the line discipline adds no CR, so each line end is sent as CR LF.
        tty.write_all(text.replace('\n', "\r\n").as_bytes()).map_err(io)
    };
    say(&mut tty, &format!("\ncoffer console of {}\n{}", super::render::cut(&o.board), session.prompt()))?;
    let mut buf = [0u8; 256];
    loop {
        editor.set_secret(!session.logged_in());
        if !readable(&tty).map_err(io)? {
            if let Some(text) = session.tick(Instant::now()) {
                say(&mut tty, &format!("{text}{}", session.prompt()))?;
            }
            continue;
        }
        let n = match tty.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::WouldBlock => continue,
            // EIO: the other end hung up (a pty's master closed, a modem line dropped).
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        for &b in &buf[..n] {
            let typed = editor.feed(b);
            tty.write_all(&typed.echo).map_err(io)?;
            let Some(line) = typed.line else {
                continue;
            };
            let text = match session.line(&line, Instant::now()) {
                Step::Say(t) => t,
                Step::Ask(req, shape) => {
                    let reply = Client::connect(&o.state).and_then(|mut c| c.call(&req));
                    session.shown(shape, reply.map_err(|e| e.to_string()))
                }
            };
            editor.set_secret(!session.logged_in());
            say(&mut tty, &format!("{text}{}", session.prompt()))?;
        }
    }
}

/// Opens `path` as the console's line: raw, 8 data bits, no parity, 1 stop bit, `baud`.
fn open(path: &Path, baud: u32) -> Result<File, ConsoleError> {
    let fd = rustix::fs::open(path, OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ConsoleError::Open { tty: path.into(), error: e.into() })?;
    let not_tty = |e: rustix::io::Errno| ConsoleError::NotTty { tty: path.into(), error: e.into() };
    let mut t = tcgetattr(&fd).map_err(not_tty)?;
    t.make_raw();
    t.control_modes |= ControlModes::CLOCAL | ControlModes::CREAD;
    t.control_modes -= ControlModes::CSTOPB | ControlModes::PARENB;
    t.set_speed(baud).map_err(not_tty)?;
    tcsetattr(&fd, OptionalActions::Now, &t).map_err(not_tty)?;
    Ok(File::from(fd))
}

/// Waits up to a second for input; false when none came (time for the idle check).
fn readable(tty: &File) -> std::io::Result<bool> {
    let mut fds = [PollFd::new(tty, PollFlags::IN)];
    let second = Timespec { tv_sec: 1, tv_nsec: 0 };
    match poll(&mut fds, Some(&second)) {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
