//! The job queue's rules, pure: which job is due, which finished jobs have expired, and what
//! each request or outcome does to a job's state. The service applies the results as journal
//! records (`JobStateChanged` with its due time), so the queue survives a restart as it was.

use super::schedule::{Schedule, parse_when};
use crate::catalog::JobState;

/// Default seconds between queue scans.
pub const DEFAULT_SCAN_SECONDS: u64 = 10;
/// Allowed queue scan interval, seconds.
pub const SCAN_SECONDS: std::ops::RangeInclusive<u64> = 1..=999;
/// Default hours a finished one-off job is kept.
pub const DEFAULT_KEEP_DONE_HOURS: u64 = 24;
/// Allowed keep time for finished jobs, hours.
pub const KEEP_DONE_HOURS: std::ops::RangeInclusive<u64> = 0..=999;

/// A job as the queue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Id.
    pub id: u64,
    /// State.
    pub state: JobState,
    /// When it is due (READY jobs).
    pub run_at: Option<u64>,
    /// When it last changed state.
    pub changed_at: u64,
    /// It repeats.
    pub recurring: bool,
}

/// The READY job to start at `now`: the one due longest, the lowest id among equals. A READY
/// job without a due time (journaled before jobs carried one) is due at once.
pub fn due(entries: &[Entry], now: u64) -> Option<u64> {
    entries
        .iter()
        .filter(|e| e.state == JobState::Ready && e.run_at.is_none_or(|t| t <= now))
        .min_by_key(|e| (e.run_at.unwrap_or(0), e.id))
        .map(|e| e.id)
}

/// One-off jobs that finished (DONE) more than `keep_secs` ago: they are deleted. Failed and
/// cancelled jobs stay until a person deletes or resubmits them.
pub fn expired(entries: &[Entry], now: u64, keep_secs: u64) -> Vec<u64> {
    entries
        .iter()
        .filter(|e| {
            e.state == JobState::Done && !e.recurring && e.changed_at.saturating_add(keep_secs) <= now
        })
        .map(|e| e.id)
        .collect()
}

/// A state change to journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new state.
    pub state: JobState,
    /// When it is due (READY only).
    pub run_at: Option<u64>,
    /// Why, for people.
    pub message: String,
}

fn ready(run_at: u64, message: String) -> Change {
    Change { state: JobState::Ready, run_at: Some(run_at), message }
}

/// What a person asks of a job that is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask<'a> {
    /// Keep it from running.
    Hold,
    /// Let it run when due.
    Release,
    /// Run it now.
    Run,
    /// Queue a finished job again.
    Resubmit,
    /// Run it at a time (`now`, `+30m`, a UTC time).
    Reschedule(&'a str),
    /// Cancel it (and queue it for its next time).
    Cancel {
        /// Queue it again.
        reschedule: bool,
    },
}

/// The change `ask` makes to a job in `state` with `schedule`, at `now`, or why it cannot.
/// A running job is handled by the runner (cancel) and refuses the rest.
pub fn on_ask(state: JobState, ask: &Ask<'_>, schedule: &Schedule, now: u64) -> Result<Vec<Change>, String> {
    use JobState::*;
    let next = |from: u64| schedule.next_from(from).unwrap_or(from);
    let refuse = |what: &str| Err(format!("cannot {what} a job that is {}", name(state)));
    Ok(match (ask, state) {
        (_, Active) if !matches!(ask, Ask::Cancel { .. }) => return refuse(verb(ask)),
        (Ask::Hold, Ready) => vec![Change { state: Hold, run_at: None, message: "held".into() }],
        (Ask::Hold, _) => return refuse("hold"),
        (Ask::Release, Hold) => {
            let t = next(now);
            vec![ready(t, format!("released; due {}", super::calendar::format(t)))]
        }
        (Ask::Release, _) => return refuse("release"),
        (Ask::Run, _) => vec![ready(now, "run now by hand".into())],
        (Ask::Resubmit, Done | Failed | Cancelled) => {
            let t = if schedule.recurring() { next(now) } else { now };
            vec![ready(t, format!("resubmitted; due {}", super::calendar::format(t)))]
        }
        (Ask::Resubmit, _) => return refuse("resubmit"),
        (Ask::Reschedule(when), _) => {
            let t = parse_when(when, now)?;
            vec![ready(t, format!("rescheduled to {}", super::calendar::format(t)))]
        }
        (Ask::Cancel { reschedule }, Ready | Hold | Active) => {
            let mut v = vec![Change { state: Cancelled, run_at: None, message: "cancelled by hand".into() }];
            if *reschedule && schedule.recurring() {
                let t = next(now.saturating_add(1));
                v.push(ready(t, format!("cancelled and rescheduled; due {}", super::calendar::format(t))));
            } else if *reschedule {
                return Err("a job that runs once has no next time: use `run` or `reschedule` later".into());
            }
            v
        }
        (Ask::Cancel { .. }, _) => return refuse("cancel"),
    })
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It completed.
    Done(String),
    /// It failed.
    Failed(String),
    /// A person cancelled it; queue it again when `reschedule`.
    Cancelled {
        /// Queue it for its next time.
        reschedule: bool,
    },
    /// The service was stopping: it runs again as soon as the service is back.
    Interrupted,
}

/// The changes after a run that started at `ran` ended at `ended` with `outcome`.
pub fn after_run(outcome: &Outcome, schedule: &Schedule, ran: u64, ended: u64) -> Vec<Change> {
    use JobState::*;
    let mut v = match outcome {
        Outcome::Done(m) => vec![Change { state: Done, run_at: None, message: m.clone() }],
        Outcome::Failed(m) => vec![Change { state: Failed, run_at: None, message: m.clone() }],
        Outcome::Cancelled { .. } => {
            vec![Change { state: Cancelled, run_at: None, message: "cancelled by hand".into() }]
        }
        Outcome::Interrupted => {
            return vec![ready(ended, "interrupted by a service stop: runs again when it is back".into())];
        }
    };
    let again = !matches!(outcome, Outcome::Cancelled { reschedule: false });
    if again && let Some(t) = schedule.next_after(ran, ended) {
        v.push(ready(t, format!("next run {}", super::calendar::format(t))));
    }
    v
}

/// The state's name for people.
pub fn name(state: JobState) -> &'static str {
    match state {
        JobState::Ready => "READY",
        JobState::Hold => "HOLD",
        JobState::Active => "ACTIVE",
        JobState::Done => "DONE",
        JobState::Failed => "FAILED",
        JobState::Cancelled => "CANCELLED",
    }
}

fn verb(ask: &Ask<'_>) -> &'static str {
    match ask {
        Ask::Hold => "hold",
        Ask::Release => "release",
        Ask::Run => "run",
        Ask::Resubmit => "resubmit",
        Ask::Reschedule(_) => "reschedule",
        Ask::Cancel { .. } => "cancel",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::jobs::schedule::Every;

    fn daily() -> Schedule {
        Schedule { start: 1000, every: Some(Every::Days(1)), except: vec![] }
    }
    fn once() -> Schedule {
        Schedule { start: 1000, every: None, except: vec![] }
    }
    fn e(id: u64, state: JobState, run_at: Option<u64>, changed_at: u64, recurring: bool) -> Entry {
        Entry { id, state, run_at, changed_at, recurring }
    }

    #[test]
    fn the_longest_due_ready_job_starts_first() {
        let q = [
            e(1, JobState::Ready, Some(50), 0, false),
            e(2, JobState::Ready, Some(20), 0, false),
            e(3, JobState::Hold, Some(10), 0, false),
            e(4, JobState::Ready, Some(200), 0, false),
        ];
        assert_eq!(due(&q, 100), Some(2));
        assert_eq!(due(&q, 10), None);
        let old = [e(9, JobState::Ready, None, 0, false), e(1, JobState::Ready, Some(5), 0, false)];
        assert_eq!(due(&old, 10), Some(9), "a READY job without a due time is due at once");
    }

    #[test]
    fn finished_one_offs_expire_after_the_keep_time() {
        let q = [
            e(1, JobState::Done, None, 100, false),
            e(2, JobState::Done, None, 100, true),
            e(3, JobState::Failed, None, 100, false),
        ];
        assert_eq!(expired(&q, 100 + 24 * 3600, 24 * 3600), vec![1]);
        assert!(expired(&q, 100 + 24 * 3600 - 1, 24 * 3600).is_empty());
        assert_eq!(expired(&q, 100, 0), vec![1], "keep 0 h: deleted at the next scan");
    }

    #[test]
    fn asks_follow_the_states() {
        let s = daily();
        assert_eq!(on_ask(JobState::Ready, &Ask::Hold, &s, 5000).unwrap()[0].state, JobState::Hold);
        let r = on_ask(JobState::Hold, &Ask::Release, &s, 5000).unwrap();
        assert_eq!(r[0].run_at, Some(1000 + 86_400));
        assert!(on_ask(JobState::Done, &Ask::Hold, &s, 0).unwrap_err().contains("DONE"));
        assert!(on_ask(JobState::Active, &Ask::Hold, &s, 0).unwrap_err().contains("ACTIVE"));
        assert_eq!(on_ask(JobState::Failed, &Ask::Resubmit, &once(), 7).unwrap()[0].run_at, Some(7));
        assert_eq!(on_ask(JobState::Done, &Ask::Run, &s, 7).unwrap()[0].run_at, Some(7));
        assert_eq!(on_ask(JobState::Ready, &Ask::Reschedule("+1h"), &s, 7).unwrap()[0].run_at, Some(3607));
        assert!(on_ask(JobState::Ready, &Ask::Reschedule("later"), &s, 7).is_err());
        let c = on_ask(JobState::Ready, &Ask::Cancel { reschedule: true }, &s, 5000).unwrap();
        assert_eq!(c.iter().map(|c| c.state).collect::<Vec<_>>(), [JobState::Cancelled, JobState::Ready]);
        assert!(on_ask(JobState::Ready, &Ask::Cancel { reschedule: true }, &once(), 5).is_err());
        assert!(on_ask(JobState::Done, &Ask::Cancel { reschedule: false }, &s, 5).is_err());
    }

    #[test]
    fn runs_end_in_their_state_and_recurring_ones_come_back() {
        let v = after_run(&Outcome::Done("ok".into()), &daily(), 1000, 1500);
        assert_eq!(v.iter().map(|c| c.state).collect::<Vec<_>>(), [JobState::Done, JobState::Ready]);
        assert_eq!(v[1].run_at, Some(1000 + 86_400));
        let v = after_run(&Outcome::Failed("x".into()), &once(), 1000, 1500);
        assert_eq!(v.len(), 1);
        let v = after_run(&Outcome::Cancelled { reschedule: false }, &daily(), 1000, 1500);
        assert_eq!(v.len(), 1);
        let v = after_run(&Outcome::Interrupted, &once(), 1000, 1500);
        assert_eq!((v[0].state, v[0].run_at), (JobState::Ready, Some(1500)));
    }

    proptest! {
        #[test]
        fn every_ask_in_every_state_answers_and_ready_has_a_time(
            state in 0..6u8, ask in 0..6u8, now in 0u64..4_000_000_000, recurring in any::<bool>()
        ) {
            let states = [JobState::Ready, JobState::Hold, JobState::Active, JobState::Done, JobState::Failed, JobState::Cancelled];
            let asks = [Ask::Hold, Ask::Release, Ask::Run, Ask::Resubmit, Ask::Reschedule("+5m"), Ask::Cancel { reschedule: true }];
            let s = if recurring { daily() } else { once() };
            if let Ok(changes) = on_ask(states[state as usize], &asks[ask as usize], &s, now) {
                prop_assert!(!changes.is_empty());
                for c in changes {
                    prop_assert_eq!(c.state == JobState::Ready, c.run_at.is_some());
                }
            }
        }
    }
}
