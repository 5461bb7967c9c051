//! What `coffer pool` shows: each pool with its cartridges and the verdict on each session,
//! from the catalog and the board's pools at a given time. Pure.

use std::collections::BTreeMap;

use super::pools::PoolSpec;
use super::retention::{Facts, Policy, Verdict, judge};
use crate::catalog::{Catalog, MediumState, SessionKind};

/// One cartridge (or disk volume) as a pool sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cartridge {
    /// Its barcode.
    pub barcode: String,
    /// `writable`, `full`, `read-only`, `retired`, `error`; `expired` once every session on it
    /// has expired (it may be written again from its start).
    pub status: &'static str,
    /// Sessions with a part on it.
    pub sessions: Vec<u64>,
    /// Bytes in use.
    pub used: u64,
    /// Bytes it holds.
    pub capacity: u64,
}

/// One session's verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Kept {
    /// Session id.
    pub session: u64,
    /// Start time.
    pub started: u64,
    /// Whether it has expired.
    pub expired: bool,
    /// Why it is kept, for people.
    pub why: String,
}

/// One pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolView {
    /// Its name.
    pub name: String,
    /// Whether the board names it (else it is only written on labels).
    pub on_board: bool,
    /// Seconds it keeps a session; `None`: not by age.
    pub keep: Option<u64>,
    /// Newest sets kept.
    pub keep_sets: Option<u32>,
    /// Its library.
    pub library: Option<String>,
    /// Its barcode ranges as the board writes them.
    pub barcodes: Vec<String>,
    /// Its cartridges the catalog knows.
    pub cartridges: Vec<Cartridge>,
    /// Its sessions, oldest first.
    pub sessions: Vec<Kept>,
}

/// The pool a session belongs to: that of the medium of its first part ("" when it wrote no
/// part).
fn session_pool(c: &Catalog, s: &crate::catalog::Session) -> String {
    s.parts().next().and_then(|p| c.medium(p.medium)).map_or_else(String::new, |m| m.info().pool.clone())
}

/// Every session's retention facts.
pub fn facts(c: &Catalog) -> Vec<Facts> {
    c.sessions()
        .map(|s| Facts {
            id: s.id(),
            source: s.start().source_key,
            started: s.start().started,
            base: match s.start().kind {
                SessionKind::Full => None,
                SessionKind::Incremental { base } => Some(base),
            },
            finished: s.is_finished(),
            pool: session_pool(c, s),
        })
        .collect()
}

/// The verdict on every session at `now`, by the board's pools.
pub fn verdicts(c: &Catalog, specs: &[PoolSpec], now: u64) -> BTreeMap<u64, Verdict> {
    judged(&facts(c), specs, now)
}

/// The verdict on each of `facts` at `now`, by the board's pools.
fn judged(facts: &[Facts], specs: &[PoolSpec], now: u64) -> BTreeMap<u64, Verdict> {
    let policy =
        |pool: &str| specs.iter().find(|p| p.name == pool).map_or(Policy::default(), PoolSpec::policy);
    judge(facts, policy, now)
}

/// Every pool of the board and every pool written on a medium the catalog knows, by name.
pub fn pools(c: &Catalog, specs: &[PoolSpec], now: u64) -> Vec<PoolView> {
    let facts = facts(c);
    let verdicts = judged(&facts, specs, now);
    let mut names: Vec<String> = specs.iter().map(|p| p.name.clone()).collect();
    for m in c.media() {
        if !names.contains(&m.info().pool) {
            names.push(m.info().pool.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let spec = specs.iter().find(|p| p.name == name);
            let mut cartridges: Vec<Cartridge> = c
                .media()
                .filter(|m| m.info().pool == name)
                .map(|m| {
                    let sessions: Vec<u64> = c.sessions_on(m.id()).map(|s| s.id()).collect();
                    let expired = !sessions.is_empty() && sessions.iter().all(|s| verdicts[s].expired());
                    let status = match m.state() {
                        _ if expired => "expired",
                        MediumState::Writable => "writable",
                        MediumState::Full => "full",
                        MediumState::ReadOnly => "read-only",
                        MediumState::Retired => "retired",
                        MediumState::Error => "error",
                    };
                    Cartridge {
                        barcode: m.barcode().to_owned(),
                        status,
                        sessions,
                        used: m.used(),
                        capacity: m.info().capacity,
                    }
                })
                .collect();
            cartridges.sort_by(|a, b| a.barcode.cmp(&b.barcode));
            let sessions = facts
                .iter()
                .filter(|f| f.pool == name)
                .map(|f| {
                    let v = &verdicts[&f.id];
                    Kept { session: f.id, started: f.started, expired: v.expired(), why: v.describe() }
                })
                .collect();
            let policy = spec.map_or(Policy::default(), PoolSpec::policy);
            PoolView {
                on_board: spec.is_some(),
                keep: policy.keep,
                keep_sets: policy.keep_sets,
                library: spec.and_then(|s| s.library.clone()),
                barcodes: spec.map_or_else(Vec::new, |s| s.barcodes.clone()),
                name,
                cartridges,
                sessions,
            }
        })
        .collect()
}

/// One cartridge as `coffer media list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MediumLine {
    /// Its barcode.
    pub barcode: String,
    /// Its pool ("" for a cartridge coffer has not labelled).
    pub pool: String,
    /// `writable`, `full`, `expired`, `scratch`, `cleaning`, `damaged`, `offsite`,
    /// `read-only`, `retired`.
    pub status: &'static str,
    /// Sessions with a part on it.
    pub sessions: usize,
    /// Bytes written to it.
    pub used: u64,
    /// Its first and last write (its oldest session's start, its newest session's end).
    pub first_write: Option<u64>,
    /// See `first_write`.
    pub last_write: Option<u64>,
    /// When its last kept session expires, when that is a date.
    pub expires: Option<u64>,
    /// Why it is kept, for people (the verdict of its longest-kept session).
    pub kept: String,
    /// Since when it is offsite.
    pub offsite: Option<u64>,
    /// The library that holds it now, if one does.
    pub library: Option<String>,
    /// MEDIUM ERROR sense seen reading it.
    pub read_errors: u32,
    /// MEDIUM ERROR sense seen writing it.
    pub write_errors: u32,
    /// A cleaning cartridge's uses counted.
    pub cleaning_uses: Option<u32>,
}

/// Every cartridge the catalog knows and every other one `present` lists (barcode, library:
/// blank or cleaning cartridges in a library), by barcode, with its status at `now`.
pub fn media(c: &Catalog, specs: &[PoolSpec], now: u64, present: &[(String, String)]) -> Vec<MediumLine> {
    let verdicts = judged(&facts(c), specs, now);
    let library_of = |b: &str| present.iter().find(|(x, _)| x == b).map(|(_, l)| l.clone());
    let mut out: Vec<MediumLine> = c
        .media()
        .map(|m| {
            let sessions: Vec<&crate::catalog::Session> = c.sessions_on(m.id()).collect();
            let v: Vec<&Verdict> = sessions.iter().map(|s| &verdicts[&s.id()]).collect();
            let expired = !v.is_empty() && v.iter().all(|v| v.expired());
            let status = match m.state() {
                MediumState::Error => "damaged",
                _ if m.offsite().is_some() => "offsite",
                _ if expired => "expired",
                _ if sessions.is_empty() && m.used() == 0 => "scratch",
                MediumState::Writable => "writable",
                MediumState::Full => "full",
                MediumState::ReadOnly => "read-only",
                MediumState::Retired => "retired",
            };
            // The session kept longest says how long the cartridge is: a date while every
            // kept one is kept by age, else what keeps it.
            let kept: Vec<&&Verdict> = v.iter().filter(|v| !v.expired()).collect();
            let dated = kept.iter().all(|v| matches!(v, Verdict::Young { .. }));
            let expires = if dated {
                kept.iter()
                    .filter_map(|v| if let Verdict::Young { until } = v { Some(*until) } else { None })
                    .max()
            } else {
                None
            };
            let longest = kept.iter().find(|v| !matches!(v, Verdict::Young { .. })).or_else(|| {
                kept.iter().max_by_key(|v| if let Verdict::Young { until } = v { *until } else { 0 })
            });
            MediumLine {
                barcode: m.barcode().to_owned(),
                pool: m.info().pool.clone(),
                status,
                sessions: sessions.len(),
                used: m.used(),
                first_write: sessions.iter().map(|s| s.start().started).min(),
                last_write: sessions.iter().map(|s| s.finish().map_or(s.start().started, |f| f.ended)).max(),
                expires,
                kept: match longest {
                    Some(v) => v.describe(),
                    None if expired => "expired".into(),
                    None => String::new(),
                },
                offsite: m.offsite(),
                library: library_of(m.barcode()),
                read_errors: m.errors().0,
                write_errors: m.errors().1,
                cleaning_uses: None,
            }
        })
        .collect();
    for (b, lib) in present {
        if c.medium_by_barcode(b).is_some() {
            continue;
        }
        let cleaning = b.starts_with(crate::library::inventory::CLEANING_PREFIX);
        let worn = c.cleaning_cartridges(lib).find(|(x, _)| x == b).map(|(_, k)| k);
        let status = match (cleaning, worn.is_some_and(|k| k.retired.is_some())) {
            (true, true) => "retired",
            (true, false) => "cleaning",
            (false, _) => "scratch",
        };
        out.push(MediumLine {
            barcode: b.clone(),
            pool: String::new(),
            status,
            sessions: 0,
            used: 0,
            first_write: None,
            last_write: None,
            expires: None,
            kept: String::new(),
            offsite: None,
            library: Some(lib.clone()),
            read_errors: 0,
            write_errors: 0,
            cleaning_uses: cleaning.then(|| worn.map_or(0, |k| k.uses)),
        });
    }
    out.sort_by(|a, b| a.barcode.cmp(&b.barcode));
    out
}
