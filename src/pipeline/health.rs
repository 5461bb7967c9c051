//! Journals what the libraries' health checks found: cleaning cartridges' uses and
//! retirements, drives taken offline, hard errors in a row, and medium errors per cartridge
//! (a cartridge at its library's `medium_error_limit` is marked damaged and its unexpired
//! sessions are listed for copying). Each finding also goes to the activity log, for people.
//!
//! [`health_records`] is pure (the catalog and the findings in, records out) and only makes
//! records the catalog accepts: a use of a cartridge already retired is dropped, a cartridge
//! is retired once. [`journal_health`] runs the checks after a job and commits.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{
    Catalog, CleaningRetired, CleaningUsed, DriveErrors, LogEntry, LogLevel, MediumErrors, MediumState,
    MediumUpdated, Record,
};
use crate::library::HealthReport;
use crate::library::health::{self, HealthEvent};
use crate::lifecycle::pools::PoolSpec;
use crate::store::{State, StoreError};

/// Records for `report`, against catalog `c`, at `now`, with the board's `pools` (to tell
/// which sessions on a damaged cartridge have not expired).
pub fn health_records(c: &Catalog, report: &HealthReport, pools: &[PoolSpec], now: u64) -> Vec<Record> {
    let lib = &report.library;
    let mut out = Vec::new();
    let log = |level, message: String| Record::from(LogEntry { at: now, level, job: None, message });
    let known: BTreeMap<&str, _> = c.cleaning_cartridges(lib).collect();
    let mut uses: BTreeMap<String, u32> = known.iter().map(|(b, k)| (b.to_string(), k.uses)).collect();
    let mut retired: BTreeSet<String> =
        known.iter().filter(|(_, k)| k.retired.is_some()).map(|(b, _)| b.to_string()).collect();
    let mut errors: BTreeMap<[u8; 16], (u32, u32)> = BTreeMap::new();
    let retire = |out: &mut Vec<Record>, retired: &mut BTreeSet<String>, barcode: &str, why: &str| {
        if retired.insert(barcode.to_owned()) {
            out.push(Record::from(CleaningRetired {
                library: lib.clone(),
                barcode: barcode.to_owned(),
                at: now,
                why: why.to_owned(),
            }));
            out.push(log(
                LogLevel::Warning,
                format!(
                    "library {lib}: cleaning cartridge {barcode} retired, {why}: take it out and put a new one in"
                ),
            ));
        }
    };
    for e in &report.events {
        match e {
            HealthEvent::Cleaned { drive, barcode, .. } => {
                if retired.contains(barcode) {
                    tracing::warn!(target: "library", "{lib}: a cleaning with retired {barcode} is not counted");
                    continue;
                }
                // The catalog's count is the truth; the library's may start from an older one.
                let n = uses.entry(barcode.clone()).or_default();
                *n += 1;
                let n = *n;
                out.push(Record::from(CleaningUsed {
                    library: lib.clone(),
                    barcode: barcode.clone(),
                    drive: u16::try_from(*drive).unwrap_or(u16::MAX),
                    at: now,
                    uses: n,
                }));
                out.push(log(
                    LogLevel::Note,
                    format!("library {lib} drive {drive} cleaned with {barcode} (use {n})"),
                ));
                if let Some(why) = health::retire_after_use(n, &report.limits) {
                    retire(&mut out, &mut retired, barcode, &why);
                }
            }
            HealthEvent::CleaningRetired { barcode, why } => retire(&mut out, &mut retired, barcode, why),
            HealthEvent::NoCleaningCartridge { drive } => out.push(log(
                LogLevel::Warning,
                format!(
                    "library {lib} drive {drive} asks for cleaning but no usable cleaning cartridge is in the \
                     library: put one in (barcode CLN…); the drive stays in use meanwhile"
                ),
            )),
            HealthEvent::DriveOffline { drive, why } => {
                out.push(log(LogLevel::Error, format!("library {lib} drive {drive} taken offline: {why}")));
            }
            HealthEvent::DriveErrors { drive, hard_errors } => {
                let drive = u16::try_from(*drive).unwrap_or(u16::MAX);
                if c.drive_hard_errors(lib, drive) != *hard_errors {
                    let hard_errors = *hard_errors;
                    out.push(Record::from(DriveErrors { library: lib.clone(), drive, hard_errors }));
                }
            }
            HealthEvent::MediumError { barcode, write } => {
                let Some(m) = c.medium_by_barcode(barcode).filter(|m| m.info().location == report.location)
                else {
                    tracing::warn!(target: "library", "{lib}: medium error on {barcode}, which the catalog does not hold");
                    continue;
                };
                let counts = errors.entry(m.id()).or_insert(m.errors());
                if *write {
                    counts.1 = counts.1.saturating_add(1);
                } else {
                    counts.0 = counts.0.saturating_add(1);
                }
            }
        }
    }
    for (medium, (read, write)) in errors {
        out.push(Record::from(MediumErrors { medium, read, write }));
        let m = c.medium(medium).expect("found by barcode above");
        if m.state() == MediumState::Error || !health::damaged(read, write, &report.limits) {
            continue;
        }
        out.push(Record::from(MediumUpdated { medium, used: m.used(), state: MediumState::Error }));
        out.push(log(LogLevel::Error, damaged_message(c, m, (read, write), report, pools, now)));
    }
    out
}

/// The activity log's word on a damaged cartridge: its errors and the sessions to copy.
fn damaged_message(
    c: &Catalog,
    m: &crate::catalog::Medium,
    (read, write): (u32, u32),
    report: &HealthReport,
    pools: &[PoolSpec],
    now: u64,
) -> String {
    let verdicts = crate::lifecycle::report::verdicts(c, pools, now);
    let keep: Vec<String> = c
        .sessions_on(m.id())
        .filter(|s| !verdicts.get(&s.id()).is_some_and(|v| v.expired()))
        .map(|s| s.id().to_string())
        .collect();
    let copy = if keep.is_empty() {
        "no unexpired session is on it".to_owned()
    } else {
        format!("copy its unexpired sessions to other media: {}", keep.join(", "))
    };
    format!(
        "library {}: cartridge {} is damaged ({read} read and {write} write errors; medium_error_limit is {}): \
         it is not written again; {copy}",
        report.library,
        m.barcode(),
        report.limits.medium_error_limit
    )
}

/// Checks every idle drive of the open libraries, then journals what every check since the
/// last call found, and tells the libraries what the catalog now says.
pub fn journal_health(store: &mut impl State) -> Result<(), StoreError> {
    crate::library::tend_all();
    let reports = crate::library::take_health_events();
    if reports.is_empty() {
        return Ok(());
    }
    let pools = crate::library::board().pools;
    let now = crate::clock::unix_now();
    for r in &reports {
        let records = store.read(|c| health_records(c, r, &pools, now));
        if !records.is_empty() {
            store.commit(&records)?;
        }
    }
    store.read(crate::library::learn_catalog);
    Ok(())
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
