//! `coffer media inventory|load|unload|label|move`: a person's hands on a tape library of the
//! board (default: its first library).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Subcommand};
use coffer::device::tape::{DEFAULT_TAPE_BLOCK, label_blank};
use coffer::library::Library;
use serde_json::json;

use super::Ctx;

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
    match a.what {
        MediaCommand::Inventory => {
            lib.refresh()?;
        }
        MediaCommand::Load { barcode, drive } => {
            let mut lease = match drive {
                Some(d) => lib.lease_drive(d)?,
                None => lib.lease(Some(&barcode))?,
            };
            lib.load(&mut lease, &barcode)?;
            println_unless_json(ctx, format!("{barcode} loaded into drive {}", lease.drive()));
        }
        MediaCommand::Unload { drive } => {
            let mut lease = lib.lease_drive(drive)?;
            match lib.loaded(&lease) {
                Some(b) => {
                    lib.unload(&mut lease)?;
                    println_unless_json(ctx, format!("{b} unloaded from drive {drive}"));
                }
                None => println_unless_json(ctx, format!("drive {drive} is empty")),
            }
        }
        MediaCommand::Label { barcode, pool } => {
            let mut lease = lib.lease(Some(&barcode))?;
            let label = label_blank(&mut lease, &barcode, &pool, DEFAULT_TAPE_BLOCK)?;
            lib.unload(&mut lease)?;
            println_unless_json(ctx, format!("{} labelled for pool {}", label.barcode, label.pool));
        }
        MediaCommand::Move { from, to } => {
            let inv = lib.refresh()?;
            let src =
                inv.find(&from).map(|e| e.address).or_else(|| inv.address_of(&from)).with_context(|| {
                    format!("no cartridge or place '{from}' (see `coffer media inventory`)")
                })?;
            let dst = inv
                .address_of(&to)
                .with_context(|| format!("no place '{to}': say `slot N`, `mail N` or `drive N`"))?;
            if inv.at(dst).is_some_and(|e| e.full) {
                bail!("{to} is not empty");
            }
            lib.move_between(src, dst)?;
            println_unless_json(ctx, format!("moved {from} to {to}"));
        }
        MediaCommand::Drive { drive, switch: state } => {
            let why = (state == "offline").then(|| "taken offline by hand".to_owned());
            lib.set_offline(drive, why)?;
            println_unless_json(ctx, format!("drive {drive} {state}"));
        }
    }
    print_inventory(ctx, &lib);
    Ok(ExitCode::SUCCESS)
}

fn println_unless_json(ctx: &Ctx, s: String) {
    if !ctx.json {
        println!("{s}");
    }
}

/// The inventory, drives and cartridges not written, for people or as JSON.
fn print_inventory(ctx: &Ctx, lib: &Library) {
    let places = lib.inventory().places();
    let drives = lib.drives();
    let unusable = lib.unusable();
    if ctx.json {
        super::print_json(&json!({
            "library": lib.name(),
            "places": places,
            "drives": drives.iter().map(|(i, off, b)| json!({"drive": i, "offline": off, "barcode": b})).collect::<Vec<_>>(),
            "unusable": unusable.iter().map(|(b, w)| json!({"barcode": b, "why": w})).collect::<Vec<_>>(),
        }));
        return;
    }
    println!("library {}:", lib.name());
    for p in &places {
        let what = match (&p.barcode, p.full) {
            (Some(b), true) => b.clone(),
            (None, true) => "(no barcode)".into(),
            _ => "-".into(),
        };
        println!("  {:<12} {what}", p.element);
    }
    for (i, off, _) in &drives {
        if let Some(why) = off {
            println!("  drive {i} offline: {why}");
        }
    }
    for (b, why) in &unusable {
        println!("  {b} not written: {why}");
    }
}
