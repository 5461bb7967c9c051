//! `coffer catalog prune`: drops the per-file index of finished sessions older than the board's
//! `catalog_keep` now, as the service does after each job and once a day
//! ([`coffer::lifecycle::index_prune`]). The sessions stay: they restore whole, and
//! `coffer scan --session N` reads an index back from the media.

use std::process::ExitCode;

use clap::Subcommand;
use coffer::lifecycle::index_prune;
use coffer::store::State;
use serde_json::json;

use super::Ctx;
use crate::outln;

/// What `coffer catalog` does.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Prune the per-file index of finished sessions older than the board's catalog_keep
    /// (default 30d), except those a kept incremental or the next incremental backup needs.
    Prune,
}

/// Runs `coffer catalog …`.
pub fn run(ctx: &Ctx, what: CatalogCommand) -> anyhow::Result<ExitCode> {
    match what {
        CatalogCommand::Prune => prune(ctx),
    }
}

fn prune(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let keep = ctx.board()?.catalog_keep()?;
    let now = coffer::clock::unix_now();
    let mut held = ctx.hold_state()?;
    let indexes = held.indexes();
    let before = indexes.disk_bytes();
    let records = held.read(|c| index_prune::records(c, now, keep));
    held.commit(&records)?;
    let sessions: Vec<u64> = records
        .iter()
        .filter_map(|r| match r {
            coffer::catalog::Record::IndexPruned(p) => Some(p.session),
            _ => None,
        })
        .collect();
    let after = indexes.disk_bytes();
    if ctx.json {
        super::print_json(
            ctx,
            &json!({"pruned": sessions, "keep_seconds": keep, "index_bytes_before": before, "index_bytes_after": after}),
        );
    } else if sessions.is_empty() {
        outln!(ctx, "no session's index to prune (catalog_keep {} days)", keep / 86_400);
    } else {
        let list = sessions.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        outln!(
            ctx,
            "pruned the per-file index of sessions {list} (older than catalog_keep, {} days): the index directory went from {} to {}; they restore whole, or `coffer scan --session N` reads an index back",
            keep / 86_400,
            super::human_bytes(before),
            super::human_bytes(after)
        );
    }
    Ok(ExitCode::SUCCESS)
}
