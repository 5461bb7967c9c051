//! A person's hands on a tape library — inventory, load, unload, label, move, eject, drives
//! online/offline — as one operation type that the command line (`coffer media …`) and the
//! running service (its console and control socket) both carry out.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Library;
use super::inventory::Place;
use crate::device::DeviceError;
use crate::device::tape::{DEFAULT_TAPE_BLOCK, label_blank};

/// What to do with a library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case", deny_unknown_fields)]
pub enum MediaOp {
    /// Read the element status again.
    Inventory,
    /// Put a cartridge into a drive (a free one unless named).
    Load {
        /// The cartridge's barcode.
        barcode: String,
        /// The drive.
        #[serde(default)]
        drive: Option<usize>,
    },
    /// Take a drive's cartridge back to its slot.
    Unload {
        /// The drive.
        drive: usize,
    },
    /// Label a blank cartridge for a pool.
    Label {
        /// The cartridge's barcode.
        barcode: String,
        /// Media pool.
        pool: String,
    },
    /// Move a cartridge from a barcode or place to a place (`slot 3`, `mail 1`, `drive 0`).
    Move {
        /// Barcode or place.
        from: String,
        /// Place.
        to: String,
    },
    /// Move a cartridge to the first empty mail slot, for a person to take out.
    Eject {
        /// The cartridge's barcode.
        barcode: String,
    },
    /// Take a drive out of use, or put it back.
    Drive {
        /// The drive.
        drive: usize,
        /// Online (true) or offline.
        online: bool,
    },
    /// A person takes the cartridges out of the virtual library's mail slots (one slot, or
    /// every full one).
    TakeOut {
        /// The mail slot, from 1.
        #[serde(default)]
        mail: Option<usize>,
    },
    /// A person puts a cartridge into the virtual library's first empty mail slot.
    PutIn {
        /// The cartridge's barcode.
        barcode: String,
    },
}

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The library or a drive failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The request names something the library does not have, or cannot be done as asked.
    #[error("{0}")]
    Refused(String),
}

/// The library as a person sees it after an operation.
#[derive(Debug, Clone, Serialize)]
pub struct MediaReport {
    /// The library's name.
    pub library: String,
    /// What the operation did, for people (empty for an inventory).
    pub done: String,
    /// Every place: drives, slots, mail slots, with their cartridges.
    pub places: Vec<Place>,
    /// Drives: number, why offline (if it is), loaded barcode.
    pub drives: Vec<DriveState>,
    /// Cartridges coffer does not write, each with why.
    pub unusable: Vec<(String, String)>,
}

/// One drive.
#[derive(Debug, Clone, Serialize)]
pub struct DriveState {
    /// Its number.
    pub drive: usize,
    /// Why it is offline, when it is.
    pub offline: Option<String>,
    /// The cartridge in it.
    pub barcode: Option<String>,
    /// Someone reads or writes through it now.
    pub busy: bool,
}

/// Carries out `op` on `lib` and reports the library after it.
pub fn apply(lib: &Arc<Library>, op: &MediaOp) -> Result<MediaReport, OpError> {
    let done = match op {
        MediaOp::Inventory => {
            lib.refresh()?;
            String::new()
        }
        MediaOp::Load { barcode, drive } => {
            let mut lease = match drive {
                Some(d) => lib.lease_drive(*d)?,
                None => lib.lease(Some(barcode))?,
            };
            lib.load(&mut lease, barcode)?;
            format!("{barcode} loaded into drive {}", lease.drive())
        }
        MediaOp::Unload { drive } => {
            let mut lease = lib.lease_drive(*drive)?;
            match lib.loaded(&lease) {
                Some(b) => {
                    lib.unload(&mut lease)?;
                    format!("{b} unloaded from drive {drive}")
                }
                None => format!("drive {drive} is empty"),
            }
        }
        MediaOp::Label { barcode, pool } => {
            let mut lease = lib.lease(Some(barcode))?;
            let label = label_blank(&mut lease, barcode, pool, DEFAULT_TAPE_BLOCK)?;
            lib.unload(&mut lease)?;
            format!("{} labelled for pool {}", label.barcode, label.pool)
        }
        MediaOp::Move { from, to } => {
            let inv = lib.refresh()?;
            let src =
                inv.find(from).map(|e| e.address).or_else(|| inv.address_of(from)).ok_or_else(|| {
                    OpError::Refused(format!("no cartridge or place '{from}' (see the inventory)"))
                })?;
            let dst = inv.address_of(to).ok_or_else(|| {
                OpError::Refused(format!("no place '{to}': say `slot N`, `mail N` or `drive N`"))
            })?;
            if inv.at(dst).is_some_and(|e| e.full) {
                return Err(OpError::Refused(format!("{to} is not empty")));
            }
            lib.move_between(src, dst)?;
            format!("moved {from} to {to}")
        }
        MediaOp::Eject { barcode } => {
            let inv = lib.refresh()?;
            let src = inv.find(barcode).map(|e| e.address).ok_or_else(|| {
                OpError::Refused(format!(
                    "no cartridge {barcode} in library {} (see the inventory)",
                    lib.name()
                ))
            })?;
            let places = inv.places();
            let free = places.iter().find(|p| p.element.starts_with("mail") && !p.full).ok_or_else(|| {
                OpError::Refused(
                    "every mail slot is full: take the cartridges out of the mail slots first".into(),
                )
            })?;
            if places.iter().any(|p| p.address == src && p.element.starts_with("drive")) {
                return Err(OpError::Refused(format!("{barcode} is in a drive: unload it first")));
            }
            lib.move_between(src, free.address)?;
            format!("{barcode} is in {}: take it out", free.element)
        }
        MediaOp::TakeOut { mail } => {
            let hands = hands(lib)?;
            // One mail slot as asked (empty: refused, saying so), or every full one.
            let slots: Vec<usize> = match mail {
                Some(m) => vec![*m],
                None => lib
                    .inventory()
                    .of(crate::scsi::cdb::ElementType::ImportExport)
                    .enumerate()
                    .filter(|(_, e)| e.full)
                    .map(|(i, _)| i + 1)
                    .collect(),
            };
            let mut taken = Vec::new();
            for m in slots {
                taken.push(hands.take_out(m).map_err(OpError::Refused)?);
            }
            lib.refresh()?;
            if taken.is_empty() {
                "the mail slots are empty".into()
            } else {
                format!("taken out: {}", taken.join(" "))
            }
        }
        MediaOp::PutIn { barcode } => {
            let mail = hands(lib)?.put_in(barcode).map_err(OpError::Refused)?;
            lib.refresh()?;
            format!("{barcode} is in mail slot {mail}: run `coffer media import` to take it in")
        }
        MediaOp::Drive { drive, online } => {
            let why = (!online).then(|| "taken offline by hand".to_owned());
            lib.set_offline(*drive, why)?;
            format!("drive {drive} {}", if *online { "online" } else { "offline" })
        }
    };
    Ok(report(lib, done))
}

/// The hands of a person at the virtual library's mail slots.
fn hands(lib: &Library) -> Result<crate::sim::Changer, OpError> {
    lib.hands().ok_or_else(|| {
        OpError::Refused(format!(
            "library {} is a real one: take cartridges out of its mail slots and put them in by hand",
            lib.name()
        ))
    })
}

/// The library as it is now.
pub fn report(lib: &Library, done: String) -> MediaReport {
    MediaReport {
        library: lib.name().to_owned(),
        done,
        places: lib.inventory().places(),
        drives: lib.drives(),
        unusable: lib.unusable(),
    }
}
