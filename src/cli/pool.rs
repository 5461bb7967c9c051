//! `coffer pool list|show NAME`: the media pools, their cartridges, and which of their
//! sessions are kept, needed by a kept one, or expired (at `$COFFER_NOW` when set).

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use coffer::lifecycle::report::{PoolView, pools};
use serde_json::json;

use super::{Ctx, human_bytes};
use crate::outln;

/// What to show.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Every pool: retention, cartridges by status, sessions kept and expired.
    List,
    /// One pool: each cartridge with its status and sessions, each session with its verdict.
    Show {
        /// The pool.
        name: String,
    },
}

/// `keep 14d`, `keep_sets 2`, `keeps everything`.
fn retention(p: &PoolView) -> String {
    let mut r = Vec::new();
    if let Some(k) = p.keep {
        r.push(if k % 86_400 == 0 { format!("keep {}d", k / 86_400) } else { format!("keep {k}s") });
    }
    if let Some(n) = p.keep_sets {
        r.push(format!("keep_sets {n}"));
    }
    if r.is_empty() { "keeps everything".into() } else { r.join(", ") }
}

/// Cartridges by status: `2 writable, 1 expired`.
fn by_status(p: &PoolView) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for c in &p.cartridges {
        *counts.entry(c.status).or_default() += 1;
    }
    counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
}

/// Runs `coffer pool`.
pub fn run(ctx: &Ctx, what: PoolCommand) -> anyhow::Result<ExitCode> {
    let board = ctx.board()?;
    let now = coffer::clock::unix_now();
    let held = ctx.hold_state()?;
    let views = pools(&held.catalog(), &board.pools, now);
    match what {
        PoolCommand::List => {
            if ctx.json {
                super::print_json(ctx, &json!(views));
                return Ok(ExitCode::SUCCESS);
            }
            for p in &views {
                let expired = p.sessions.iter().filter(|s| s.expired).count();
                outln!(
                    ctx,
                    "pool {}{}: {}; {} cartridge(s){}; {} session(s), {} expired",
                    p.name,
                    if p.on_board { "" } else { " (labels only)" },
                    retention(p),
                    p.cartridges.len(),
                    if p.cartridges.is_empty() { String::new() } else { format!(" ({})", by_status(p)) },
                    p.sessions.len(),
                    expired
                );
            }
            if views.is_empty() {
                outln!(ctx, "no pools: the board names none and no medium is labelled yet");
            }
        }
        PoolCommand::Show { name } => {
            let Some(p) = views.iter().find(|p| p.name == name) else {
                let known: Vec<&str> = views.iter().map(|p| p.name.as_str()).collect();
                bail!(
                    "no pool '{name}': the board names none and no medium is labelled for it (pools: {})",
                    known.join(", ")
                );
            };
            if ctx.json {
                super::print_json(ctx, &json!(p));
                return Ok(ExitCode::SUCCESS);
            }
            outln!(ctx, "pool {}: {}", p.name, retention(p));
            if let Some(l) = &p.library {
                outln!(ctx, "  library:   {l}");
            }
            if !p.barcodes.is_empty() {
                outln!(ctx, "  barcodes:  {}", p.barcodes.join(", "));
            }
            outln!(ctx, "  cartridges:");
            for c in &p.cartridges {
                outln!(
                    ctx,
                    "    {:<12} {:<9} {:>10} of {:>10}  sessions {:?}",
                    c.barcode,
                    c.status,
                    human_bytes(c.used),
                    human_bytes(c.capacity),
                    c.sessions
                );
            }
            outln!(ctx, "  sessions:");
            for s in &p.sessions {
                outln!(
                    ctx,
                    "    {:>6}  started {}  {}",
                    s.session,
                    coffer::jobs::calendar::format(s.started),
                    s.why
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
