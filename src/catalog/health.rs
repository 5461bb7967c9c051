//! Records and state of the library's health: cleaning cartridges (uses counted, retired),
//! media errors per cartridge, and the hard errors a drive reported in a row.
//!
//! Every record carries absolute values (the count after the event), not increments, so a
//! snapshot is the latest record of each thing and replaying it twice changes nothing.
//! Kinds 20 to 23 (the media group).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::record::{MAX_MESSAGE_LEN, RecordBody};
use crate::format::records::{MAX_BARCODE_LEN, MAX_NAME_LEN};

/// Highest use count a cleaning cartridge may reach (no cleaning cartridge lasts this long).
pub const MAX_CLEANING_USES: u32 = 100_000;

/// A cleaning cartridge cleaned a drive: its uses so far, this one included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleaningUsed {
    /// The library it lives in (board name).
    pub library: String,
    /// Its barcode (`CLN…`).
    pub barcode: String,
    /// The drive it cleaned.
    pub drive: u16,
    /// When, seconds since the Unix epoch.
    pub at: u64,
    /// Uses so far, this one included.
    pub uses: u32,
}

/// A cleaning cartridge will not be used again: past its uses, or the drive said it expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleaningRetired {
    /// The library it lives in.
    pub library: String,
    /// Its barcode.
    pub barcode: String,
    /// When, seconds since the Unix epoch.
    pub at: u64,
    /// Why, for people.
    pub why: String,
}

/// A medium's error counts: MEDIUM ERROR sense seen reading and writing it, in total.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediumErrors {
    /// Medium UUID.
    pub medium: [u8; 16],
    /// Read errors so far.
    pub read: u32,
    /// Write errors so far.
    pub write: u32,
}

/// How many checks in a row found a drive's hard-error TapeAlert flags set (0: the last
/// check found none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveErrors {
    /// The library.
    pub library: String,
    /// The drive (data transfer element order).
    pub drive: u16,
    /// Checks in a row with hard errors.
    pub hard_errors: u32,
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.contains('\0')
}

fn barcode_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_BARCODE_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

impl RecordBody for CleaningUsed {
    const KIND: u16 = 20;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !name_ok(&self.library) {
            return Err("library name empty, over 256 bytes or holding a NUL");
        }
        if !barcode_ok(&self.barcode) {
            return Err("barcode must be 1 to 32 printable ASCII characters without spaces");
        }
        if !(1..=MAX_CLEANING_USES).contains(&self.uses) {
            return Err("a cleaning cartridge's uses are counted from 1 to 100000");
        }
        Ok(())
    }
}

impl RecordBody for CleaningRetired {
    const KIND: u16 = 21;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !name_ok(&self.library) {
            return Err("library name empty, over 256 bytes or holding a NUL");
        }
        if !barcode_ok(&self.barcode) {
            return Err("barcode must be 1 to 32 printable ASCII characters without spaces");
        }
        if self.why.is_empty() || self.why.len() > MAX_MESSAGE_LEN || self.why.contains('\0') {
            return Err("reason empty, over 4096 bytes or holding a NUL");
        }
        Ok(())
    }
}

impl RecordBody for MediumErrors {
    const KIND: u16 = 22;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if self.medium == [0; 16] {
            return Err("medium UUID is nil");
        }
        Ok(())
    }
}

impl RecordBody for DriveErrors {
    const KIND: u16 = 23;
    const VERSION: u8 = 1;
    fn validate(&self) -> Result<(), &'static str> {
        if !name_ok(&self.library) {
            return Err("library name empty, over 256 bytes or holding a NUL");
        }
        Ok(())
    }
}

/// What the catalog knows of one cleaning cartridge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleaningCartridge {
    /// Uses counted.
    pub uses: u32,
    /// The last use: when and which drive.
    pub last: Option<(u64, u16)>,
    /// Retired: when and why.
    pub retired: Option<(u64, String)>,
}

/// Cleaning cartridges by (library, barcode), and drives' hard errors in a row by (library,
/// drive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub(super) cleaning: BTreeMap<(String, String), CleaningCartridge>,
    pub(super) drive_errors: BTreeMap<(String, u16), u32>,
}

impl Health {
    /// Counts a use; a retired cartridge, or a count that does not go up, is refused.
    pub(super) fn cleaning_used(&mut self, b: &CleaningUsed) -> Result<(), &'static str> {
        let key = (b.library.clone(), b.barcode.clone());
        let c = self.cleaning.get(&key);
        if c.is_some_and(|c| c.retired.is_some()) {
            return Err("the cleaning cartridge is retired: it is never used again");
        }
        if c.is_some_and(|c| b.uses <= c.uses) {
            return Err("a cleaning cartridge's use count only goes up");
        }
        let c = self.cleaning.entry(key).or_default();
        c.uses = b.uses;
        c.last = Some((b.at, b.drive));
        Ok(())
    }

    /// Retires a cleaning cartridge (again is refused).
    pub(super) fn cleaning_retired(&mut self, b: &CleaningRetired) -> Result<(), &'static str> {
        let c = self.cleaning.entry((b.library.clone(), b.barcode.clone())).or_default();
        if c.retired.is_some() {
            return Err("the cleaning cartridge is retired already");
        }
        c.retired = Some((b.at, b.why.clone()));
        Ok(())
    }

    /// Sets a drive's hard errors in a row (0 forgets the drive).
    pub(super) fn drive_errors(&mut self, b: &DriveErrors) {
        let key = (b.library.clone(), b.drive);
        if b.hard_errors == 0 {
            self.drive_errors.remove(&key);
        } else {
            self.drive_errors.insert(key, b.hard_errors);
        }
    }

    /// Records that rebuild this state.
    pub(super) fn records(&self) -> impl Iterator<Item = super::Record> + '_ {
        let cleaning = self.cleaning.iter().flat_map(|((library, barcode), c)| {
            let used = c.last.map(|(at, drive)| {
                super::Record::from(CleaningUsed {
                    library: library.clone(),
                    barcode: barcode.clone(),
                    drive,
                    at,
                    uses: c.uses,
                })
            });
            let retired = c.retired.as_ref().map(|(at, why)| {
                super::Record::from(CleaningRetired {
                    library: library.clone(),
                    barcode: barcode.clone(),
                    at: *at,
                    why: why.clone(),
                })
            });
            used.into_iter().chain(retired)
        });
        let drives = self.drive_errors.iter().map(|((library, drive), &hard_errors)| {
            super::Record::from(DriveErrors { library: library.clone(), drive: *drive, hard_errors })
        });
        cleaning.chain(drives)
    }
}
