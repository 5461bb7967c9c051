//! `coffer journal check`: replays the journal read-only, reads every session's index file
//! through, and reports what it found.

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
    /// Replay read-only and read every index file through: count records and entries, report
    /// damage and torn tails, change nothing.
    Check,
}

/// Runs a journal command.
pub fn run(ctx: &Ctx, cmd: JournalCommand) -> anyhow::Result<ExitCode> {
    let JournalCommand::Check = cmd;
    let (store, report) = Store::open(&ctx.state, Mode::ReadOnly)?;
    let c = store.catalog();
    let damage = report.damage.as_ref().map(|d| d.to_string());
    let index = check_indexes(&store);
    if ctx.json {
        super::print_json(
            ctx,
            &json!({
                "records": report.records, "bytes": report.bytes, "segments": report.segments,
                "sessions": c.sessions().count(), "media": c.media().count(),
                "torn_tail": report.cut.as_ref().map(|x| json!({"file": x.file, "offset": x.offset, "bytes": x.bytes})),
                "warnings": report.warnings, "damage": damage,
                "index_files": {"checked": index.files, "entries": index.entries, "problems": index.problems},
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
        outln!(ctx, "index files: {} read through, {} entries", index.files, index.entries);
        for p in &index.problems {
            outln!(ctx, "DAMAGED index: {p}");
        }
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
    let bad = damage.is_some() || !index.problems.is_empty();
    Ok(if bad { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What reading the index files through found.
struct IndexCheck {
    files: u64,
    entries: u64,
    problems: Vec<String>,
}

/// Reads every indexed session's file through (one block at a time), checking each block and
/// that it holds the entries the journal recorded.
fn check_indexes(store: &Store) -> IndexCheck {
    let mut check = IndexCheck { files: 0, entries: 0, problems: Vec::new() };
    let indexes = store.indexes();
    for s in store.catalog().sessions().filter(|s| s.has_index_file()) {
        check.files += 1;
        let counted = indexes.session(store.catalog(), s.id()).map_err(|e| e.to_string()).and_then(|e| {
            e.iter().try_fold(0u64, |n, entry| entry.map(|_| n + 1)).map_err(|e| e.to_string())
        });
        match counted {
            Ok(n) if n == s.entries() => check.entries += n,
            Ok(n) => check.problems.push(format!(
                "session {}: the index file holds {n} entries, the journal recorded {}",
                s.id(),
                s.entries()
            )),
            Err(e) => check.problems.push(format!("session {}: {e}", s.id())),
        }
    }
    check
}
