//! `coffer journal check`: replays the journal read-only and reports what it found.

use std::process::ExitCode;

use clap::Subcommand;
use coffer::journal::Mode;
use coffer::store::Store;
use serde_json::json;

use super::Ctx;
use crate::outln;

/// Journal commands.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Replay read-only: count records, report damage and torn tails, change nothing.
    Check,
}

/// Runs a journal command.
pub fn run(ctx: &Ctx, cmd: JournalCommand) -> anyhow::Result<ExitCode> {
    let JournalCommand::Check = cmd;
    let (store, report) = Store::open(&ctx.state, Mode::ReadOnly)?;
    let c = store.catalog();
    let damage = report.damage.as_ref().map(|d| d.to_string());
    if ctx.json {
        super::print_json(
            ctx,
            &json!({
                "records": report.records, "bytes": report.bytes, "segments": report.segments,
                "sessions": c.sessions().count(), "media": c.media().count(),
                "torn_tail": report.cut.as_ref().map(|x| json!({"file": x.file, "offset": x.offset, "bytes": x.bytes})),
                "warnings": report.warnings, "damage": damage,
            }),
        );
    } else {
        outln!(
            ctx,
            "journal in {}: {} records in {} segments, {} bytes",
            ctx.state.display(),
            report.records,
            report.segments,
            report.bytes
        );
        outln!(ctx, "catalog: {} sessions, {} media", c.sessions().count(), c.media().count());
        if let Some(cut) = &report.cut {
            let when =
                if damage.is_some() { "cut once the damage is dealt with" } else { "cut at the next open" };
            outln!(
                ctx,
                "torn tail: {} bytes at {} byte {} ({}); {when}",
                cut.bytes,
                cut.file,
                cut.offset,
                cut.reason
            );
        }
        for w in &report.warnings {
            outln!(ctx, "warning: {w}");
        }
        if let Some(d) = &damage {
            outln!(ctx, "DAMAGED: {d}");
            outln!(ctx, "the records before the damage are listed above; the service runs read-only.");
            outln!(
                ctx,
                "keep a copy of {}, then rebuild the catalog with `coffer scan TARGET`.",
                ctx.state.display()
            );
        }
    }
    Ok(if damage.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
