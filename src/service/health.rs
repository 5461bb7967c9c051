//! Which parts of the box are failing — the journal (not writable), a library (its inventory
//! failed) — and when each is next tried again. Pure: the service reports failures and
//! recoveries with the time since it started, and asks which retries are due.
//!
//! A failing part makes the box degraded, never dead: the service keeps serving what works
//! and keeps pinging the watchdog (only a stalled data plane withholds the pings, see
//! [`super::engine`]). Each part is retried on its own, after [`FIRST_RETRY`], doubling up to
//! [`MAX_RETRY`], so a library that is gone for the night costs one inventory every few
//! minutes and one that comes back is in use again within seconds.

use std::collections::BTreeMap;
use std::time::Duration;

/// The first retry of a part that failed comes this long after the failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Retries slow down (doubling) to at most this apart.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
const _: () = assert!(FIRST_RETRY.as_millis() > 0 && FIRST_RETRY.as_millis() <= MAX_RETRY.as_millis());

/// A part of the box that can fail and recover.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The journal: not writable, so no jobs run.
    Journal,
    /// A library, by name: its inventory failed.
    Library(String),
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Journal => write!(f, "the journal"),
            Part::Library(n) => write!(f, "library {n}"),
        }
    }
}

/// One failing part.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failing {
    why: String,
    /// When it is tried next; `None`: never (it needs a person, or a restart).
    next: Option<Duration>,
    /// The wait after the next failed try.
    backoff: Duration,
    /// A retry is running now.
    trying: bool,
    /// Failed tries so far (the first failure counts).
    failures: u32,
}

/// The failing parts.
#[derive(Debug, Clone, Default)]
pub struct Health {
    failing: BTreeMap<Part, Failing>,
}

/// What a failure report changed, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Failures of this part in a row, this one included.
    pub failures: u32,
    /// When it is tried again (from the service's start); `None`: not retried.
    pub at: Option<Duration>,
}

impl Health {
    /// `part` failed at `now` (a first failure, or a retry that failed), with `why`; it is
    /// tried again later when `retry`.
    pub fn failed(&mut self, part: Part, why: String, now: Duration, retry: bool) -> Retry {
        let f = self.failing.entry(part).or_insert(Failing {
            why: String::new(),
            next: None,
            backoff: FIRST_RETRY,
            trying: false,
            failures: 0,
        });
        f.why = why;
        f.trying = false;
        f.failures = f.failures.saturating_add(1);
        f.next = retry.then(|| now + f.backoff);
        f.backoff = (f.backoff * 2).min(MAX_RETRY);
        Retry { failures: f.failures, at: f.next }
    }

    /// `part` works again; how many failures it had, if it was failing.
    pub fn recovered(&mut self, part: &Part) -> Option<u32> {
        self.failing.remove(part).map(|f| f.failures)
    }

    /// The parts whose retry is due at `now`; each is marked as being tried until it is
    /// reported failed or recovered, so that it is not tried twice at once.
    pub fn due(&mut self, now: Duration) -> Vec<Part> {
        let mut v = Vec::new();
        for (p, f) in &mut self.failing {
            if !f.trying && f.next.is_some_and(|t| t <= now) {
                f.trying = true;
                v.push(p.clone());
            }
        }
        v
    }

    /// Whether `part` is failing.
    pub fn is_failing(&self, part: &Part) -> bool {
        self.failing.contains_key(part)
    }

    /// Why the box is degraded, for people; `None` when every part works.
    pub fn problem(&self) -> Option<String> {
        if self.failing.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .failing
            .values()
            .map(|f| match f.next {
                Some(_) => format!("{} (retrying)", f.why),
                None => f.why.clone(),
            })
            .collect();
        Some(format!("DEGRADED: {}", parts.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_failing_part_is_retried_with_a_growing_back_off_until_it_recovers() {
        let mut h = Health::default();
        let lib = Part::Library("vlib".into());
        assert_eq!(h.problem(), None);
        let r = h.failed(lib.clone(), "library vlib: door open".into(), s(0), true);
        assert_eq!(r, Retry { failures: 1, at: Some(s(2)) });
        assert_eq!(h.problem().unwrap(), "DEGRADED: library vlib: door open (retrying)");
        assert!(h.due(s(1)).is_empty());
        assert_eq!(h.due(s(2)), vec![lib.clone()]);
        // Being tried: not handed out again until the try is reported.
        assert!(h.due(s(100)).is_empty());
        assert_eq!(h.failed(lib.clone(), "still".into(), s(3), true).at, Some(s(7)));
        assert_eq!(h.due(s(7)), vec![lib.clone()]);
        assert_eq!(h.failed(lib.clone(), "still".into(), s(7), true).at, Some(s(15)));
        assert_eq!(h.recovered(&lib), Some(3));
        assert_eq!(h.problem(), None);
        assert_eq!(h.recovered(&lib), None);
    }

    #[test]
    fn the_back_off_stops_growing_and_a_part_not_retried_stays_failing() {
        let mut h = Health::default();
        let mut at = s(0);
        for _ in 0..20 {
            at = h.failed(Part::Journal, "read-only".into(), at, true).at.unwrap();
            h.due(at);
        }
        let next = h.failed(Part::Journal, "read-only".into(), at, true).at.unwrap();
        assert_eq!(next - at, MAX_RETRY);
        let lib = Part::Library("a".into());
        assert_eq!(h.failed(lib.clone(), "needs a person".into(), s(0), false).at, None);
        assert!(h.due(s(1_000_000)).iter().all(|p| *p != lib));
        assert!(h.is_failing(&lib) && h.is_failing(&Part::Journal));
        let p = h.problem().unwrap();
        assert!(p.contains("read-only (retrying)") && p.contains("needs a person"), "{p}");
    }
}
