//! Cleaning in the virtual library.
//!
//! A drive wears as it writes: past the board's `clean_every` bytes since its last cleaning
//! it raises TapeAlert CLEAN PERIODIC (0x15); the `CleaningRequired` fault raises CLEAN NOW
//! (0x14) once per opening of the library. The bytes since the last cleaning are kept in the
//! store, so the wear carries over from one run to the next.
//!
//! A cleaning cartridge moved into a drive starts a cycle of `cleaning_ms` on the library's
//! clock: one use is written to the cartridge's file (a one-byte record per cleaning, so its
//! uses survive restarts) and, until the cycle ends, every command but INQUIRY, REQUEST
//! SENSE and LOG SENSE answers NOT READY 30/03 (cleaning cartridge installed). A TEST UNIT
//! READY during the cycle holds the host until it ends, as the speed model holds writes. At
//! the end the drive's cleaning flags are cleared (unless the `DirtyDrive` fault says the
//! cleaning does not help), its wear starts from zero, and the drive ejects the cartridge:
//! NOT READY 3A/00 until the robot takes it out; UNLOAD is accepted. A cartridge with no
//! use left raises EXPIRED CLEANING MEDIA (0x16) and cleans nothing; the flag goes when the
//! cartridge leaves the drive.

use std::time::Duration;

use super::changer::check;
use super::state::{DriveState, LibraryState, no_medium};
use crate::scsi::cdb::op;
use crate::scsi::pages::tape_alert;
use crate::scsi::sense::{Sense, SenseKey};
use crate::scsi::transport::Completion;

/// One use, as written to a cleaning cartridge's file.
const USE_RECORD: &[u8] = b"C";

/// A cleaning cycle under way, or done, in a drive.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cycle {
    /// When the cycle ends, on the library's clock.
    until: Duration,
    /// The cartridge had no use left: nothing is cleaned.
    expired: bool,
    /// The cycle's end was applied to the drive.
    done: bool,
}

/// NOT READY, CLEANING CARTRIDGE INSTALLED: the drive is cleaning.
fn cleaning_sense() -> Sense {
    Sense::new(SenseKey::NotReady, 0x30, 0x03)
}

impl LibraryState {
    /// A cleaning cartridge went into drive `i` at `now`: counts one use on it and starts the
    /// cycle, or reports it expired. The cartridge's tape is open in the drive.
    pub(super) fn start_cleaning(&mut self, i: usize, now: Duration) -> std::io::Result<()> {
        let (life, time) = (self.cleaning_life, self.cleaning_time);
        let d = &mut self.drives[i];
        let used = d.tape.len() as u64;
        d.threaded = false;
        d.attention = None;
        if used >= u64::from(life) {
            d.alerts = d.alerts.with(tape_alert::EXPIRED_CLEANING_MEDIA);
            d.cleaning = Some(Cycle { until: now, expired: true, done: true });
            return Ok(());
        }
        let end = d.tape.len();
        d.tape.write_records(end, &[USE_RECORD])?;
        d.tape.sync()?;
        d.cleaning = Some(Cycle { until: now + time, expired: false, done: false });
        Ok(())
    }
}

impl DriveState {
    /// Applies the end of the cycle once the clock passed it.
    pub(super) fn cleaning_progress(&mut self, now: Duration) {
        let Some(c) = self.cleaning.as_mut() else { return };
        if c.done || now < c.until {
            return;
        }
        c.done = true;
        if c.expired || self.faults.dirty {
            return;
        }
        self.alerts = self.alerts.without(tape_alert::CLEAN_NOW).without(tape_alert::CLEAN_PERIODIC);
        self.wear = 0;
        // The fault is a drive that got dirty once: cleaned, it stays clean this run.
        self.faults.clean_after = None;
    }

    /// A command while a cleaning cartridge is in the drive (after [`Self::cleaning_progress`]).
    pub(super) fn cleaning_command(&mut self, opcode: u8, now: Duration, residual: usize) -> Completion {
        let c = self.cleaning.expect("a cleaning cartridge is loaded");
        if now < c.until {
            if opcode == op::TEST_UNIT_READY {
                // The drive answers when the cycle ends: the host waits on the library's clock.
                self.hold += c.until - now;
            }
            return check(cleaning_sense(), residual);
        }
        match opcode {
            op::LOAD_UNLOAD => Completion::good(0),
            _ => check(no_medium(), residual),
        }
    }

    /// Counts `n` bytes of wear; past `clean_every` the drive asks for routine cleaning.
    pub(super) fn wear_by(&mut self, n: u64) {
        self.wear += n;
        if self.clean_every.is_some_and(|e| self.wear >= e) {
            self.alerts = self.alerts.with(tape_alert::CLEAN_PERIODIC);
        }
    }

    /// The cartridge left the drive: a cycle's expired flag goes with it.
    pub(super) fn cleaning_ended(&mut self) {
        if self.cleaning.take().is_some() {
            self.alerts = self.alerts.without(tape_alert::EXPIRED_CLEANING_MEDIA);
        }
    }
}
