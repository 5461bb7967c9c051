//! The drives and cartridges the status shows: from the libraries this service opened (their
//! drives and last inventory) and what the catalog knows of each cartridge (pool, state, how
//! full). A library busy with a robot move keeps its previous lines: the control plane never
//! waits on a library.

use crate::catalog::Catalog;
use crate::library::inventory::{CLEANING_PREFIX, Place};
use crate::library::ops::DriveState;

use super::status::{CartridgeLine, DriveLine};

/// What the catalog knows of one cartridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Its pool.
    pub pool: String,
    /// `writable`, `full`, `readonly`, `retired`, `error`.
    pub state: String,
    /// Bytes written.
    pub used: u64,
    /// Capacity when labelled (a SCSI drive's is not known: 0 or a huge placeholder).
    pub capacity: u64,
}

/// The lines of one library from its drives, places and unusable cartridges.
pub fn library_lines(
    library: &str,
    drives: &[DriveState],
    repositions: Option<&[u64]>,
    places: &[Place],
    unusable: &[(String, String)],
    known: impl Fn(&str) -> Option<Known>,
) -> (Vec<DriveLine>, Vec<CartridgeLine>) {
    let drive_lines = drives
        .iter()
        .map(|d| DriveLine {
            library: library.into(),
            drive: d.drive as u32,
            online: d.offline.is_none(),
            loaded: d.barcode.clone(),
            busy: d.busy,
            repositions: repositions.and_then(|r| r.get(d.drive)).copied().unwrap_or(0),
        })
        .collect();
    let carts = places
        .iter()
        .filter_map(|p| {
            let barcode = p.barcode.clone()?;
            let k = known(&barcode);
            let state = if unusable.iter().any(|(b, _)| *b == barcode) {
                "unusable".to_owned()
            } else if barcode.starts_with(CLEANING_PREFIX) {
                "cleaning".to_owned()
            } else {
                k.as_ref().map_or("blank".to_owned(), |k| k.state.clone())
            };
            // A capacity of 2^50 or more is a placeholder for "the drive says when it is full".
            let used_percent = k
                .as_ref()
                .filter(|k| k.capacity > 0 && k.capacity < 1 << 50)
                .map(|k| (k.used.saturating_mul(100) / k.capacity).min(100) as u8);
            Some(CartridgeLine {
                library: library.into(),
                barcode,
                place: p.element.clone(),
                pool: k.map(|k| k.pool),
                state,
                used_percent,
            })
        })
        .collect();
    (drive_lines, carts)
}

/// What `catalog` knows of `barcode` at `location` (`library:NAME`).
pub fn known(catalog: &Catalog, location: &str, barcode: &str) -> Option<Known> {
    let m = catalog.medium_by_barcode(barcode).filter(|m| m.info().location == location)?;
    Some(Known {
        pool: m.info().pool.clone(),
        state: format!("{:?}", m.state()).to_lowercase(),
        used: m.used(),
        capacity: m.info().capacity,
    })
}

/// Every open library's lines; a busy library keeps the lines it had in `before`.
pub fn lines(
    catalog: Option<&Catalog>,
    before: (&[DriveLine], &[CartridgeLine]),
) -> (Vec<DriveLine>, Vec<CartridgeLine>) {
    let activity = crate::library::activity();
    let mut drives = Vec::new();
    let mut carts = Vec::new();
    for lib in crate::library::opened() {
        let name = lib.name().to_owned();
        let Some((ds, inv)) = lib.try_view() else {
            drives.extend(before.0.iter().filter(|d| d.library == name).cloned());
            carts.extend(before.1.iter().filter(|c| c.library == name).cloned());
            continue;
        };
        let reps = activity.iter().find(|a| a.library == name).and_then(|a| a.repositions.clone());
        let location = lib.location();
        let (d, c) = library_lines(&name, &ds, reps.as_deref(), &inv.places(), &lib.unusable(), |b| {
            catalog.and_then(|c| known(c, &location, b))
        });
        drives.extend(d);
        carts.extend(c);
    }
    (drives, carts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(element: &str, barcode: Option<&str>) -> Place {
        Place {
            element: element.into(),
            address: 0,
            barcode: barcode.map(Into::into),
            full: barcode.is_some(),
        }
    }

    #[test]
    fn cartridges_get_their_catalog_state_and_fill() {
        let drives = [
            DriveState { drive: 0, offline: None, barcode: Some("CFR001L6".into()), busy: true },
            DriveState { drive: 1, offline: Some("cleaning required".into()), barcode: None, busy: false },
        ];
        let places = [
            place("drive 0", Some("CFR001L6")),
            place("drive 1", None),
            place("slot 1", Some("CFR002L6")),
            place("slot 2", Some("CLN001L1")),
            place("slot 3", Some("CFR003L6")),
            place("mail slot 1", Some("CFR004L6")),
        ];
        let unusable = [("CFR003L6".to_owned(), "write protected".to_owned())];
        let known = |b: &str| match b {
            "CFR001L6" => {
                Some(Known { pool: "default".into(), state: "writable".into(), used: 630, capacity: 1000 })
            }
            "CFR002L6" => {
                Some(Known { pool: "default".into(), state: "full".into(), used: 5, capacity: 1 << 62 })
            }
            _ => None,
        };
        let (d, c) = library_lines("vlib", &drives, Some(&[7, 0]), &places, &unusable, known);
        assert_eq!(d.len(), 2);
        assert!(d[0].online && d[0].busy && d[0].repositions == 7);
        assert_eq!(d[0].loaded.as_deref(), Some("CFR001L6"));
        assert!(!d[1].online);
        let by = |b: &str| c.iter().find(|x| x.barcode == b).unwrap().clone();
        assert_eq!(c.len(), 5, "empty places are not cartridges");
        assert_eq!((by("CFR001L6").state.as_str(), by("CFR001L6").used_percent), ("writable", Some(63)));
        assert_eq!(by("CFR001L6").place, "drive 0");
        assert_eq!((by("CFR002L6").state.as_str(), by("CFR002L6").used_percent), ("full", None));
        assert_eq!(by("CLN001L1").state, "cleaning");
        assert_eq!(by("CFR003L6").state, "unusable");
        assert_eq!((by("CFR004L6").state.as_str(), by("CFR004L6").pool.clone()), ("blank", None));
    }
}
