//! `coffer media inventory|load|unload|label|move`: a person's hands on a tape library of the
//! board (default: its first library).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args as ClapArgs, Subcommand};
use coffer::library::Library;
use coffer::library::ops::{self, MediaOp, MediaReport};
use serde_json::json;

use super::Ctx;
use crate::outln;

/// `coffer media …`.
#[derive(Debug, ClapArgs)]
pub struct MediaArgs {
    /// The library (its name in the board file). Default: the board's first library.
    #[arg(long, global = true, value_name = "NAME")]
    pub library: Option<String>,
    #[command(subcommand)]
    pub what: MediaCommand,
}

/// What to do with the library.
#[derive(Debug, Subcommand)]
pub enum MediaCommand {
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
    let lib = library(ctx, a.library.as_deref())?;
    let op = match a.what {
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
