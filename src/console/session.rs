//! One person at the console: login, then commands. Pure: lines in, text and service requests
//! out; the caller ([`super::tty`]) does the I/O.
//!
//! The service checks each PIN typed before login (a [`Request::Login`]) and keeps the lockout
//! in its journal (`crate::service::login`), so neither restarting the console nor the service
//! gives an attacker fresh tries; this side only shows the answer. A login idle for
//! [`IDLE_LOGOUT`] ends. Escape codes are sent only after the person says the terminal
//! understands them (`term ansi`): a dumb terminal at 115200 8N1 gets plain ASCII and CR LF
//! line ends only.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::command::{self, Command, HELP};
use super::render;
use crate::control::{LoginAnswer, Reply, Request};

/// A login with no input for this long ends.
pub const IDLE_LOGOUT: Duration = Duration::from_secs(15 * 60);
/// Longest PIN sent to the service: the board's PINs have at most 8 digits; more is noise.
const MAX_TYPED_PIN: usize = 64;

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
    /// The service's answer to a PIN.
    Login,
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
    Out,
    In { last_input: Instant },
}

/// The console's conversation with one person.
#[derive(Debug, Clone)]
pub struct Session {
    /// The console's tty, named in login requests (the service logs it).
    tty: String,
    login: Login,
    ansi: bool,
    /// When the last line was typed: a login counts as input then.
    typed_at: Option<Instant>,
}

impl Session {
    /// A console on `tty`, logged out; `ansi` when the terminal is known to take escape codes.
    pub fn new(tty: &str, ansi: bool) -> Session {
        Session { tty: tty.to_owned(), login: Login::Out, ansi, typed_at: None }
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
                self.login = Login::Out;
                Some(format!("\nlogged out after {} minutes idle\n", IDLE_LOGOUT.as_secs() / 60))
            }
            _ => None,
        }
    }

    /// Takes one typed line.
    pub fn line(&mut self, line: &str, now: Instant) -> Step {
        self.typed_at = Some(now);
        match self.login {
            // Before login every line is a PIN, checked by the service.
            Login::Out if line.is_empty() => Step::Say(String::new()),
            Login::Out => {
                let pin: String = line.trim().chars().take(MAX_TYPED_PIN).collect();
                Step::Ask(Request::Login { tty: self.tty.clone(), pin }, Shape::Login)
            }
            Login::In { .. } => {
                self.login = Login::In { last_input: now };
                match command::parse(line) {
                    Ok(c) => self.command(c),
                    Err(e) => Step::Say(lines(render::wrap(&e, 2))),
                }
            }
        }
    }

    /// The service's answer to a PIN: logs in, or says why not.
    fn login_answered(&mut self, data: &Value) -> String {
        match serde_json::from_value::<LoginAnswer>(data.clone()) {
            Ok(LoginAnswer::Ok {}) => {
                self.login = Login::In { last_input: self.typed_at.unwrap_or_else(Instant::now) };
                "logged in: type help for the commands\n".into()
            }
            Ok(LoginAnswer::Wrong { locked_for: 0 }) => "wrong PIN\n".into(),
            Ok(LoginAnswer::Wrong { locked_for }) => format!("wrong PIN: locked for {locked_for} s\n"),
            Ok(LoginAnswer::Locked { locked_for }) => {
                format!("locked for {locked_for} s after wrong PINs: no PIN is checked until then\n")
            }
            Err(e) => {
                lines(render::wrap(&format!("the service's answer to the PIN is not understood: {e}"), 2))
            }
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
                self.login = Login::Out;
                Step::Say("logged out\n".into())
            }
        }
    }

    /// The text for a reply to a request asked with `shape` (or for why there was none).
    pub fn shown(&mut self, shape: Shape, reply: Result<Reply, String>) -> String {
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
            Shape::Login => return self.login_answered(v),
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

    /// Types `pin` and answers it as the service would.
    fn pin(s: &mut Session, pin: &str, answer: LoginAnswer, now: Instant) -> String {
        let want = Request::Login { tty: "/dev/ttyS0".into(), pin: pin.trim().into() };
        assert_eq!(s.line(pin, now), Step::Ask(want, Shape::Login));
        s.shown(Shape::Login, Ok(Reply::ok(answer)))
    }

    fn logged_in(s: &mut Session, now: Instant) {
        assert_eq!(pin(s, "2468", LoginAnswer::Ok {}, now), "logged in: type help for the commands\n");
    }

    #[test]
    fn pins_go_to_the_service_and_its_answer_is_shown() {
        let t0 = Instant::now();
        let mut s = Session::new("/dev/ttyS0", false);
        assert_eq!(s.prompt(), "PIN: ");
        assert_eq!(s.line("", t0), Step::Say(String::new()));
        // Commands before login are PIN attempts, not commands.
        assert_eq!(pin(&mut s, "status", LoginAnswer::Wrong { locked_for: 0 }, t0), "wrong PIN\n");
        assert_eq!(
            pin(&mut s, "2222", LoginAnswer::Wrong { locked_for: 30 }, t0),
            "wrong PIN: locked for 30 s\n"
        );
        let locked = pin(&mut s, "2468", LoginAnswer::Locked { locked_for: 12 }, t0);
        assert!(locked.starts_with("locked for 12 s"), "{locked}");
        assert!(!s.logged_in());
        // No answer, a refusal or a strange answer logs no one in.
        s.line("2468", t0);
        assert!(s.shown(Shape::Login, Err("no coffer service answers".into())).starts_with("no answer"));
        s.line("2468", t0);
        assert!(s.shown(Shape::Login, Ok(Reply::err("journal read-only"))).starts_with("refused"));
        s.line("2468", t0);
        assert!(s.shown(Shape::Login, Ok(Reply::ok(json!({"login": "yes"})))).contains("not understood"));
        assert!(!s.logged_in());
        logged_in(&mut s, t0);
        assert_eq!(s.prompt(), "coffer> ");
        assert_eq!(say(s.line("logout", t0)), "logged out\n");
        assert!(!s.logged_in());
        // A PIN's length is bounded before it is sent.
        let Step::Ask(Request::Login { pin, .. }, _) = s.line(&"9".repeat(10_000), t0) else { panic!() };
        assert_eq!(pin.len(), MAX_TYPED_PIN);
    }

    #[test]
    fn an_idle_login_ends() {
        let t0 = Instant::now();
        let mut s = Session::new("/dev/ttyS0", false);
        logged_in(&mut s, t0);
        assert_eq!(s.tick(t0 + IDLE_LOGOUT - Duration::from_secs(1)), None);
        say(s.line("", t0 + Duration::from_secs(60)));
        assert_eq!(s.tick(t0 + IDLE_LOGOUT), None, "input moved the idle clock");
        assert!(s.tick(t0 + IDLE_LOGOUT + Duration::from_secs(60)).unwrap().contains("logged out"));
        assert!(!s.logged_in());
    }

    #[test]
    fn commands_become_requests_and_replies_text() {
        let t0 = Instant::now();
        let mut s = Session::new("/dev/ttyS0", false);
        logged_in(&mut s, t0);
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
            let mut s = Session::new("/dev/ttyS0", false);
            for (i, l) in lines.iter().enumerate() {
                let l = if i == 0 { "2468" } else { l.as_str() };
                if l.trim().eq_ignore_ascii_case("term ansi") { continue; }
                let text = match s.line(l, t0) {
                    Step::Say(t) => t,
                    Step::Ask(_, Shape::Login) => s.shown(Shape::Login, Ok(Reply::ok(LoginAnswer::Ok {}))),
                    Step::Ask(_, shape) => s.shown(shape, Ok(Reply::ok(json!({"message": l})))),
                };
                prop_assert!(text.bytes().all(|b| b == b'\n' || (0x20..=0x7e).contains(&b)));
            }
        }
    }
}
