//! One person at the console: login with the board's PIN, then commands. Pure: lines in,
//! text and service requests out; the caller ([`super::tty`]) does the I/O.
//!
//! Three wrong PINs lock the console for [`LOCKOUT`]; a login idle for [`IDLE_LOGOUT`] ends.
//! Escape codes are sent only after the person says the terminal understands them (`term
//! ansi`): a dumb terminal at 115200 8N1 gets plain ASCII and CR LF line ends only.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::command::{self, Command, HELP};
use super::render;
use crate::control::{Reply, Request};

/// Wrong PINs in a row before the console locks.
pub const MAX_WRONG_PINS: u32 = 3;
/// How long it stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(30);
/// A login with no input for this long ends.
pub const IDLE_LOGOUT: Duration = Duration::from_secs(15 * 60);

/// How a reply is to be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The status snapshot.
    Status,
    /// The panel lines of the status snapshot.
    Panel,
    /// The job list.
    Jobs,
    /// One job.
    Job,
    /// The activity log.
    Log,
    /// A library report.
    Media,
}

/// What the console does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Show this text (lines end in `\n`; the tty makes them CR LF).
    Say(String),
    /// Send the request to the service and show its reply with [`Session::shown`].
    Ask(Request, Shape),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    Out { wrong: u32, locked_until: Option<Instant> },
    In { last_input: Instant },
}

/// The console's conversation with one person.
#[derive(Debug, Clone)]
pub struct Session {
    pin: String,
    login: Login,
    ansi: bool,
}

impl Session {
    /// A console waiting for `pin`; `ansi` when the terminal is known to take escape codes.
    pub fn new(pin: &str, ansi: bool) -> Session {
        Session { pin: pin.to_owned(), login: Login::Out { wrong: 0, locked_until: None }, ansi }
    }

    /// Someone is logged in.
    pub fn logged_in(&self) -> bool {
        matches!(self.login, Login::In { .. })
    }

    /// What to show before input: `PIN: ` or `coffer> `.
    pub fn prompt(&self) -> &'static str {
        if self.logged_in() { "coffer> " } else { "PIN: " }
    }

    /// Ends an idle login; the text to show when it did.
    pub fn tick(&mut self, now: Instant) -> Option<String> {
        match self.login {
            Login::In { last_input } if now.duration_since(last_input) >= IDLE_LOGOUT => {
                self.login = Login::Out { wrong: 0, locked_until: None };
                Some(format!("\nlogged out after {} minutes idle\n", IDLE_LOGOUT.as_secs() / 60))
            }
            _ => None,
        }
    }

    /// Takes one typed line.
    pub fn line(&mut self, line: &str, now: Instant) -> Step {
        match self.login {
            Login::Out { wrong, locked_until } => Step::Say(self.pin_entered(line, wrong, locked_until, now)),
            Login::In { .. } => {
                self.login = Login::In { last_input: now };
                match command::parse(line) {
                    Ok(c) => self.command(c),
                    Err(e) => Step::Say(lines(render::wrap(&e, 2))),
                }
            }
        }
    }

    fn pin_entered(&mut self, line: &str, wrong: u32, locked_until: Option<Instant>, now: Instant) -> String {
        if let Some(until) = locked_until.filter(|&u| now < u) {
            let secs = until.duration_since(now).as_secs() + 1;
            return format!("locked after {MAX_WRONG_PINS} wrong PINs: try again in {secs} s\n");
        }
        if line.is_empty() {
            return String::new();
        }
        if crate::service::status::constant_time_eq(line.trim().as_bytes(), self.pin.as_bytes()) {
            self.login = Login::In { last_input: now };
            return "logged in: type help for the commands\n".into();
        }
        let wrong = wrong + 1;
        if wrong >= MAX_WRONG_PINS {
            self.login = Login::Out { wrong: 0, locked_until: Some(now + LOCKOUT) };
            format!("wrong PIN: locked for {} s\n", LOCKOUT.as_secs())
        } else {
            self.login = Login::Out { wrong, locked_until: None };
            "wrong PIN\n".into()
        }
    }

    fn command(&mut self, c: Command) -> Step {
        match c {
            Command::Nothing => Step::Say(String::new()),
            Command::Help(None) => {
                let mut out = vec!["commands:".to_owned()];
                out.extend(HELP.iter().map(|(u, what)| format!("  {u:<38} {what}")).map(|l| render::cut(&l)));
                Step::Say(lines(out))
            }
            Command::Help(Some(verb)) => {
                Step::Say(match HELP.iter().find(|(u, _)| u.split(' ').next() == Some(&verb)) {
                    Some((u, what)) => format!("{u}\n  {what}\n"),
                    None => format!("no command '{}': type help\n", render::cut(&verb)),
                })
            }
            Command::Status => Step::Ask(Request::Status {}, Shape::Status),
            Command::Panel => Step::Ask(Request::Status {}, Shape::Panel),
            Command::Jobs => Step::Ask(Request::List {}, Shape::Jobs),
            Command::Service(r @ Request::Media { .. }) => Step::Ask(r, Shape::Media),
            Command::Service(r @ Request::Log { .. }) => Step::Ask(r, Shape::Log),
            Command::Service(r) => Step::Ask(r, Shape::Job),
            Command::Term(ansi) => {
                self.ansi = ansi;
                Step::Say(if ansi { "escape codes on\n".into() } else { "plain text only\n".into() })
            }
            Command::Logout => {
                self.login = Login::Out { wrong: 0, locked_until: None };
                Step::Say("logged out\n".into())
            }
        }
    }

    /// The text for a reply to a request asked with `shape` (or for why there was none).
    pub fn shown(&self, shape: Shape, reply: Result<Reply, String>) -> String {
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return lines(render::wrap(&format!("no answer from the service: {e}"), 2)),
        };
        if !reply.ok {
            let why = reply.error.as_deref().unwrap_or("refused, without a reason");
            return lines(render::wrap(&format!("refused: {why}"), 2));
        }
        let v: &Value = &reply.data;
        let out = match shape {
            Shape::Status => render::status(v),
            Shape::Panel => render::panel(v),
            Shape::Jobs => render::jobs(v),
            Shape::Job => render::job(v),
            Shape::Log => render::log(v),
            Shape::Media => render::media(v),
        };
        let mut text = lines(out);
        if self.ansi {
            // Bold for what needs a person: the only escape codes this console sends.
            for word in ["NOT HEALTHY", "OFFLINE", "FAILED", "STALLED", "READ-ONLY"] {
                text = text.replace(word, &format!("\x1b[1m{word}\x1b[0m"));
            }
        }
        text
    }
}

fn lines(v: Vec<String>) -> String {
    v.into_iter().map(|l| l + "\n").collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn say(s: Step) -> String {
        match s {
            Step::Say(t) => t,
            Step::Ask(r, _) => panic!("asked {r:?}"),
        }
    }

    #[test]
    fn login_takes_the_pin_and_locks_after_three_wrong() {
        let t0 = Instant::now();
        let mut s = Session::new("2468", false);
        assert_eq!(s.prompt(), "PIN: ");
        // Commands before login are PIN attempts, not commands.
        assert_eq!(say(s.line("status", t0)), "wrong PIN\n");
        assert_eq!(say(s.line("1111", t0)), "wrong PIN\n");
        assert_eq!(say(s.line("2222", t0)), "wrong PIN: locked for 30 s\n");
        // Even the right PIN is refused while locked.
        assert!(say(s.line("2468", t0 + Duration::from_secs(10))).starts_with("locked after 3 wrong PINs"));
        assert!(!s.logged_in());
        assert_eq!(say(s.line("2468", t0 + LOCKOUT)), "logged in: type help for the commands\n");
        assert_eq!(s.prompt(), "coffer> ");
        assert_eq!(say(s.line("logout", t0 + LOCKOUT)), "logged out\n");
        assert!(!s.logged_in());
    }

    #[test]
    fn an_idle_login_ends() {
        let t0 = Instant::now();
        let mut s = Session::new("2468", false);
        say(s.line("2468", t0));
        assert_eq!(s.tick(t0 + IDLE_LOGOUT - Duration::from_secs(1)), None);
        say(s.line("", t0 + Duration::from_secs(60)));
        assert_eq!(s.tick(t0 + IDLE_LOGOUT), None, "input moved the idle clock");
        assert!(s.tick(t0 + IDLE_LOGOUT + Duration::from_secs(60)).unwrap().contains("logged out"));
        assert!(!s.logged_in());
    }

    #[test]
    fn commands_become_requests_and_replies_text() {
        let t0 = Instant::now();
        let mut s = Session::new("2468", false);
        say(s.line("2468", t0));
        assert_eq!(s.line("run 4", t0), Step::Ask(Request::Run { job: 4 }, Shape::Job));
        assert_eq!(s.line("jobs", t0), Step::Ask(Request::List {}, Shape::Jobs));
        assert!(say(s.line("explode", t0)).contains("unknown command 'explode': type help"));
        assert!(say(s.line("help", t0)).lines().count() > HELP.len());
        let refused = s.shown(Shape::Job, Ok(Reply::err("no job 9: `coffer job list` shows the jobs")));
        assert_eq!(refused, "refused: no job 9: `coffer job list` shows the jobs\n");
        let down = s.shown(Shape::Status, Err("no coffer service answers".into()));
        assert!(down.starts_with("no answer from the service"));
        let failed = json!([{"id": 1, "name": "n", "state": "failed", "last": "x"}]);
        assert!(!s.shown(Shape::Jobs, Ok(Reply::ok(&failed))).contains('\x1b'));
        say(s.line("term ansi", t0));
        assert!(s.shown(Shape::Jobs, Ok(Reply::ok(&failed))).contains("\x1b[1mFAILED\x1b[0m"));
    }

    proptest! {
        #[test]
        fn no_line_sends_escape_codes_to_a_dumb_terminal(lines in proptest::collection::vec("[ -~]{0,60}", 0..20)) {
            let t0 = Instant::now();
            let mut s = Session::new("2468", false);
            for (i, l) in lines.iter().enumerate() {
                let l = if i == 0 { "2468" } else { l.as_str() };
                if l.trim().eq_ignore_ascii_case("term ansi") { continue; }
                let text = match s.line(l, t0) {
                    Step::Say(t) => t,
                    Step::Ask(_, shape) => s.shown(shape, Ok(Reply::ok(json!({"message": l})))),
                };
                prop_assert!(text.bytes().all(|b| b == b'\n' || (0x20..=0x7e).contains(&b)));
            }
        }
    }
}
