//! Drive health decisions: when a drive is cleaned, when it is taken offline, which cleaning
//! cartridge is used, when one is retired, when a cartridge is damaged. Pure rules over the
//! TapeAlert flags and the counts coffer keeps; the cleaning cycle itself is in
//! [`super::cleaning`], and what happened is handed up as [`HealthEvent`]s for the journal.

use std::collections::HashMap;

use crate::board::HealthLimits;
use crate::scsi::pages::{TapeAlert, tape_alert};

/// What to do with a drive after reading its TapeAlert flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Healthy,
    /// Clean it (it asks for cleaning now or routinely).
    Clean,
    /// Take it out of use, with why.
    Offline(String),
}

/// What a check of the drive's flags decides, given the checks in a row that found hard
/// errors before this one; also returns that count as it is after this check.
pub fn judge(alerts: TapeAlert, hard_errors_before: u32, limits: &HealthLimits) -> (Verdict, u32) {
    let hard = if alerts.hard_error() { hard_errors_before.saturating_add(1) } else { 0 };
    if hard >= limits.hard_error_limit {
        let flags = named_flags(alerts);
        let why = format!(
            "it reported hard errors ({flags}) at {hard} checks in a row (hard_error_limit is {}): \
             have it serviced, then bring it online with `coffer media drive <number> online`",
            limits.hard_error_limit
        );
        return (Verdict::Offline(why), hard);
    }
    if alerts.cleaning_required() || alerts.cleaning_requested() {
        return (Verdict::Clean, hard);
    }
    (Verdict::Healthy, hard)
}

/// Why a drive that still asks for cleaning right after a cleaning cycle is taken offline;
/// `None` when the cleaning helped.
pub fn after_cleaning(alerts: TapeAlert) -> Option<String> {
    (alerts.cleaning_required() || alerts.cleaning_requested()).then(|| {
        "it still asks for cleaning right after a cleaning cycle: have it serviced, then bring it \
         online with `coffer media drive <number> online`"
            .to_owned()
    })
}

/// What coffer knows of one cleaning cartridge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleaningKnown {
    /// Uses counted.
    pub uses: u32,
    /// Never to be used again.
    pub retired: bool,
}

/// The cleaning cartridge to use among `present` (barcodes in the library's slots): the most
/// used one still usable, so that one wears out at a time and the others stay fresh.
pub fn pick_cleaning(
    present: &[String],
    known: &HashMap<String, CleaningKnown>,
    limits: &HealthLimits,
) -> Option<String> {
    present
        .iter()
        .map(|b| (b, known.get(b).copied().unwrap_or_default()))
        .filter(|(_, k)| !k.retired && k.uses < limits.cleaning_uses)
        .max_by_key(|(b, k)| (k.uses, std::cmp::Reverse((*b).clone())))
        .map(|(b, _)| b.clone())
}

/// Why a cleaning cartridge is retired after its use number `uses`, if it is.
pub fn retire_after_use(uses: u32, limits: &HealthLimits) -> Option<String> {
    (uses >= limits.cleaning_uses)
        .then(|| format!("used {uses} times, its limit (cleaning_uses is {})", limits.cleaning_uses))
}

/// Why a cleaning cartridge is retired when the drive reports it expired.
pub fn retire_expired(alerts: TapeAlert) -> Option<String> {
    alerts
        .is_set(tape_alert::EXPIRED_CLEANING_MEDIA)
        .then(|| "the drive reports it expired (TapeAlert expired cleaning media)".to_owned())
}

/// Whether a cartridge with these error counts is damaged.
pub fn damaged(read: u32, write: u32, limits: &HealthLimits) -> bool {
    read.saturating_add(write) >= limits.medium_error_limit
}

/// The set flags by name, for messages.
fn named_flags(alerts: TapeAlert) -> String {
    let names: Vec<String> = alerts
        .flags()
        .map(|f| tape_alert::flag_name(f).map_or_else(|| format!("flag {f:#04x}"), str::to_owned))
        .collect();
    names.join(", ")
}

/// What happened to a library's drives and cartridges, for the journal and the activity log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    /// Drive `drive` was cleaned with `barcode`, its use number `uses`.
    Cleaned {
        /// The drive.
        drive: usize,
        /// The cleaning cartridge.
        barcode: String,
        /// Its uses so far.
        uses: u32,
    },
    /// A cleaning cartridge is retired.
    CleaningRetired {
        /// Its barcode.
        barcode: String,
        /// Why.
        why: String,
    },
    /// Drive `drive` asks for cleaning and no cleaning cartridge is usable.
    NoCleaningCartridge {
        /// The drive.
        drive: usize,
    },
    /// Drive `drive` was taken offline.
    DriveOffline {
        /// The drive.
        drive: usize,
        /// Why.
        why: String,
    },
    /// Checks in a row that found hard errors on drive `drive` changed.
    DriveErrors {
        /// The drive.
        drive: usize,
        /// The count now.
        hard_errors: u32,
    },
    /// A MEDIUM ERROR reading or writing cartridge `barcode`.
    MediumError {
        /// The cartridge.
        barcode: String,
        /// Writing (else reading).
        write: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HealthLimits {
        HealthLimits { cleaning_uses: 3, hard_error_limit: 2, medium_error_limit: 3 }
    }

    fn alerts(flags: &[u8]) -> TapeAlert {
        flags.iter().fold(TapeAlert::default(), |a, &f| a.with(f))
    }

    #[test]
    fn cleaning_flags_ask_for_a_cleaning_and_hard_errors_in_a_row_take_the_drive_offline() {
        let l = limits();
        assert_eq!(judge(alerts(&[]), 1, &l), (Verdict::Healthy, 0), "a clean check resets the count");
        assert_eq!(judge(alerts(&[tape_alert::CLEAN_NOW]), 0, &l), (Verdict::Clean, 0));
        assert_eq!(judge(alerts(&[tape_alert::CLEAN_PERIODIC]), 0, &l), (Verdict::Clean, 0));
        let hard = alerts(&[tape_alert::HARD_ERROR, tape_alert::CLEAN_NOW]);
        assert_eq!(judge(hard, 0, &l), (Verdict::Clean, 1), "once is not repeatedly");
        let (v, n) = judge(hard, 1, &l);
        assert_eq!(n, 2);
        let Verdict::Offline(why) = v else { panic!("{v:?}") };
        assert!(why.contains("hard error") && why.contains("2 checks in a row"), "{why}");
        assert!(after_cleaning(alerts(&[tape_alert::CLEAN_PERIODIC])).is_some());
        assert!(after_cleaning(alerts(&[])).is_none());
    }

    #[test]
    fn the_most_used_usable_cleaning_cartridge_is_picked_and_worn_ones_are_retired() {
        let l = limits();
        let present: Vec<String> = ["CLN001L1", "CLN002L1", "CLN003L1"].map(String::from).to_vec();
        let mut known = HashMap::new();
        assert_eq!(pick_cleaning(&present, &known, &l).as_deref(), Some("CLN001L1"), "all fresh: the first");
        known.insert("CLN002L1".to_owned(), CleaningKnown { uses: 1, retired: false });
        assert_eq!(pick_cleaning(&present, &known, &l).as_deref(), Some("CLN002L1"));
        known.insert("CLN002L1".to_owned(), CleaningKnown { uses: 3, retired: false });
        known.insert("CLN001L1".to_owned(), CleaningKnown { uses: 0, retired: true });
        assert_eq!(pick_cleaning(&present, &known, &l).as_deref(), Some("CLN003L1"), "past its uses");
        known.insert("CLN003L1".to_owned(), CleaningKnown { uses: 1, retired: true });
        assert_eq!(pick_cleaning(&present, &known, &l), None);
        assert_eq!(pick_cleaning(&[], &HashMap::new(), &l), None);
        assert!(retire_after_use(2, &l).is_none());
        assert!(retire_after_use(3, &l).unwrap().contains("cleaning_uses is 3"));
        assert!(retire_expired(alerts(&[tape_alert::EXPIRED_CLEANING_MEDIA])).is_some());
        assert!(retire_expired(alerts(&[tape_alert::CLEAN_NOW])).is_none());
    }

    #[test]
    fn a_cartridge_is_damaged_at_its_error_limit() {
        let l = limits();
        assert!(!damaged(1, 1, &l));
        assert!(damaged(2, 1, &l));
        assert!(damaged(u32::MAX, u32::MAX, &l), "no overflow");
    }
}
