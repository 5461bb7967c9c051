//! When a job runs: a start time, optionally repeated every n minutes, hours, days or months,
//! skipping excluded weekdays. Pure: every function takes the time it reasons about.

use serde::Serialize;

use super::calendar::{self, DAY};

/// Longest repeat count in a schedule (`every = "999d"`).
pub const MAX_EVERY: u64 = 999;
/// Occurrences tried when looking for one not on an excluded day (a week of daily runs, or
/// enough hourly ones to cross a long weekend, always finds one).
const MAX_TRIES: u32 = 10_000;

/// How often a job repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Every {
    /// Every n minutes.
    Minutes(u64),
    /// Every n hours.
    Hours(u64),
    /// Every n days.
    Days(u64),
    /// Every n calendar months (the day clamped to the month's length).
    Months(u64),
}

impl Every {
    /// Parses `30m`, `6h`, `1d`, `2mo` (also `min`, `hour(s)`, `day(s)`, `month(s)`).
    pub fn parse(s: &str) -> Result<Every, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| format!("'{s}' is not a repeat like 30m, 6h, 1d or 1mo"))?;
        if !(1..=MAX_EVERY).contains(&n) {
            return Err(format!("repeat count {n} is outside 1 to {MAX_EVERY}"));
        }
        Ok(match unit.trim() {
            "m" | "min" | "mins" | "minute" | "minutes" => Every::Minutes(n),
            "h" | "hour" | "hours" => Every::Hours(n),
            "d" | "day" | "days" => Every::Days(n),
            "mo" | "month" | "months" => Every::Months(n),
            u => return Err(format!("unknown unit '{u}' in '{s}': use m, h, d or mo")),
        })
    }

    /// The occurrence after `t`.
    fn after(self, t: u64) -> Option<u64> {
        match self {
            Every::Minutes(n) => t.checked_add(n * 60),
            Every::Hours(n) => t.checked_add(n * 3600),
            Every::Days(n) => t.checked_add(n * DAY),
            Every::Months(n) => calendar::add_months(t, n),
        }
    }
}

/// A job's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// First run, Unix seconds.
    pub start: u64,
    /// Repeat, if recurring.
    pub every: Option<Every>,
    /// Weekdays it never runs on, 0 Monday … 6 Sunday.
    pub except: Vec<u32>,
}

impl Schedule {
    /// Whether it repeats.
    pub fn recurring(&self) -> bool {
        self.every.is_some()
    }

    /// The first run at or after `from` (occurrences on excluded days are skipped); for a
    /// one-off schedule, its start however long ago (a missed one-off runs at once). `None`
    /// when no occurrence exists.
    pub fn next_from(&self, from: u64) -> Option<u64> {
        let Some(every) = self.every else {
            return (!self.excluded(self.start)).then_some(self.start);
        };
        let mut t = self.start;
        // Jump close to `from` first for fixed-length repeats, so an old start costs nothing.
        let step = match every {
            Every::Minutes(n) => Some(n * 60),
            Every::Hours(n) => Some(n * 3600),
            Every::Days(n) => Some(n * DAY),
            Every::Months(_) => None,
        };
        if let Some(step) = step
            && from > t
        {
            t += (from - t) / step * step;
        }
        let mut tries = 0;
        while t < from || self.excluded(t) {
            t = every.after(t)?;
            tries += 1;
            if tries > MAX_TRIES + 12 * MAX_EVERY as u32 {
                return None;
            }
        }
        Some(t)
    }

    /// The run after one that started at `ran` and ended at `ended`: the first occurrence
    /// after both (runs missed while it ran, or while the box was off, are not repeated).
    pub fn next_after(&self, ran: u64, ended: u64) -> Option<u64> {
        self.every?;
        self.next_from(ran.max(ended).saturating_add(1))
    }

    fn excluded(&self, t: u64) -> bool {
        self.except.contains(&calendar::weekday(t))
    }
}

/// Parses a weekday name (`mon`, `Monday`, …) to 0 Monday … 6 Sunday.
pub fn parse_weekday(s: &str) -> Result<u32, String> {
    const NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    let l = s.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .position(|n| l == *n || l == n[..3])
        .map(|i| i as u32)
        .ok_or_else(|| format!("'{s}' is not a weekday: use mon, tue, wed, thu, fri, sat or sun"))
}

/// Parses when to run: `now`, `+30m` / `+2h` / `+1d` from `now`, or a UTC time
/// `YYYY-MM-DD HH:MM[:SS]`.
pub fn parse_when(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('+') {
        let e = Every::parse(rel)?;
        return e.after(now).ok_or_else(|| format!("'{s}' is too far ahead"));
    }
    calendar::parse(s)
        .ok_or_else(|| format!("'{s}' is not a time: say now, +30m, +2h, +1d or YYYY-MM-DD HH:MM (UTC)"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::jobs::calendar::parse;

    fn at(s: &str) -> u64 {
        parse(s).unwrap()
    }

    #[test]
    fn daily_runs_skip_the_weekend() {
        let s = Schedule { start: at("2026-11-20 22:00"), every: Some(Every::Days(1)), except: vec![5, 6] };
        // Friday 22:00 runs; the next after it is Monday 22:00.
        assert_eq!(s.next_from(at("2026-11-20 00:00")), Some(at("2026-11-20 22:00")));
        assert_eq!(
            s.next_after(at("2026-11-20 22:00"), at("2026-11-20 23:10")),
            Some(at("2026-11-23 22:00"))
        );
    }

    #[test]
    fn runs_missed_while_off_are_not_repeated() {
        let s = Schedule { start: at("2026-01-01 01:00"), every: Some(Every::Hours(6)), except: vec![] };
        let ran = at("2026-11-01 01:00");
        assert_eq!(s.next_after(ran, at("2026-11-22 09:30")), Some(at("2026-11-22 13:00")));
    }

    #[test]
    fn a_one_off_runs_once_and_monthly_clamps() {
        let one = Schedule { start: at("2026-11-22 10:00"), every: None, except: vec![] };
        assert_eq!(one.next_from(at("2026-12-01")), Some(at("2026-11-22 10:00")));
        assert_eq!(one.next_after(1, 2), None);
        let m = Schedule { start: at("2026-01-31 03:00"), every: Some(Every::Months(1)), except: vec![] };
        assert_eq!(
            m.next_after(at("2026-01-31 03:00"), at("2026-01-31 04:00")),
            Some(at("2026-02-28 03:00"))
        );
    }

    #[test]
    fn repeats_and_times_parse_or_say_why() {
        assert_eq!(Every::parse("30m"), Ok(Every::Minutes(30)));
        assert_eq!(Every::parse("2 hours"), Ok(Every::Hours(2)));
        assert_eq!(Every::parse("1mo"), Ok(Every::Months(1)));
        assert!(Every::parse("0d").unwrap_err().contains("outside 1 to 999"));
        assert!(Every::parse("5y").unwrap_err().contains("unknown unit"));
        assert!(Every::parse("d").is_err());
        assert_eq!(parse_when("now", 100), Ok(100));
        assert_eq!(parse_when("+30m", 100), Ok(1900));
        assert!(parse_when("tomorrow", 0).unwrap_err().contains("YYYY-MM-DD"));
        assert_eq!(parse_weekday("Saturday"), Ok(5));
        assert_eq!(parse_weekday("sun"), Ok(6));
        assert!(parse_weekday("sa").is_err() && parse_weekday("satx").is_err());
    }

    #[test]
    fn every_day_excluded_means_never() {
        let s = Schedule { start: 0, every: Some(Every::Days(1)), except: (0..7).collect() };
        assert_eq!(s.next_from(0), None);
    }

    proptest! {
        #[test]
        fn the_next_run_is_due_not_before_from_and_not_excluded(
            start in 0u64..4_000_000_000, from in 0u64..4_000_000_000, n in 1u64..=999, unit in 0..4u8,
            except in proptest::collection::vec(0u32..7, 0..4)
        ) {
            let every = match unit { 0 => Every::Minutes(n), 1 => Every::Hours(n), 2 => Every::Days(n), _ => Every::Months(n) };
            let s = Schedule { start, every: Some(every), except: except.clone() };
            if let Some(t) = s.next_from(from) {
                prop_assert!(t >= from && t >= start);
                prop_assert!(!except.contains(&calendar::weekday(t)));
            }
        }
    }
}
