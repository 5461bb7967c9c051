//! Retention over restore chains (seed 001): which sessions a pool keeps, which it keeps only
//! because a kept session needs them, and which have expired.
//!
//! A session is *kept* while it is younger than its pool's `keep` or belongs to one of the
//! newest `keep_sets` sets of its source in its pool (a set: a full backup and the incrementals built on
//! it). It is *needed* while a kept session's restore chain runs through it: an incremental
//! restores on top of its base, and that base on top of its own, down to a full backup. Only a
//! session neither kept nor needed has *expired*. A pool without either rule keeps everything,
//! and a session still running is always kept.

use std::collections::{BTreeMap, HashMap};

/// A source in a pool: whose sets `keep_sets` counts.
type SetKey = ([u8; 32], String);

/// How long a pool keeps its sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Seconds a session is kept after it started.
    pub keep: Option<u64>,
    /// Newest sets of each source kept, whatever their age.
    pub keep_sets: Option<u32>,
}

impl Policy {
    /// Whether the policy lets anything expire.
    pub fn expires(&self) -> bool {
        self.keep.is_some() || self.keep_sets.is_some()
    }
}

/// What retention needs to know of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Session id.
    pub id: u64,
    /// Which roots it backs up (sessions of one source form its sets).
    pub source: [u8; 32],
    /// Start time, seconds since the epoch.
    pub started: u64,
    /// The session an incremental was taken against; `None`: a full backup.
    pub base: Option<u64>,
    /// Whether it has ended (complete, failed, cancelled or interrupted).
    pub finished: bool,
    /// The pool its media belong to.
    pub pool: String,
}

/// Why a session is kept, or that it has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still running.
    Running,
    /// Younger than its pool's `keep`: kept until `until` (seconds since the epoch).
    Young {
        /// When its age passes `keep`.
        until: u64,
    },
    /// One of the newest `keep_sets` sets of its source.
    InSet,
    /// Its pool keeps everything (no retention set).
    Forever,
    /// Kept because the restore chain of kept session `by` runs through it.
    Needed {
        /// The newest kept session whose chain needs it.
        by: u64,
    },
    /// Neither kept nor needed.
    Expired,
}

impl Verdict {
    /// Whether the session has expired.
    pub fn expired(&self) -> bool {
        matches!(self, Verdict::Expired)
    }

    /// For people: `kept until 2027-01-12`, `needed by session 41`, `expired`.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Running => "running".into(),
            Verdict::Young { until } => format!("kept until {}", crate::jobs::calendar::format(*until)),
            Verdict::InSet => "kept (one of the newest sets)".into(),
            Verdict::Forever => "kept (the pool keeps everything)".into(),
            Verdict::Needed { by } => format!("needed by session {by}"),
            Verdict::Expired => "expired".into(),
        }
    }
}

/// The verdict on every session of `sessions` at `now`, each judged by the policy of its
/// pool (`policy`).
pub fn judge(sessions: &[Facts], policy: impl Fn(&str) -> Policy, now: u64) -> BTreeMap<u64, Verdict> {
    let by_id: HashMap<u64, &Facts> = sessions.iter().map(|s| (s.id, s)).collect();
    // Each session's set: the full backup its chain comes down to (itself when full). A chain
    // whose base is gone from the catalog starts a set of its own at its oldest session.
    let root = |s: &Facts| {
        let mut at = s;
        let mut hops = 0;
        while let Some(base) = at.base.and_then(|b| by_id.get(&b)) {
            at = base;
            hops += 1;
            if hops > sessions.len() {
                break; // a cycle cannot come from real backups; do not loop on a broken catalog
            }
        }
        at.id
    };
    let set_of: HashMap<u64, u64> = sessions.iter().map(|s| (s.id, root(s))).collect();
    // The sets of each source in each pool, newest first (by the set's first session's
    // start): a pool's `keep_sets` counts its own sets, not another pool's of the same source.
    let set_key = |s: &Facts| {
        let r = by_id[&set_of[&s.id]];
        (r.source, r.pool.clone())
    };
    let mut sets: HashMap<SetKey, Vec<(u64, u64)>> = HashMap::new();
    for s in sessions.iter().filter(|s| set_of[&s.id] == s.id) {
        sets.entry(set_key(s)).or_default().push((s.started, s.id));
    }
    for v in sets.values_mut() {
        v.sort_unstable_by(|a, b| b.cmp(a));
    }
    let mut verdicts: BTreeMap<u64, Verdict> = BTreeMap::new();
    for s in sessions {
        let p = policy(&s.pool);
        let v = if !s.finished {
            Verdict::Running
        } else if !p.expires() {
            Verdict::Forever
        } else if let Some(until) = p.keep.map(|k| s.started.saturating_add(k)).filter(|&u| now < u) {
            Verdict::Young { until }
        } else if p.keep_sets.is_some_and(|n| {
            let newest = &sets[&set_key(s)];
            newest.iter().take(n as usize).any(|&(_, id)| id == set_of[&s.id])
        }) {
            Verdict::InSet
        } else {
            Verdict::Expired
        };
        verdicts.insert(s.id, v);
    }
    // Every kept session keeps its chain: newest first, so `by` names the newest that needs it.
    let mut kept: Vec<&Facts> = sessions.iter().filter(|s| !verdicts[&s.id].expired()).collect();
    kept.sort_unstable_by_key(|s| std::cmp::Reverse(s.id));
    for s in kept {
        let mut at = s.base;
        let mut hops = 0;
        while let Some(b) = at {
            hops += 1;
            if hops > sessions.len() {
                break;
            }
            match verdicts.get_mut(&b) {
                Some(v) if v.expired() => *v = Verdict::Needed { by: s.id },
                Some(_) => {}
                None => break,
            }
            at = by_id.get(&b).and_then(|f| f.base);
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const T0: u64 = 1_800_000_000;

    fn full(id: u64, day: u64) -> Facts {
        Facts {
            id,
            source: [1; 32],
            started: T0 + day * DAY,
            base: None,
            finished: true,
            pool: "daily".into(),
        }
    }

    fn incr(id: u64, day: u64, base: u64) -> Facts {
        Facts { base: Some(base), ..full(id, day) }
    }

    fn judged(sessions: &[Facts], p: Policy, day: u64) -> Vec<(u64, Verdict)> {
        judge(sessions, |_| p, T0 + day * DAY).into_iter().collect()
    }

    #[test]
    fn a_full_backup_lives_as_long_as_an_incremental_that_needs_it() {
        // Day 0 full, then an incremental a day on the one before, then a new full on day 7.
        let mut s = vec![full(1, 0)];
        for d in 1..7 {
            s.push(incr(d + 1, d, d));
        }
        s.push(full(8, 7));
        s.push(incr(9, 8, 8));
        let p = Policy { keep: Some(3 * DAY), keep_sets: None };
        let v = judged(&s, p, 9);
        // Days 7 and 8 are within 3 days of day 9; 6 is past it (day 9 is exactly 3 after).
        assert_eq!(v[7], (8, Verdict::Young { until: T0 + 10 * DAY }));
        assert_eq!(v[8], (9, Verdict::Young { until: T0 + 11 * DAY }));
        // The first set is not needed by the second: all of it expired.
        assert!(v[..7].iter().all(|(_, v)| v.expired()), "{v:?}");

        // On day 5 the chain 1..=6 is needed down to the full of day 0.
        let v = judged(&s[..6], p, 5);
        assert_eq!(v[0], (1, Verdict::Needed { by: 6 }));
        assert_eq!(v[2], (3, Verdict::Needed { by: 6 }));
        assert_eq!(v[3].1, Verdict::Young { until: T0 + 6 * DAY });
    }

    #[test]
    fn keep_sets_keeps_the_newest_sets_of_each_source_whatever_their_age() {
        let other = |mut f: Facts| {
            f.source = [2; 32];
            f
        };
        let s = vec![
            full(1, 0),
            incr(2, 1, 1),
            full(3, 7),
            incr(4, 8, 3),
            full(5, 14),
            other(full(6, 0)),
            other(incr(7, 1, 6)),
        ];
        let v = judged(&s, Policy { keep: None, keep_sets: Some(2) }, 400);
        let expired: Vec<u64> = v.iter().filter(|(_, v)| v.expired()).map(|(id, _)| *id).collect();
        assert_eq!(expired, vec![1, 2], "{v:?}");
        assert_eq!(v[3].1, Verdict::InSet);
        assert_eq!(v[6].1, Verdict::InSet, "the other source's only set is kept");
    }

    #[test]
    fn either_rule_keeps_and_no_rule_keeps_everything() {
        let s = vec![full(1, 0), full(2, 30), full(3, 31)];
        let v = judged(&s, Policy { keep: Some(10 * DAY), keep_sets: Some(2) }, 35);
        assert_eq!(v.iter().map(|(_, v)| v.expired()).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!(v[2].1, Verdict::Young { until: T0 + 41 * DAY });
        let v = judged(&s, Policy::default(), 10_000);
        assert!(v.iter().all(|(_, v)| *v == Verdict::Forever));
    }

    #[test]
    fn a_running_session_and_its_chain_never_expire() {
        let mut running = incr(2, 1, 1);
        running.finished = false;
        let v = judged(&[full(1, 0), running], Policy { keep: Some(DAY), keep_sets: None }, 100);
        assert_eq!(v[0].1, Verdict::Needed { by: 2 });
        assert_eq!(v[1].1, Verdict::Running);
    }

    #[test]
    fn a_chain_whose_base_left_the_catalog_is_a_set_of_its_own() {
        // Session 5's base (4) is gone: 5 and 6 form a set rooted at 5.
        let s = vec![incr(5, 10, 4), incr(6, 11, 5), full(7, 20)];
        let v = judged(&s, Policy { keep: None, keep_sets: Some(1) }, 30);
        assert_eq!(v.iter().map(|(_, v)| v.expired()).collect::<Vec<_>>(), [true, true, false]);
        let v = judged(&s, Policy { keep: None, keep_sets: Some(2) }, 30);
        assert!(v.iter().all(|(_, v)| !v.expired()), "{v:?}");
    }
}
