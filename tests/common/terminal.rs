//! The person's end of a serial console line: a pty's master in the service tests, QEMU's
//! serial socket in the tgt tier. It types lines and waits for text, keeping everything the
//! console sent (the transcript is a test artifact).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

/// The console's prompt once logged in.
pub const PROMPT: &str = "coffer> ";
/// Its prompt before.
pub const PIN_PROMPT: &str = "PIN: ";

/// One end of a console line.
pub struct Terminal<T> {
    line: T,
    /// Everything received.
    pub transcript: Vec<u8>,
    /// Where the last expectation matched.
    seen: usize,
}

/// Opens a pty: the terminal on its master, and the name of the slave for `coffer console`.
pub fn open_pty() -> (Terminal<File>, String) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap().into_string().unwrap();
    (Terminal::new(File::from(master)), name)
}

impl<T: Read + Write + AsFd> Terminal<T> {
    /// A terminal on `line`.
    pub fn new(line: T) -> Terminal<T> {
        Terminal { line, transcript: Vec::new(), seen: 0 }
    }

    /// Sends bytes as typed.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.line.write_all(bytes).map_err(|e| format!("the console line: {e}"))
    }

    /// Reads until one of `wants` has arrived after the last match; returns which, and what
    /// came up to it.
    pub fn wait_any(&mut self, wants: &[&str], within: Duration) -> Result<(usize, String), String> {
        let t0 = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&self.transcript[self.seen..]).into_owned();
            if let Some((i, at, len)) = wants
                .iter()
                .enumerate()
                .filter_map(|(i, w)| text.find(w).map(|at| (i, at, w.len())))
                .min_by_key(|&(_, at, _)| at)
            {
                self.seen += at + len;
                return Ok((i, text[..at + len].to_owned()));
            }
            let Some(left) = within.checked_sub(t0.elapsed()) else {
                return Err(format!(
                    "the console never said {wants:?} within {within:?}; after the last match it said:\n{text}"
                ));
            };
            let mut fds = [PollFd::new(&self.line, PollFlags::IN)];
            let wait =
                Timespec { tv_sec: 0, tv_nsec: left.min(Duration::from_millis(200)).as_nanos() as i64 };
            if poll(&mut fds, Some(&wait)).map_err(|e| format!("poll: {e}"))? > 0 {
                let mut buf = [0u8; 4096];
                match self.line.read(&mut buf) {
                    Ok(0) => return Err(format!("the console line closed; it last said:\n{text}")),
                    Ok(n) => self.transcript.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(format!("the console line: {e}")),
                }
            }
        }
    }

    /// Reads until `want` has arrived after the last match; returns what came up to it.
    pub fn wait_for(&mut self, want: &str, within: Duration) -> Result<String, String> {
        self.wait_any(&[want], within).map(|(_, s)| s)
    }

    /// Types a command and returns its answer, up to the next prompt.
    pub fn ask(&mut self, line: &str) -> Result<String, String> {
        self.send(format!("{line}\r").as_bytes())?;
        self.wait_for(&format!("{line}\r\n"), Duration::from_secs(30))?;
        self.wait_for(PROMPT, Duration::from_secs(120))
    }

    /// Logs in with `pin` (a session left logged in is taken as it is).
    pub fn login(&mut self, pin: &str) -> Result<(), String> {
        // An empty line shows the prompt again without counting as a wrong PIN.
        self.send(b"\r")?;
        let (which, _) = self.wait_any(&[PIN_PROMPT, PROMPT], Duration::from_secs(30))?;
        if which == 0 {
            self.send(format!("{pin}\r").as_bytes())?;
            self.wait_for("logged in: type help for the commands", Duration::from_secs(30))?;
            self.wait_for(PROMPT, Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Logs out.
    pub fn logout(&mut self) -> Result<(), String> {
        self.send(b"logout\r")?;
        self.wait_for("logged out", Duration::from_secs(30))?;
        self.wait_for(PIN_PROMPT, Duration::from_secs(30)).map(|_| ())
    }

    /// What came after the last match.
    pub fn since(&self) -> String {
        String::from_utf8_lossy(&self.transcript[self.seen..]).into_owned()
    }

    /// Like [`Terminal::wait_for`] within a minute, for tests: panics with what came instead.
    pub fn expect(&mut self, want: &str) -> String {
        self.wait_for(want, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Terminal::ask`], for tests: panics when no answer comes.
    pub fn command(&mut self, line: &str) -> String {
        self.ask(line).unwrap_or_else(|e| panic!("`{line}`: {e}"))
    }

    /// Repeats `line` until its answer holds `want` (two minutes at most).
    pub fn until(&mut self, line: &str, want: &str) -> Result<String, String> {
        let t0 = Instant::now();
        loop {
            let answer = self.ask(line)?;
            if answer.contains(want) {
                return Ok(answer);
            }
            if t0.elapsed() > Duration::from_secs(120) {
                return Err(format!("`{line}` never showed {want:?}; last:\n{answer}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
