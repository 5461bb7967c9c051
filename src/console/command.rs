//! The console's commands: one typed line to a [`Command`], or an error that says what was
//! wrong and what to type instead. Pure; the words are case-insensitive.

use crate::catalog::LogLevel;
use crate::control::Request;
use crate::library::ops::MediaOp;

/// What a person at the console asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The commands, or one command's use.
    Help(Option<String>),
    /// The box at a glance.
    Status,
    /// The front panel's two lines.
    Panel,
    /// The jobs.
    Jobs,
    /// A service request (job or media operation).
    Service(Request),
    /// Switches escape codes on (`ansi`) or off (`dumb`): the person says what the terminal
    /// can do.
    Term(bool),
    /// Ends the login.
    Logout,
    /// An empty line: nothing.
    Nothing,
}

/// One line of help per command: its use, then what it does.
pub const HELP: &[(&str, &str)] = &[
    ("status", "the box at a glance: health, activity, drives, jobs"),
    ("panel", "the front panel's two lines"),
    ("jobs", "the jobs: id, state, next run, name"),
    ("job N", "one job: its state, next run and last words"),
    ("run N", "run job N now"),
    ("hold N", "keep job N from running"),
    ("release N", "let held job N run when due"),
    ("cancel N [reschedule]", "cancel job N (and queue it again)"),
    ("inventory", "read the library's element status: slots, drives, barcodes"),
    ("load BARCODE [DRIVE]", "load a cartridge (into a free drive unless named)"),
    ("unload [DRIVE]", "put drive DRIVE's cartridge back in its slot (default drive 0)"),
    ("eject BARCODE", "move a cartridge to a mail slot to take it out"),
    ("drive N online|offline", "put a drive in or out of use"),
    ("log [N] [errors|warnings|notes|debug]", "the activity log (of job N)"),
    ("term dumb|ansi", "whether this terminal understands escape codes (default dumb)"),
    ("help [COMMAND]", "this list, or one command's use"),
    ("logout", "end the login"),
];

/// Parses one line.
pub fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<String> = line.split_ascii_whitespace().map(|w| w.to_ascii_lowercase()).collect();
    let raw: Vec<&str> = line.split_ascii_whitespace().collect();
    let Some(verb) = words.first() else {
        return Ok(Command::Nothing);
    };
    let args = &words[1..];
    let usage = || match HELP.iter().find(|(u, _)| u.split(' ').next() == Some(verb.as_str())) {
        Some((u, _)) => format!("usage: {u}"),
        None => format!("{} takes nothing more: type help", shown(verb)),
    };
    let none = |c: Command| if args.is_empty() { Ok(c) } else { Err(usage()) };
    let job = || match args {
        [n] => number(n).ok_or_else(usage),
        _ => Err(usage()),
    };
    let service = |r: Request| Ok(Command::Service(r));
    let media = |op: MediaOp| service(Request::Media { library: None, op });
    match verb.as_str() {
        "help" | "?" => match args {
            [] => Ok(Command::Help(None)),
            [c] => Ok(Command::Help(Some(c.clone()))),
            _ => Err("usage: help [COMMAND]".into()),
        },
        "status" => none(Command::Status),
        "panel" => none(Command::Panel),
        "jobs" => none(Command::Jobs),
        "logout" | "exit" | "quit" => none(Command::Logout),
        "job" => service(Request::Show { job: job()? }),
        "run" => service(Request::Run { job: job()? }),
        "hold" => service(Request::Hold { job: job()? }),
        "release" => service(Request::Release { job: job()? }),
        "cancel" => match args {
            [n] => service(Request::Cancel { job: number(n).ok_or_else(usage)?, reschedule: false }),
            [n, r] if r == "reschedule" => {
                service(Request::Cancel { job: number(n).ok_or_else(usage)?, reschedule: true })
            }
            _ => Err(usage()),
        },
        "inventory" => none(Command::Service(Request::Media { library: None, op: MediaOp::Inventory })),
        "load" => match args {
            // Barcodes keep the case they were typed in.
            [_] => media(MediaOp::Load { barcode: barcode(raw[1])?, drive: None }),
            [_, d] => media(MediaOp::Load { barcode: barcode(raw[1])?, drive: Some(drive(d, usage)?) }),
            _ => Err(usage()),
        },
        "unload" => match args {
            [] => media(MediaOp::Unload { drive: 0 }),
            [d] => media(MediaOp::Unload { drive: drive(d, usage)? }),
            _ => Err(usage()),
        },
        "eject" => match args {
            [_] => media(MediaOp::Eject { barcode: barcode(raw[1])? }),
            _ => Err(usage()),
        },
        "drive" => match args {
            [d, s] if s == "online" || s == "offline" => {
                media(MediaOp::Drive { drive: drive(d, usage)?, online: s == "online" })
            }
            _ => Err(usage()),
        },
        "log" => {
            let mut job = None;
            let mut level = LogLevel::Note;
            for a in args {
                if let Some(n) = number(a) {
                    if job.replace(n).is_some() {
                        return Err(usage());
                    }
                } else {
                    level = log_level(a).ok_or_else(usage)?;
                }
            }
            service(Request::Log { job, level, limit: 20 })
        }
        "term" => match args {
            [t] if t == "ansi" => Ok(Command::Term(true)),
            [t] if t == "dumb" => Ok(Command::Term(false)),
            _ => Err(usage()),
        },
        _ => Err(format!("unknown command '{}': type help", shown(raw[0]))),
    }
}

/// A word as it may be shown back: printable, at most 20 characters.
fn shown(w: &str) -> String {
    w.chars().filter(|c| c.is_ascii_graphic()).take(20).collect()
}

fn number(w: &str) -> Option<u64> {
    if w.is_empty() || w.len() > 12 || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    w.parse().ok()
}

fn drive(w: &str, usage: impl Fn() -> String) -> Result<usize, String> {
    number(w).filter(|&n| n < 4096).map(|n| n as usize).ok_or_else(usage)
}

/// A barcode: letters and digits, as on the label (SCSI volume tags are up to 32 bytes).
fn barcode(w: &str) -> Result<String, String> {
    if w.is_empty() || w.len() > 32 || !w.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("'{}' is not a barcode: letters and digits, up to 32", shown(w)));
    }
    Ok(w.to_owned())
}

fn log_level(w: &str) -> Option<LogLevel> {
    match w {
        "errors" | "error" => Some(LogLevel::Error),
        "warnings" | "warning" => Some(LogLevel::Warning),
        "notes" | "note" => Some(LogLevel::Note),
        "debug" => Some(LogLevel::Debug),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn media(op: MediaOp) -> Command {
        Command::Service(Request::Media { library: None, op })
    }

    #[test]
    fn commands_parse() {
        let ok = |l: &str| parse(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert_eq!(ok("  STATUS "), Command::Status);
        assert_eq!(ok(""), Command::Nothing);
        assert_eq!(ok("run 12"), Command::Service(Request::Run { job: 12 }));
        assert_eq!(ok("Cancel 3 reschedule"), Command::Service(Request::Cancel { job: 3, reschedule: true }));
        assert_eq!(ok("load CFR004L6"), media(MediaOp::Load { barcode: "CFR004L6".into(), drive: None }));
        assert_eq!(
            ok("load CFR004L6 1"),
            media(MediaOp::Load { barcode: "CFR004L6".into(), drive: Some(1) })
        );
        assert_eq!(ok("unload"), media(MediaOp::Unload { drive: 0 }));
        assert_eq!(ok("drive 1 offline"), media(MediaOp::Drive { drive: 1, online: false }));
        assert_eq!(ok("eject CFR001L6"), media(MediaOp::Eject { barcode: "CFR001L6".into() }));
        assert_eq!(
            ok("log warnings 4"),
            Command::Service(Request::Log { job: Some(4), level: LogLevel::Warning, limit: 20 })
        );
        assert_eq!(ok("term ansi"), Command::Term(true));
        assert_eq!(ok("help run"), Command::Help(Some("run".into())));
    }

    #[test]
    fn mistakes_say_what_to_type() {
        let err = |l: &str| parse(l).unwrap_err();
        assert_eq!(err("frobnicate now"), "unknown command 'frobnicate': type help");
        assert_eq!(err("run"), "usage: run N");
        assert_eq!(err("run x"), "usage: run N");
        assert_eq!(err("run 99999999999999999999"), "usage: run N");
        assert_eq!(err("status now"), "usage: status");
        assert_eq!(err("drive 1 sideways"), "usage: drive N online|offline");
        assert_eq!(err("log 1 2"), "usage: log [N] [errors|warnings|notes|debug]");
        assert!(err("load CFR;rm").contains("not a barcode"));
        assert_eq!(err("cancel 3 later"), "usage: cancel N [reschedule]");
    }

    #[test]
    fn every_command_has_help_and_parses_as_documented() {
        for (usage, what) in HELP {
            assert!(!what.is_empty());
            let verb = usage.split(' ').next().unwrap();
            let example = usage
                .replace("[N] [errors|warnings|notes|debug]", "2 errors")
                .replace(" [reschedule]", "")
                .replace("online|offline", "online")
                .replace("dumb|ansi", "dumb")
                .replace("[COMMAND]", "run")
                .replace("[DRIVE]", "1")
                .replace("BARCODE", "CFR001L6")
                .replace('N', "1");
            assert!(parse(&example).is_ok(), "{verb}: {example}");
        }
    }

    proptest! {
        #[test]
        fn no_line_panics_and_errors_are_short_and_printable(line in "[ -~]{0,120}") {
            if let Err(e) = parse(&line) {
                prop_assert!(e.len() <= 80, "{e}");
                prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            }
        }

        #[test]
        fn near_commands_do_not_panic(verb in "(run|hold|load|unload|drive|log|cancel|eject|term|help)", args in "[ a-z0-9]{0,30}") {
            let _ = parse(&format!("{verb} {args}"));
        }
    }
}
