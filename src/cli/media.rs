//! `coffer media [list]|inventory|load|unload|label|move|eject|drive|export|import`: the
//! cartridges coffer knows with their status, and a person's hands on a tape library of the
//! board (default: its first library). `take-out` and `put-in` are the hands of a person at
//! the virtual library's mail slots.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Subcommand};
use coffer::catalog::{MediumVaulted, Record};
use coffer::library::Library;
use coffer::library::ops::{self, MediaOp, MediaReport};
use coffer::library::vault;
use coffer::lifecycle::report::media;
use coffer::lifecycle::vault::candidates;
use coffer::store::State as _;
use serde_json::json;

use super::{Ctx, human_bytes};
use crate::outln;

/// `coffer media …`.
#[derive(Debug, ClapArgs)]
pub struct MediaArgs {
    /// The library (its name in the board file). Default: the board's first library.
    #[arg(long, global = true, value_name = "NAME")]
    pub library: Option<String>,
    #[command(subcommand)]
    pub what: Option<MediaCommand>,
}

/// What to do with the library.
#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Every cartridge: pool, status, sessions, bytes, first and last write, expiry (the
    /// default).
    List,
    /// Read the library's element status: drives, slots, mail slots, barcodes.
    Inventory,
    /// Put a cartridge into a drive.
    Load {
        /// The cartridge's barcode.
        barcode: String,
        /// The drive (default: a free one).
        #[arg(long)]
        drive: Option<usize>,
    },
    /// Take a drive's cartridge back to its slot.
    Unload {
        /// The drive.
        #[arg(long, default_value_t = 0)]
        drive: usize,
    },
    /// Label a blank cartridge for a pool (a cartridge holding anything is left alone).
    Label {
        /// The cartridge's barcode.
        barcode: String,
        /// Media pool.
        #[arg(long, default_value = coffer::device::spec::DEFAULT_POOL)]
        pool: String,
    },
    /// Move a cartridge: FROM is a barcode or a place (`slot 3`, `mail 1`, `drive 0`), TO a
    /// place.
    Move {
        /// Barcode or place.
        from: String,
        /// Place.
        to: String,
    },
    /// Move a cartridge to a free mail slot, for a person to take out.
    Eject {
        /// The cartridge's barcode.
        barcode: String,
    },
    /// Send cartridges to the vault: into the free mail slots, as many as fit (the rest wait
    /// for the next run), marked offsite.
    Export {
        /// Cartridges by barcode.
        barcodes: Vec<String>,
        /// Every cartridge of this pool in the library.
        #[arg(long, conflicts_with = "barcodes")]
        pool: Option<String>,
        /// Only the pool's full cartridges.
        #[arg(long, requires = "pool")]
        full: bool,
    },
    /// Take in the cartridges in the mail slots: this box's (back from the vault) and blank
    /// ones; any other stays in its mail slot, with what it is.
    Import,
    /// (Virtual library) a person takes the cartridges out of the mail slots.
    TakeOut {
        /// Only this mail slot (from 1).
        #[arg(long)]
        mail: Option<usize>,
    },
    /// (Virtual library) a person puts a cartridge into a free mail slot.
    PutIn {
        /// The cartridge's barcode.
        barcode: String,
    },
    /// Take a drive out of use, or put it back.
    Drive {
        /// The drive.
        drive: usize,
        /// `online` or `offline`.
        #[arg(value_name = "online|offline", value_parser = ["online", "offline"])]
        switch: String,
    },
}

fn library(ctx: &Ctx, name: Option<&str>) -> anyhow::Result<Arc<Library>> {
    let board = ctx.board()?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => board.libraries.first().map(|l| l.name().clone()).context("the board has no tape library")?,
    };
    Ok(coffer::library::open(&name)?)
}

/// Runs `coffer media …`.
pub fn run(ctx: &Ctx, a: MediaArgs) -> anyhow::Result<ExitCode> {
    let what = a.what.unwrap_or(MediaCommand::List);
    if let MediaCommand::List = what {
        return list(ctx);
    }
    let lib = library(ctx, a.library.as_deref())?;
    let op = match what {
        MediaCommand::List => unreachable!("listed above"),
        MediaCommand::Export { barcodes, pool, full } => return export(ctx, &lib, barcodes, pool, full),
        MediaCommand::Import => return import(ctx, &lib),
        MediaCommand::TakeOut { mail } => MediaOp::TakeOut { mail },
        MediaCommand::PutIn { barcode } => MediaOp::PutIn { barcode },
        MediaCommand::Inventory => MediaOp::Inventory,
        MediaCommand::Load { barcode, drive } => MediaOp::Load { barcode, drive },
        MediaCommand::Unload { drive } => MediaOp::Unload { drive },
        MediaCommand::Label { barcode, pool } => MediaOp::Label { barcode, pool },
        MediaCommand::Move { from, to } => MediaOp::Move { from, to },
        MediaCommand::Eject { barcode } => MediaOp::Eject { barcode },
        MediaCommand::Drive { drive, switch } => MediaOp::Drive { drive, online: switch == "online" },
    };
    let report = ops::apply(&lib, &op)?;
    print_report(ctx, &report);
    Ok(ExitCode::SUCCESS)
}

/// `coffer media list`: every cartridge the catalog knows, and the blank and cleaning ones
/// in the board's libraries.
fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let board = ctx.board()?;
    let now = coffer::clock::unix_now();
    let mut present = Vec::new();
    for l in &board.libraries {
        // A library that cannot be opened now is left out of the list, said once.
        match coffer::library::open(l.name()) {
            Ok(lib) => present.extend(lib.inventory().barcodes().into_iter().map(|b| (b, l.name().clone()))),
            Err(e) => tracing::warn!(target: "media", "library {}: {e}", l.name()),
        }
    }
    let held = ctx.hold_state()?;
    let lines = media(&held.catalog(), &board.pools, now, &present);
    if ctx.json {
        super::print_json(ctx, &json!(lines));
        return Ok(ExitCode::SUCCESS);
    }
    let day =
        |t: Option<u64>| t.map_or_else(|| "-".into(), |t| coffer::jobs::calendar::format(t)[..10].to_owned());
    outln!(
        ctx,
        "{:<12} {:<10} {:<9} {:>8} {:>10}  {:<10} {:<10} {:<10} {:>7} {}",
        "barcode",
        "pool",
        "status",
        "sessions",
        "bytes",
        "first",
        "last",
        "expires",
        "errors",
        "where"
    );
    for m in &lines {
        let place = match (&m.library, m.offsite) {
            (_, Some(t)) => format!("vault since {}", day(Some(t))),
            (Some(l), None) => format!("library {l}"),
            (None, None) => "-".into(),
        };
        let expires = match (m.expires, m.kept.as_str()) {
            (Some(t), _) => day(Some(t)),
            (None, "") => "-".into(),
            (None, k) => k.to_owned(),
        };
        let errors = match m.cleaning_uses {
            Some(n) => format!("{n} uses"),
            None => format!("{}/{}", m.read_errors, m.write_errors),
        };
        outln!(
            ctx,
            "{:<12} {:<10} {:<9} {:>8} {:>10}  {:<10} {:<10} {:<10} {errors:>7} {place}",
            m.barcode,
            if m.pool.is_empty() { "-" } else { &m.pool },
            m.status,
            m.sessions,
            human_bytes(m.used),
            day(m.first_write),
            day(m.last_write),
            expires
        );
    }
    if lines.is_empty() {
        outln!(ctx, "no cartridges: the catalog knows none and the board's libraries hold none");
    }
    Ok(ExitCode::SUCCESS)
}

/// `coffer media export`: to the mail slots, marked offsite in the catalog as they go.
fn export(
    ctx: &Ctx,
    lib: &Arc<Library>,
    barcodes: Vec<String>,
    pool: Option<String>,
    full: bool,
) -> anyhow::Result<ExitCode> {
    let mut held = ctx.hold_state()?;
    let (wanted, again) = match &pool {
        Some(p) => {
            let board = ctx.board()?;
            let catalog = held.catalog();
            let known =
                coffer::lifecycle::pools::effective(&board.pools, &catalog).iter().any(|x| &x.name == p)
                    || catalog.media().any(|m| &m.info().pool == p);
            if !known {
                bail!("no pool '{p}': the board names none so, and no cartridge is labelled for it");
            }
            let again = format!("coffer media export --pool {p}{}", if full { " --full" } else { "" });
            (candidates(&catalog, p, full), again)
        }
        None if barcodes.is_empty() => bail!("say which cartridges: barcodes, or --pool NAME"),
        None => (barcodes.clone(), format!("coffer media export {}", barcodes.join(" "))),
    };
    let done = vault::export(lib, &wanted, &again)?;
    let now = coffer::clock::unix_now();
    let records: Vec<Record> = {
        let catalog = held.catalog();
        done.sent
            .iter()
            .filter_map(|(b, _)| catalog.medium_by_barcode(b))
            .map(|m| Record::from(MediumVaulted { medium: m.id(), offsite: true, at: now }))
            .collect()
    };
    held.commit(&records)?;
    if ctx.json {
        super::print_json(ctx, &json!(done));
    } else {
        for (b, place) in &done.sent {
            outln!(ctx, "{b} is in {place}: take it to the vault");
        }
        if !done.waiting.is_empty() {
            outln!(
                ctx,
                "{} more wait for the mail slots ({}): take out the cartridges there, then run `{again}` again",
                done.waiting.len(),
                done.waiting.join(" ")
            );
        }
        for b in &done.absent {
            outln!(ctx, "{b} is not in library {}: left as it is", lib.name());
        }
        if done.sent.is_empty() && done.waiting.is_empty() {
            outln!(ctx, "nothing to export");
        }
    }
    if let Some(why) = &done.stopped {
        bail!("the export stopped: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `coffer media import`: the cartridges in the mail slots, back into their pools.
fn import(ctx: &Ctx, lib: &Arc<Library>) -> anyhow::Result<ExitCode> {
    let mut held = ctx.hold_state()?;
    let done = vault::import(lib, &held.catalog())?;
    let arrived = &done.arrived;
    let now = coffer::clock::unix_now();
    let records: Vec<Record> = arrived
        .iter()
        .filter_map(|a| a.back)
        .filter(|(_, was_offsite)| *was_offsite)
        .map(|(medium, _)| Record::from(MediumVaulted { medium, offsite: false, at: now }))
        .collect();
    held.commit(&records)?;
    if ctx.json {
        super::print_json(ctx, &json!(arrived));
    } else {
        for a in arrived {
            let verb = if a.taken { "taken in" } else { "NOT taken in" };
            outln!(
                ctx,
                "{} {verb} ({}): {}",
                if a.barcode.is_empty() { "?" } else { &a.barcode },
                a.place,
                a.what
            );
        }
        if arrived.is_empty() && done.stopped.is_none() {
            outln!(ctx, "the mail slots of library {} are empty", lib.name());
        }
    }
    // What moved is journaled above; then the failure is said.
    if let Some(why) = &done.stopped {
        bail!("the import stopped: {why}");
    }
    let refused = arrived.iter().filter(|a| !a.taken).count();
    Ok(if refused > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What was done, then the inventory, drives and cartridges not written, for people or as
/// JSON.
pub fn print_report(ctx: &Ctx, r: &MediaReport) {
    if ctx.json {
        super::print_json(
            ctx,
            &json!({
                "library": r.library,
                "done": r.done,
                "places": r.places,
                "drives": r.drives,
                "unusable": r.unusable.iter().map(|(b, w)| json!({"barcode": b, "why": w})).collect::<Vec<_>>(),
            }),
        );
        return;
    }
    if !r.done.is_empty() {
        outln!(ctx, "{}", r.done);
    }
    outln!(ctx, "library {}:", r.library);
    for p in &r.places {
        let what = match (&p.barcode, p.full) {
            (Some(b), true) => b.clone(),
            (None, true) => "(no barcode)".into(),
            _ => "-".into(),
        };
        outln!(ctx, "  {:<12} {what}", p.element);
    }
    for d in &r.drives {
        if let Some(why) = &d.offline {
            outln!(ctx, "  drive {} offline: {why}", d.drive);
        }
    }
    for (b, why) in &r.unusable {
        outln!(ctx, "  {b} not written: {why}");
    }
}
