//! The control protocol between the running service and its clients (`coffer job …`,
//! `coffer status`, the serial console): one JSON object per line over the Unix socket
//! `<state>/control.sock`, a [`Request`] from the client answered by one [`Reply`].
//!
//! The socket is created mode 0660: whoever may write it may run the box, as at its console.
//! Lines are bounded ([`MAX_LINE`]); a longer or malformed line gets an error reply and
//! changes nothing. The server side lives in [`crate::service::control`].

pub mod client;

use serde::{Deserialize, Serialize};

use crate::catalog::LogLevel;

/// The socket's file name in the state directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Longest request or reply line, in bytes (a job file is at most 64 KiB; its JSON escaping
/// and the envelope fit in the rest).
pub const MAX_LINE: usize = 256 << 10;
const _: () = assert!(MAX_LINE >= 2 * crate::catalog::MAX_DEFINITION_LEN + 4096);

/// A request to the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The box at a glance: what `/api/status` shows. (Variants without fields are written
    /// `{}` so that unknown fields are refused for them too.)
    Status {},
    /// Saves a job from the text of a job file; it runs when its schedule says.
    Submit {
        /// The job file's text (TOML, see [`crate::jobs::file`]).
        definition: String,
        /// Submit it held: it does not run until released.
        #[serde(default)]
        hold: bool,
    },
    /// Replaces a job's definition (not while it runs); its next run is computed again.
    Modify {
        /// Job id.
        job: u64,
        /// The new job file's text.
        definition: String,
    },
    /// Jobs, newest first.
    List {},
    /// One job: definition, state history, next run, its log.
    Show {
        /// Job id.
        job: u64,
    },
    /// Keeps a READY job from running.
    Hold {
        /// Job id.
        job: u64,
    },
    /// Lets a held job run again when due.
    Release {
        /// Job id.
        job: u64,
    },
    /// Runs a READY, HOLD, DONE, FAILED or CANCELLED job now.
    Run {
        /// Job id.
        job: u64,
    },
    /// Puts a DONE, FAILED or CANCELLED job back in the queue for its next scheduled time
    /// (now if it has no schedule).
    Resubmit {
        /// Job id.
        job: u64,
    },
    /// Moves a job's next run to a time (`now`, `+30m`, `2026-12-01 22:00`); it is READY then.
    Reschedule {
        /// Job id.
        job: u64,
        /// When.
        at: String,
    },
    /// Cancels a job (every sub-job of a running one); with `reschedule`, it is queued again
    /// for its next scheduled time.
    Cancel {
        /// Job id.
        job: u64,
        /// Queue it again.
        #[serde(default)]
        reschedule: bool,
    },
    /// Deletes a job that is not running.
    Delete {
        /// Job id.
        job: u64,
    },
    /// The activity log, newest last.
    Log {
        /// Only this job's entries.
        #[serde(default)]
        job: Option<u64>,
        /// Only entries at this level or more important.
        #[serde(default = "default_level")]
        level: LogLevel,
        /// At most this many entries.
        #[serde(default = "default_limit")]
        limit: u32,
    },
    /// Runs a command line (`ls`, `restore`, `verify`, `scan`, `journal check`, `media …`)
    /// in the service, on the state it holds. Answered by a stream of replies:
    /// `{"out": text}` and `{"err": text}` as the command writes, then `{"exit": code}`.
    Command {
        /// The arguments after `coffer`.
        argv: Vec<String>,
        /// The client's directory: relative paths are taken from there.
        cwd: String,
    },
    /// A PIN typed at the serial console, checked by the service against the board's: the
    /// service keeps the wrong ones in a row in the journal, so the lockout survives restarts.
    /// Answered with a [`LoginAnswer`].
    Login {
        /// The console's tty, for the log.
        tty: String,
        /// What was typed.
        pin: String,
    },
    /// A tape library: inventory and hands-on operations.
    Media {
        /// The library (default: the board's first).
        #[serde(default)]
        library: Option<String>,
        /// What to do.
        op: crate::library::ops::MediaOp,
    },
}

/// The service's answer to a [`Request::Login`] (the reply's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "login", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoginAnswer {
    /// The PIN is right: logged in.
    Ok {},
    /// The PIN is wrong; the console is now locked for this many seconds (0: not locked).
    Wrong {
        /// Seconds until the next PIN is checked.
        locked_for: u64,
    },
    /// The console is locked: the PIN was not even checked.
    Locked {
        /// Seconds until the next PIN is checked.
        locked_for: u64,
    },
}

fn default_level() -> LogLevel {
    LogLevel::Note
}

fn default_limit() -> u32 {
    50
}

/// The answer to a request: `{"ok": true, "data": …}` or `{"ok": false, "error": "…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// What it returned (null when nothing).
    #[serde(default)]
    pub data: serde_json::Value,
    /// Why it was not, for people: what happened, to what, what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// A success carrying `data`.
    pub fn ok(data: impl Serialize) -> Reply {
        Reply { ok: true, data: serde_json::to_value(data).unwrap_or(serde_json::Value::Null), error: None }
    }

    /// A refusal.
    pub fn err(why: impl std::fmt::Display) -> Reply {
        Reply { ok: false, data: serde_json::Value::Null, error: Some(why.to_string()) }
    }
}

/// Parses one request line; the error says what is wrong with it.
pub fn parse_request(line: &str) -> Result<Request, String> {
    if line.len() > MAX_LINE {
        return Err(format!("request of {} bytes is over the limit of {MAX_LINE}", line.len()));
    }
    serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn requests_round_trip_and_defaults_apply() {
        let r = parse_request(r#"{"request":"log"}"#).unwrap();
        assert_eq!(r, Request::Log { job: None, level: LogLevel::Note, limit: 50 });
        let r = parse_request(r#"{"request":"cancel","job":3,"reschedule":true}"#).unwrap();
        assert_eq!(r, Request::Cancel { job: 3, reschedule: true });
        let r = parse_request(r#"{"request":"login","tty":"/dev/ttyS0","pin":"1234"}"#).unwrap();
        assert_eq!(r, Request::Login { tty: "/dev/ttyS0".into(), pin: "1234".into() });
        for a in
            [LoginAnswer::Ok {}, LoginAnswer::Wrong { locked_for: 30 }, LoginAnswer::Locked { locked_for: 9 }]
        {
            let back: LoginAnswer = serde_json::from_value(serde_json::to_value(a).unwrap()).unwrap();
            assert_eq!(back, a);
        }
        let s = serde_json::to_string(&Request::Submit { definition: "x".into(), hold: true }).unwrap();
        assert_eq!(parse_request(&s).unwrap(), Request::Submit { definition: "x".into(), hold: true });
    }

    #[test]
    fn bad_requests_say_why() {
        for bad in
            ["", "{", r#"{"request":"explode"}"#, r#"{"request":"hold"}"#, r#"{"request":"list","x":1}"#]
        {
            let e = parse_request(bad).unwrap_err();
            assert!(e.starts_with("malformed request"), "{bad}: {e}");
        }
        assert!(parse_request(&" ".repeat(MAX_LINE + 1)).unwrap_err().contains("over the limit"));
    }

    proptest! {
        #[test]
        fn no_line_panics_the_parser(line in "\\PC{0,200}") {
            let _ = parse_request(&line);
        }
    }
}
