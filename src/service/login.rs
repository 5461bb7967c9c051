//! Console logins, decided by the service: the console sends what was typed
//! ([`Request::Login`](crate::control::Request::Login)), the service checks it against the
//! board's PIN and journals the outcome ([`ConsoleLogin`]), so the count of wrong PINs in a row
//! — and with it the lockout — survives a restart of the console and of the service.
//!
//! The lockout ([`lock_secs`]): [`FREE_WRONG_PINS`] wrong PINs in a row are typos; the next
//! locks the console for [`FIRST_LOCK_SECS`], and each further one doubles it, up to
//! [`MAX_LOCK_SECS`]. A right PIN ends the run. While locked, no PIN is checked (nor
//! journaled: holding a key down must not fill the journal). A 4-digit PIN then takes years,
//! not a day.
//!
//! Every wrong PIN is logged at warning level with the tty (tracing, target `console`) and in
//! the activity log, whose entries carry the time. PINs refused unchecked during a lock are
//! logged once per lock, so a noisy line cannot flood the log.

use serde_json::Value;

use crate::catalog::{ConsoleLogin, LogEntry, LogLevel, MAX_TTY_LEN, Record};
use crate::control::LoginAnswer;
use crate::store::{SharedStore, State};

/// Wrong PINs in a row before the first lock.
pub const FREE_WRONG_PINS: u32 = 2;
/// The first lock, in seconds.
pub const FIRST_LOCK_SECS: u64 = 30;
/// The longest lock, in seconds.
pub const MAX_LOCK_SECS: u64 = 3600;

const _: () = assert!(FIRST_LOCK_SECS >= 1 && FIRST_LOCK_SECS <= MAX_LOCK_SECS);

/// How long the console stays locked after `wrong_in_a_row` wrong PINs in a row: 0 for the
/// first [`FREE_WRONG_PINS`], then 30 s, 1 min, 2, 4 … doubling, at most an hour.
pub fn lock_secs(wrong_in_a_row: u32) -> u64 {
    let Some(doublings) = wrong_in_a_row.checked_sub(FREE_WRONG_PINS + 1) else {
        return 0;
    };
    // Past 2^7 × 30 s the cap applies anyway; the bound keeps the shift in range.
    let doublings = doublings.min(7);
    (FIRST_LOCK_SECS << doublings).min(MAX_LOCK_SECS)
}

/// Seconds the console is still locked at `now` after the `last` login (0: not locked). A
/// clock set back does not lengthen the lock past its own length.
pub fn locked_for(last: Option<&ConsoleLogin>, now: u64) -> u64 {
    let Some(last) = last else { return 0 };
    let lock = lock_secs(last.wrong_in_a_row);
    (last.at.saturating_add(lock)).saturating_sub(now).min(lock)
}

/// What a PIN typed on `tty` at `now` does, given the `last` login and whether it is right:
/// the answer, and the records to journal (none while locked).
pub fn decide(last: Option<&ConsoleLogin>, right: bool, tty: &str, now: u64) -> (LoginAnswer, Vec<Record>) {
    let locked = locked_for(last, now);
    if locked > 0 {
        return (LoginAnswer::Locked { locked_for: locked }, Vec::new());
    }
    let before = last.map_or(0, |l| l.wrong_in_a_row);
    let log = |level, message| Record::from(LogEntry { at: now, level, job: None, message });
    if right {
        let login = ConsoleLogin { at: now, tty: tty.to_owned(), ok: true, wrong_in_a_row: 0 };
        let message = match before {
            0 => format!("console {tty}: logged in"),
            n => format!("console {tty}: logged in after {n} wrong PINs"),
        };
        return (LoginAnswer::Ok {}, vec![Record::from(login), log(LogLevel::Note, message)]);
    }
    let wrong_in_a_row = before.saturating_add(1);
    let locked_for = lock_secs(wrong_in_a_row);
    let login = ConsoleLogin { at: now, tty: tty.to_owned(), ok: false, wrong_in_a_row };
    let message = match locked_for {
        0 => format!("console {tty}: wrong PIN ({wrong_in_a_row} in a row)"),
        s => format!("console {tty}: wrong PIN ({wrong_in_a_row} in a row): locked for {s} s"),
    };
    (LoginAnswer::Wrong { locked_for }, vec![Record::from(login), log(LogLevel::Warning, message)])
}

/// Whether `typed` is `pin`, in time independent of both: comparing hashes makes the compared
/// strings the same length, so not even the PIN's length shows in the timing.
fn is_pin(typed: &str, pin: &str) -> bool {
    crate::service::status::constant_time_eq(
        blake3::hash(typed.trim().as_bytes()).as_bytes(),
        blake3::hash(pin.as_bytes()).as_bytes(),
    )
}

/// What the service remembers between logins, apart from the journal: the lock it last warned
/// about, so a key held down during a lock logs one warning, not one per line.
#[derive(Debug, Default)]
pub struct Warned {
    lock_started: Option<u64>,
}

/// Answers a login request: checks the PIN unless locked, journals the outcome, logs a wrong
/// PIN (and the first PIN refused unchecked during each lock). The error is for the person at
/// the console.
pub fn answer(
    store: &mut SharedStore,
    warned: &mut Warned,
    pin: Option<&str>,
    tty: &str,
    typed: &str,
    now: u64,
) -> Result<Value, String> {
    let Some(pin) = pin else {
        return Err("the board has no [console] pin: add one to log in at the console".into());
    };
    if tty.is_empty() || tty.len() > MAX_TTY_LEN || tty.contains('\0') {
        return Err(format!("a console tty name is 1 to {MAX_TTY_LEN} bytes without NUL"));
    }
    let last = store.read(|c| c.console_login().cloned());
    let (answer, records) = decide(last.as_ref(), is_pin(typed, pin), tty, now);
    match answer {
        LoginAnswer::Wrong { locked_for } => {
            let n = last.map_or(0, |l| l.wrong_in_a_row).saturating_add(1);
            tracing::warn!(target: "console", "wrong PIN at the console on {tty} ({n} in a row); locked for {locked_for} s");
        }
        LoginAnswer::Locked { locked_for } => {
            let lock_started = last.as_ref().map(|l| l.at);
            if warned.lock_started != lock_started {
                warned.lock_started = lock_started;
                tracing::warn!(target: "console", "PIN refused unchecked at the console on {tty}: locked for {locked_for} s more");
            }
        }
        LoginAnswer::Ok {} => tracing::info!(target: "console", "logged in at the console on {tty}"),
    }
    store.commit(&records).map_err(|e| format!("the journal refused the login: {e}"))?;
    Ok(serde_json::to_value(answer).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_doubles_from_30_seconds_to_an_hour() {
        let schedule: Vec<u64> = (0..=12).map(lock_secs).collect();
        assert_eq!(schedule, [0, 0, 0, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(lock_secs(u32::MAX), MAX_LOCK_SECS);
    }

    fn wrong(at: u64, n: u32) -> ConsoleLogin {
        ConsoleLogin { at, tty: "/dev/ttyS0".into(), ok: false, wrong_in_a_row: n }
    }

    #[test]
    fn a_lock_runs_out_and_a_clock_set_back_does_not_lengthen_it() {
        assert_eq!(locked_for(None, 100), 0);
        assert_eq!(locked_for(Some(&wrong(100, 2)), 100), 0);
        assert_eq!(locked_for(Some(&wrong(100, 3)), 100), 30);
        assert_eq!(locked_for(Some(&wrong(100, 3)), 129), 1);
        assert_eq!(locked_for(Some(&wrong(100, 3)), 130), 0);
        assert_eq!(locked_for(Some(&wrong(100, 4)), 10), 60);
        assert_eq!(locked_for(Some(&wrong(u64::MAX, 30)), 0), 3600);
    }

    fn login_of(records: &[Record]) -> ConsoleLogin {
        match &records[0] {
            Record::ConsoleLogin(l) => l.clone(),
            r => panic!("not a login: {r:?}"),
        }
    }

    #[test]
    fn wrong_pins_grow_the_lock_and_a_right_one_ends_the_run() {
        let tty = "/dev/ttyS1";
        let mut last: Option<ConsoleLogin> = None;
        let mut now = 1_000;
        let mut locks = Vec::new();
        for _ in 0..6 {
            let (answer, records) = decide(last.as_ref(), false, tty, now);
            let LoginAnswer::Wrong { locked_for } = answer else { panic!("{answer:?}") };
            locks.push(locked_for);
            let login = login_of(&records);
            assert!(!login.ok && login.tty == tty && login.at == now);
            let Record::LogEntry(entry) = &records[1] else { panic!("{records:?}") };
            assert_eq!(entry.level, LogLevel::Warning);
            assert!(entry.message.contains(tty) && entry.message.contains("wrong PIN"), "{}", entry.message);
            last = Some(login);
            // While locked even the right PIN is not checked, and nothing is journaled.
            if locked_for > 0 {
                let (a, r) = decide(last.as_ref(), true, tty, now + locked_for - 1);
                assert_eq!(a, LoginAnswer::Locked { locked_for: 1 });
                assert!(r.is_empty());
            }
            now += locked_for;
        }
        assert_eq!(locks, [0, 0, 30, 60, 120, 240]);
        let (answer, records) = decide(last.as_ref(), true, tty, now);
        assert_eq!(answer, LoginAnswer::Ok {});
        assert_eq!(login_of(&records).wrong_in_a_row, 0);
        last = Some(login_of(&records));
        assert_eq!(decide(last.as_ref(), false, tty, now).0, LoginAnswer::Wrong { locked_for: 0 });
    }

    #[test]
    fn the_pin_is_compared_whole() {
        assert!(is_pin("2468", "2468"));
        assert!(is_pin("2468\r", "2468"));
        for typed in ["", "246", "24680", "1357", "2468 1"] {
            assert!(!is_pin(typed, "2468"), "{typed}");
        }
    }
}
