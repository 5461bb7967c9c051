//! Tending a drive: reading its TapeAlert flags after an unload and after each job, cleaning
//! it with a cleaning cartridge when it asks, and taking it offline when cleaning does not
//! help or it reports hard errors check after check. The decisions are in [`super::health`];
//! this is the I/O around them. What happened is queued as [`HealthEvent`]s (at most
//! [`MAX_HEALTH_EVENTS`]) for the journal: the library does not write the catalog itself.
//!
//! Fault model: a cleaning cycle that does not end within [`CLEANING_WAIT`] takes the drive
//! offline; a robot move that fails leaves the drive as it is and is reported; a drive whose
//! flags cannot be read is left alone (the tape path reports its errors).

use std::time::{Duration, Instant};

use super::health::{self, CleaningKnown, HealthEvent, Verdict};
use super::{Lease, Library};
use crate::board::HealthLimits;
use crate::scsi::pages::TapeAlert;

/// Events kept for the journal; beyond it the oldest are dropped (with a warning).
pub const MAX_HEALTH_EVENTS: usize = 1024;
/// Longest a cleaning cycle may take before the drive is given up on.
pub const CLEANING_WAIT: Duration = Duration::from_secs(30 * 60);
/// Pauses between polls of a cleaning drive: at once first (the virtual library answers when
/// its cycle ends), then longer, the last repeated.
const CLEANING_POLLS: [Duration; 4] =
    [Duration::ZERO, Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(5)];

/// What a library keeps for tending its drives.
#[derive(Debug, Default)]
pub(super) struct Tending {
    pub limits: HealthLimits,
    /// Cleaning cartridges by barcode.
    pub cleaning: std::collections::HashMap<String, CleaningKnown>,
    /// Checks in a row with hard errors, per drive.
    pub hard_errors: Vec<u32>,
    /// Flags read by the tape path since the last check, per drive (a real drive clears
    /// them when read).
    pub pending: Vec<TapeAlert>,
    pub events: std::collections::VecDeque<HealthEvent>,
}

impl Tending {
    pub fn push(&mut self, e: HealthEvent) {
        if self.events.len() == MAX_HEALTH_EVENTS {
            let lost = self.events.pop_front();
            tracing::warn!(target: "library", "health event dropped unjournaled: {lost:?}");
        }
        self.events.push_back(e);
    }
}

impl Library {
    /// Remembers flags the tape path read from drive `drive`, for the next check.
    pub fn note_alerts(&self, drive: usize, alerts: TapeAlert) {
        let mut g = self.lock();
        if let Some(p) = g.tending.pending.get_mut(drive) {
            *p = p.union(alerts);
        }
    }

    /// Counts a MEDIUM ERROR on `barcode` (writing, else reading).
    pub fn note_medium_error(&self, barcode: &str, write: bool) {
        self.lock().tending.push(HealthEvent::MediumError { barcode: barcode.to_owned(), write });
    }

    /// Tells the library what the catalog knows: its limits, its cleaning cartridges, the
    /// hard errors in a row of each drive.
    pub fn learn_health(
        &self,
        limits: HealthLimits,
        cleaning: impl IntoIterator<Item = (String, CleaningKnown)>,
        hard_errors: impl Fn(usize) -> u32,
    ) {
        let mut g = self.lock();
        let n = g.bays.len();
        let t = &mut g.tending;
        t.limits = limits;
        t.cleaning = cleaning.into_iter().collect();
        t.hard_errors = (0..n).map(hard_errors).collect();
        t.pending.resize(n, TapeAlert::default());
    }

    /// What happened since the last call, oldest first.
    pub fn take_health_events(&self) -> Vec<HealthEvent> {
        self.lock().tending.events.drain(..).collect()
    }

    /// Reads the leased drive's flags and acts on them: cleans it, or takes it offline.
    /// Failures are reported, never returned: tending must not fail the job that unloads.
    pub fn tend(&self, lease: &mut Lease) {
        let drive = lease.drive();
        let read = lease.io().tape_alerts();
        let alerts = match read {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(target: "library", "{} drive {drive}: TapeAlert: {e}", self.name);
                return;
            }
        };
        let mut g = self.lock();
        let pending = g.tending.pending.get_mut(drive).map(std::mem::take).unwrap_or_default();
        let before = g.tending.hard_errors.get(drive).copied().unwrap_or(0);
        let limits = g.tending.limits;
        let (verdict, hard) = health::judge(alerts.union(pending), before, &limits);
        if hard != before {
            if let Some(h) = g.tending.hard_errors.get_mut(drive) {
                *h = hard;
            }
            g.tending.push(HealthEvent::DriveErrors { drive, hard_errors: hard });
        }
        drop(g);
        match verdict {
            Verdict::Healthy => {}
            Verdict::Offline(why) => self.take_offline(drive, why),
            Verdict::Clean => self.clean(lease, &limits),
        }
    }

    fn take_offline(&self, drive: usize, why: String) {
        if let Err(e) = self.set_offline(drive, Some(why.clone())) {
            tracing::warn!(target: "library", "{}: {e}", self.name);
        }
        self.lock().tending.push(HealthEvent::DriveOffline { drive, why });
    }

    /// Cleans the leased (empty) drive with the best cleaning cartridge, trying the next one
    /// when the drive reports one expired.
    fn clean(&self, lease: &mut Lease, limits: &HealthLimits) {
        let drive = lease.drive();
        // Each cartridge at most once, and once more to find that none is left.
        let tries = self.inventory().cleaning_cartridges().len() + 1;
        for _ in 0..tries {
            let present = self.inventory().cleaning_cartridges();
            let pick = health::pick_cleaning(&present, &self.lock().tending.cleaning, limits);
            let Some(barcode) = pick else {
                tracing::warn!(target: "library", "{} drive {drive} asks for cleaning and no usable cleaning cartridge is in the library", self.name);
                self.lock().tending.push(HealthEvent::NoCleaningCartridge { drive });
                return;
            };
            let alerts = match self.cycle(lease, &barcode) {
                Ok(a) => a,
                Err(why) => {
                    tracing::warn!(target: "library", "{} drive {drive}: cleaning with {barcode}: {why}", self.name);
                    self.take_offline(drive, format!("cleaning with {barcode} failed: {why}"));
                    return;
                }
            };
            let mut g = self.lock();
            let known = g.tending.cleaning.entry(barcode.clone()).or_default();
            if let Some(why) = health::retire_expired(alerts) {
                known.retired = true;
                g.tending.push(HealthEvent::CleaningRetired { barcode, why });
                continue;
            }
            known.uses += 1;
            let uses = known.uses;
            g.tending.push(HealthEvent::Cleaned { drive, barcode: barcode.clone(), uses });
            if let Some(why) = health::retire_after_use(uses, limits) {
                g.tending.cleaning.entry(barcode.clone()).or_default().retired = true;
                g.tending.push(HealthEvent::CleaningRetired { barcode, why });
            }
            drop(g);
            tracing::info!(target: "library", "{} drive {drive} cleaned", self.name);
            match lease.io().tape_alerts() {
                Ok(after) => {
                    if let Some(why) = health::after_cleaning(after) {
                        self.take_offline(drive, why);
                    }
                }
                Err(e) => tracing::debug!(target: "library", "{} drive {drive}: TapeAlert: {e}", self.name),
            }
            return;
        }
    }

    /// One cleaning cycle: `barcode` into the leased drive, wait until the drive is done, the
    /// cartridge back to its slot. Returns the flags read before it left the drive.
    fn cycle(&self, lease: &mut Lease, barcode: &str) -> Result<TapeAlert, String> {
        let mut g = self.lock();
        let from = g.inventory.find(barcode).ok_or("it is no longer in the library")?.address;
        let to = g.bays[lease.drive()].address;
        self.robot_move(&mut g, from, to).map_err(|e| e.to_string())?;
        drop(g);
        let deadline = Instant::now() + CLEANING_WAIT;
        let mut polls = CLEANING_POLLS.iter().chain(std::iter::repeat(&CLEANING_POLLS[3]));
        let done = loop {
            match lease.io().cleaning_done() {
                Ok(true) => break Ok(()),
                Ok(false) if Instant::now() < deadline => {
                    std::thread::sleep(*polls.next().expect("endless"));
                }
                Ok(false) => break Err(format!("the cycle did not end in {} s", CLEANING_WAIT.as_secs())),
                Err(e) => break Err(e.to_string()),
            }
        };
        let alerts = lease.io().tape_alerts().unwrap_or_default();
        if let Err(e) = lease.io().unload() {
            // The drive ejects a cleaning cartridge by itself; the robot can take it.
            tracing::debug!(target: "library", "unload of {barcode}: {e}");
        }
        let mut g = self.lock();
        let from = g.bays[lease.drive()].address;
        let home = g.inventory.home_for(from).ok_or("no empty slot to put it back")?;
        self.robot_move(&mut g, from, home).map_err(|e| e.to_string())?;
        done.map(|()| alerts)
    }
}
