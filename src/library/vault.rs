//! Vaulting through the mail slots: an export moves cartridges from their slots to the free
//! mail slots for a person to take to the vault, as many as fit, and asks for the next batch;
//! an import reads the label of each cartridge a person put into a mail slot and takes in
//! those that are this box's (or blank), leaving any other in its mail slot with what it is.
//! The rules are in [`crate::lifecycle::vault`]; this is the robot and the drive.

use std::sync::Arc;

use super::Library;
use super::ops::OpError;
use crate::catalog::Catalog;
use crate::device::tape::{OnTape, read_label};
use crate::lifecycle::vault::{Arrival, Found, judge_arrival, plan_export};
use crate::scsi::cdb::ElementType;

/// What an export did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Exported {
    /// Cartridges now in a mail slot: barcode, mail slot.
    pub sent: Vec<(String, String)>,
    /// Cartridges that wait for the mail slots to be emptied.
    pub waiting: Vec<String>,
    /// Cartridges asked for that the library does not hold.
    pub absent: Vec<String>,
    /// Why the export stopped early, if it did (the cartridges in `sent` did move).
    pub stopped: Option<String>,
}

/// Sends `wanted` (barcodes, in order) to the mail slots. `again` is the command a person
/// runs for the next batch, shown while cartridges wait. Refused with nothing moved when one
/// of them is in a drive or held by a job.
pub fn export(lib: &Arc<Library>, wanted: &[String], again: &str) -> Result<Exported, OpError> {
    let inv = lib.refresh()?;
    let plan = plan_export(&inv, wanted, &|b| lib.is_claimed(b)).map_err(OpError::Refused)?;
    let mut done = Exported { waiting: plan.waiting, absent: plan.absent, ..Exported::default() };
    let places = inv.places();
    let place = |a: u16| {
        places.iter().find(|p| p.address == a).map_or_else(|| format!("{a:#x}"), |p| p.element.clone())
    };
    for (barcode, from, to) in plan.moves {
        if let Err(e) = lib.move_between(from, to) {
            done.stopped = Some(format!("moving {barcode} to {} failed: {e}", place(to)));
            break;
        }
        done.sent.push((barcode, place(to)));
    }
    let key = format!("export {again}");
    let ask = (!done.waiting.is_empty()).then(|| {
        format!(
            "EXPORT: {} cartridge(s) wait for the mail slots of library {} ({}): take out the \
             cartridges there, then run `{again}` again",
            done.waiting.len(),
            lib.name(),
            done.waiting.join(" ")
        )
    });
    lib.ask(&key, ask);
    Ok(done)
}

/// One cartridge found in a mail slot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Arrived {
    /// Its barcode (empty when it has none).
    pub barcode: String,
    /// Where it is now: a storage slot when taken in, its mail slot when not.
    pub place: String,
    /// Taken in.
    pub taken: bool,
    /// What it is, for people.
    pub what: String,
    /// When taken in and known: its UUID and whether it was offsite.
    #[serde(skip)]
    pub back: Option<([u8; 16], bool)>,
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Imported {
    /// Each cartridge found in a mail slot, in mail slot order, up to where it stopped.
    pub arrived: Vec<Arrived>,
    /// Why the import stopped early, if it did (what `arrived` says did happen: the catalog is
    /// told of those).
    pub stopped: Option<String>,
}

/// Takes in the cartridges in the mail slots: each is loaded, its label read and judged
/// against `catalog`, and put in a free storage slot, or back into its mail slot when it is not
/// taken in. A failure (no free slot, a drive or robot error) stops it with what it did so far.
pub fn import(lib: &Arc<Library>, catalog: &Catalog) -> Result<Imported, OpError> {
    let mut out = Vec::new();
    let stopped = take_in(lib, catalog, &mut out).err().map(|e| e.to_string());
    Ok(Imported { arrived: out, stopped })
}

fn take_in(lib: &Arc<Library>, catalog: &Catalog, out: &mut Vec<Arrived>) -> Result<(), OpError> {
    let inv = lib.refresh()?;
    let mail: Vec<(u16, Option<String>)> = inv
        .of(ElementType::ImportExport)
        .filter(|e| e.full)
        .map(|e| (e.address, e.volume_tag.clone()))
        .collect();
    let mail_name =
        |a: u16| inv.places().into_iter().find(|p| p.address == a).map(|p| p.element).unwrap_or_default();
    let mut lease = None;
    for (at, tag) in mail {
        let Some(barcode) = tag else {
            out.push(Arrived {
                barcode: String::new(),
                place: mail_name(at),
                taken: false,
                what: "it has no barcode label: coffer tracks cartridges by barcode; stick one on".into(),
                back: None,
            });
            continue;
        };
        let free_slot = lib.inventory().of(ElementType::Storage).find(|e| !e.full).map(|e| e.address);
        let Some(slot) = free_slot else {
            return Err(OpError::Refused(format!(
                "no empty slot for {barcode} in library {}: export or take out cartridges first \
                 (taken in so far: {})",
                lib.name(),
                out.iter()
                    .filter(|a: &&Arrived| a.taken)
                    .map(|a| a.barcode.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        };
        let arrival = if barcode.starts_with(super::inventory::CLEANING_PREFIX) {
            lib.move_between(at, slot)?;
            Arrival::Cleaning
        } else {
            let lease = match &mut lease {
                Some(l) => l,
                None => lease.insert(lib.lease(None)?),
            };
            lib.load(lease, &barcode)?;
            let what = format!("{} {barcode}", lib.location());
            let found = match read_label(lease.io(), &what) {
                Ok(OnTape::Blank) => Found::Blank,
                Ok(OnTape::Label(l)) => Found::Label(l),
                Ok(OnTape::Foreign(why)) => Found::Foreign(why),
                Err(e) => Found::Foreign(format!("its label could not be read: {e}")),
            };
            lib.unload(lease)?;
            judge_arrival(catalog, &barcode, &found)
        };
        let now = lib.inventory().find(&barcode).map_or(slot, |e| e.address);
        let (taken, what, back) = match arrival {
            Arrival::Ours { pool, was_offsite, medium } => {
                lib.note_pool(&barcode, &pool);
                let from = if was_offsite { "back from the vault" } else { "it was not offsite" };
                (true, format!("pool {pool}, {from}"), Some((medium, was_offsite)))
            }
            Arrival::Blank => (true, "blank: any pool may write it".into(), None),
            Arrival::Cleaning => (true, "a cleaning cartridge".into(), None),
            Arrival::Refused(why) => {
                lib.move_between(now, at)?;
                (false, why, None)
            }
        };
        let place = if taken { place_of(lib, &barcode) } else { mail_name(at) };
        out.push(Arrived { barcode, place, taken, what, back });
    }
    Ok(())
}

/// Where `barcode` is now, as people name places.
fn place_of(lib: &Library, barcode: &str) -> String {
    let inv = lib.inventory();
    let at = inv.find(barcode).map(|e| e.address);
    inv.places().into_iter().find(|p| Some(p.address) == at).map_or_else(|| "?".into(), |p| p.element)
}
