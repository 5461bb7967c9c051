//! Vaulting rules: which cartridges an export sends out through the mail slots, where each
//! goes, and what a cartridge put into a mail slot is when it comes back. Pure; the robot moves
//! and label reads are in `library::vault`.

use crate::catalog::{Catalog, MediumKind, MediumState};
use crate::format::records::VolumeLabel;
use crate::library::inventory::Inventory;
use crate::scsi::cdb::ElementType;

/// The cartridges of `pool` an export sends to the vault: tape media the catalog knows in that
/// pool, not offsite already, only full ones when `full_only`; in barcode order.
pub fn candidates(c: &Catalog, pool: &str, full_only: bool) -> Vec<String> {
    let mut v: Vec<String> = c
        .media()
        .filter(|m| m.info().pool == pool && m.info().kind == MediumKind::Tape && m.offsite().is_none())
        .filter(|m| !full_only || m.state() == MediumState::Full)
        .map(|m| m.barcode().to_owned())
        .collect();
    v.sort();
    v
}

/// What an export does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan {
    /// Robot moves: barcode, from (its element), to (a free mail slot).
    pub moves: Vec<(String, u16, u16)>,
    /// Cartridges that wait for the mail slots to be emptied.
    pub waiting: Vec<String>,
    /// Cartridges asked for that the library does not hold (already out, or lost).
    pub absent: Vec<String>,
}

/// Plans the export of `wanted` (barcodes, in order) from the library as `inv` shows it: each
/// one in a storage slot goes to a free mail slot, as many as there are; one in a mail slot
/// already counts as sent. Refused, with nothing moved, when one of them is in a drive or
/// `busy` (a job holds it): a person must not find half of a batch gone.
pub fn plan_export(
    inv: &Inventory,
    wanted: &[String],
    busy: &dyn Fn(&str) -> bool,
) -> Result<ExportPlan, String> {
    let drives = inv.drives();
    let mut free_mail = inv.of(ElementType::ImportExport).filter(|e| !e.full).map(|e| e.address);
    let mut plan = ExportPlan { moves: Vec::new(), waiting: Vec::new(), absent: Vec::new() };
    for b in wanted {
        let Some(e) = inv.find(b) else {
            plan.absent.push(b.clone());
            continue;
        };
        if let Some(d) = drives.iter().position(|&a| a == e.address) {
            return Err(format!(
                "cartridge {b} is in drive {d}: unload it (`coffer media unload --drive {d}`) or \
                 let its job finish, then export again; nothing was moved"
            ));
        }
        if busy(b) {
            return Err(format!(
                "cartridge {b} is held by a running job: export it once the job ends; nothing was moved"
            ));
        }
        match e.kind {
            ElementType::ImportExport => {}
            _ => match free_mail.next() {
                Some(to) => plan.moves.push((b.clone(), e.address, to)),
                None => plan.waiting.push(b.clone()),
            },
        }
    }
    Ok(plan)
}

/// What a cartridge put into a mail slot is, once its label has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// One of this box's cartridges, back from the vault (or never away): into its pool.
    Ours {
        /// Its pool.
        pool: String,
        /// It was offsite (the catalog is told it is back).
        was_offsite: bool,
        /// Its UUID.
        medium: [u8; 16],
    },
    /// Blank: it joins the cartridges any pool may draw from.
    Blank,
    /// A cleaning cartridge: it goes to a slot.
    Cleaning,
    /// Not taken in, and why (said to the person, who takes it back out).
    Refused(String),
}

/// What the start of a cartridge holds, as read through a drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing.
    Blank,
    /// A coffer volume label.
    Label(VolumeLabel),
    /// Data coffer did not write, and what it is.
    Foreign(String),
}

/// Judges a cartridge `barcode` found in a mail slot holding `found` against the catalog.
pub fn judge_arrival(c: &Catalog, barcode: &str, found: &Found) -> Arrival {
    match found {
        Found::Blank => Arrival::Blank,
        Found::Foreign(what) => Arrival::Refused(format!(
            "cartridge {barcode} holds data coffer did not write ({what}): not taken in; take it \
             out of the mail slot"
        )),
        Found::Label(l) => match c.medium(l.medium) {
            Some(m) if m.barcode() == barcode && l.barcode == barcode => Arrival::Ours {
                pool: m.info().pool.clone(),
                was_offsite: m.offsite().is_some(),
                medium: m.id(),
            },
            Some(m) => Arrival::Refused(format!(
                "cartridge {barcode} carries the label of medium {} (barcode {}) that this box knows \
                 as barcode {}: a wrong barcode sticker? not taken in",
                uuid::Uuid::from_bytes(l.medium),
                l.barcode,
                m.barcode()
            )),
            None => Arrival::Refused(format!(
                "cartridge {barcode} is labelled by another box or an earlier catalog (host {}, pool \
                 {}, labelled {}, medium {}): its sessions are not in this catalog, so it is not \
                 taken in; take it out, or read its sessions in with `coffer scan`",
                l.host,
                l.pool,
                crate::jobs::calendar::format(l.created),
                uuid::Uuid::from_bytes(l.medium)
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{MediumAdded, MediumUpdated, MediumVaulted, Record};
    use crate::library::inventory::tests::el;

    fn inv(mail: &[Option<&str>]) -> Inventory {
        let mut elements = vec![
            el(ElementType::Transport, 0, None),
            el(ElementType::DataTransfer, 0x100, Some("W3")),
            el(ElementType::Storage, 0x1000, Some("W1")),
            el(ElementType::Storage, 0x1001, Some("W2")),
            el(ElementType::Storage, 0x1002, Some("W4")),
        ];
        elements.extend(
            mail.iter().enumerate().map(|(i, t)| el(ElementType::ImportExport, 0x2000 + i as u16, *t)),
        );
        Inventory { elements }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::new();
        for (i, (b, pool)) in
            [("W1", "weekly"), ("W2", "weekly"), ("W3", "weekly"), ("D1", "daily")].iter().enumerate()
        {
            let medium = [i as u8 + 1; 16];
            c.apply(&Record::MediumAdded(MediumAdded {
                medium,
                barcode: (*b).into(),
                pool: (*pool).into(),
                kind: MediumKind::Tape,
                block_size: 1 << 18,
                capacity: 1 << 30,
                created: 1,
                location: "library:vlib".into(),
            }))
            .unwrap();
        }
        c.apply(&Record::MediumUpdated(MediumUpdated { medium: [2; 16], used: 9, state: MediumState::Full }))
            .unwrap();
        c
    }

    #[test]
    fn an_export_takes_the_pool_s_cartridges_that_are_in_and_not_offsite() {
        let mut c = catalog();
        assert_eq!(candidates(&c, "weekly", false), ["W1", "W2", "W3"]);
        assert_eq!(candidates(&c, "weekly", true), ["W2"]);
        c.apply(&Record::MediumVaulted(MediumVaulted { medium: [1; 16], offsite: true, at: 5 })).unwrap();
        assert_eq!(candidates(&c, "weekly", false), ["W2", "W3"]);
        assert_eq!(candidates(&c, "none", false), Vec::<String>::new());
    }

    #[test]
    fn an_export_fills_the_free_mail_slots_and_the_rest_wait() {
        let none = |_: &str| false;
        let wanted: Vec<String> = ["W1", "W2", "W4", "X9"].iter().map(|s| s.to_string()).collect();
        let p = plan_export(&inv(&[None, Some("Q1"), None]), &wanted, &none).unwrap();
        assert_eq!(p.moves, [("W1".to_string(), 0x1000, 0x2000), ("W2".to_string(), 0x1001, 0x2002)]);
        assert_eq!(p.waiting, ["W4"]);
        assert_eq!(p.absent, ["X9"]);
        // One already in a mail slot counts as sent.
        let mut i = inv(&[Some("W1")]);
        i.elements.retain(|e| e.address != 0x1000);
        let p = plan_export(&i, &wanted[..1], &none).unwrap();
        assert!(p.moves.is_empty() && p.waiting.is_empty() && p.absent.is_empty());
    }

    #[test]
    fn an_export_of_a_cartridge_in_a_drive_or_in_use_moves_nothing() {
        let wanted: Vec<String> = ["W1", "W3"].iter().map(|s| s.to_string()).collect();
        let e = plan_export(&inv(&[None, None]), &wanted, &|_| false).unwrap_err();
        assert!(e.contains("W3 is in drive 0") && e.contains("nothing was moved"), "{e}");
        let e = plan_export(&inv(&[None]), &wanted[..1], &|b| b == "W1").unwrap_err();
        assert!(e.contains("W1 is held by a running job"), "{e}");
    }

    fn label(medium: [u8; 16], barcode: &str) -> Found {
        Found::Label(VolumeLabel {
            format_version: crate::format::FORMAT_VERSION,
            medium,
            barcode: barcode.into(),
            pool: "weekly".into(),
            block_size: 1 << 18,
            created: 86_400,
            host: "other-box".into(),
        })
    }

    #[test]
    fn an_arrival_is_ours_blank_or_refused_saying_what_it_is() {
        let mut c = catalog();
        c.apply(&Record::MediumVaulted(MediumVaulted { medium: [1; 16], offsite: true, at: 5 })).unwrap();
        assert_eq!(
            judge_arrival(&c, "W1", &label([1; 16], "W1")),
            Arrival::Ours { pool: "weekly".into(), was_offsite: true, medium: [1; 16] }
        );
        assert!(matches!(
            judge_arrival(&c, "W2", &label([2; 16], "W2")),
            Arrival::Ours { was_offsite: false, .. }
        ));
        assert_eq!(judge_arrival(&c, "N1", &Found::Blank), Arrival::Blank);
        let Arrival::Refused(why) = judge_arrival(&c, "Z1", &label([9; 16], "Z1")) else { panic!() };
        assert!(why.contains("Z1") && why.contains("host other-box") && why.contains("pool weekly"), "{why}");
        let Arrival::Refused(why) = judge_arrival(&c, "W9", &label([1; 16], "W1")) else { panic!() };
        assert!(why.contains("knows as barcode W1"), "{why}");
        let Arrival::Refused(why) = judge_arrival(&c, "F1", &Found::Foreign("a filemark".into())) else {
            panic!()
        };
        assert!(why.contains("F1 holds data coffer did not write"), "{why}");
    }
}
