//! `coffer pool list|show NAME`: the media pools, their cartridges, and which of their
//! sessions are kept, needed by a kept one, or expired (at `$COFFER_NOW` when set).
//! `coffer pool create|modify NAME`: pools made by command, kept in the catalog beside the
//! board's (a board pool is changed in the board file).

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use coffer::catalog::{PoolDefined, Record};
use coffer::lifecycle::pools::{PoolSpec, check_all, definition, effective, from_definition};
use coffer::lifecycle::report::{PoolView, pools};
use coffer::store::State as _;
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
    /// Make a pool (kept in the catalog; the board's pools are changed in the board file).
    Create {
        /// The pool.
        name: String,
        #[command(flatten)]
        keys: PoolKeys,
    },
    /// Change a pool made by command: the keys given replace its own.
    Modify {
        /// The pool.
        name: String,
        #[command(flatten)]
        keys: PoolKeys,
        /// Keys to remove (keep, keep_sets, library, barcodes, allocation).
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
    },
}

/// A pool's keys, as the board's `[[pool]]` says them.
#[derive(Debug, clap::Args)]
pub struct PoolKeys {
    /// The library it lives in.
    #[arg(long)]
    library: Option<String>,
    /// Barcode ranges or single barcodes, comma-separated (`CFR0001L8-CFR0008L8,CFR0010L8`).
    #[arg(long, value_delimiter = ',')]
    barcodes: Option<Vec<String>>,
    /// How long a session is kept after it started (`14d`, `8w`).
    #[arg(long)]
    keep: Option<String>,
    /// How many of each source's newest sets are kept.
    #[arg(long)]
    keep_sets: Option<u32>,
    /// `append`, `new`, `daily`, `weekly DAY`, `monthly`.
    #[arg(long)]
    allocation: Option<String>,
}

impl PoolKeys {
    /// `p` with the keys given set.
    fn apply(self, mut p: PoolSpec) -> PoolSpec {
        p.library = self.library.or(p.library);
        p.barcodes = self.barcodes.unwrap_or(p.barcodes);
        p.keep = self.keep.or(p.keep);
        p.keep_sets = self.keep_sets.or(p.keep_sets);
        p.allocation = self.allocation.or(p.allocation);
        p
    }
}

/// Makes or changes the pool `name` by command: checked with every other pool in force, then
/// journaled. Nothing changes when it is refused.
fn define(
    ctx: &Ctx,
    name: &str,
    change: impl FnOnce(Option<PoolSpec>) -> anyhow::Result<PoolSpec>,
) -> anyhow::Result<ExitCode> {
    let board = ctx.board()?;
    let mut held = ctx.hold_state()?;
    let catalog = held.catalog().into_owned();
    if board.pools.iter().any(|p| p.name == name) {
        bail!("pool '{name}' is defined in the board file: change it there (and restart the service)");
    }
    let mine = catalog
        .pools()
        .find(|(n, _)| *n == name)
        .map(|(n, d)| from_definition(n, d))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let pool = change(mine)?;
    let mut all: Vec<PoolSpec> =
        effective(&board.pools, &catalog).into_iter().filter(|p| p.name != name).collect();
    all.push(pool.clone());
    let libraries: Vec<&str> = board.libraries.iter().map(|l| l.name().as_str()).collect();
    check_all(&all, &libraries).map_err(|(key, what)| anyhow::anyhow!("{key}: {what}; nothing changed"))?;
    held.commit(&[Record::from(PoolDefined { name: name.to_owned(), definition: definition(&pool) })])?;
    coffer::library::learn_catalog(&held.catalog());
    let views = pools(&held.catalog(), &all, coffer::clock::unix_now());
    let view = views.iter().find(|p| p.name == name).expect("the pool just defined");
    if ctx.json {
        super::print_json(ctx, &json!(view));
    } else {
        outln!(ctx, "pool {name}: {}", retention(view));
    }
    Ok(ExitCode::SUCCESS)
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
    let what = match what {
        PoolCommand::Create { name, keys } => {
            return define(ctx, &name.clone(), |mine| {
                if mine.is_some() {
                    bail!("pool '{name}' exists: change it with `coffer pool modify {name}`");
                }
                let blank = PoolSpec {
                    name: name.clone(),
                    library: None,
                    barcodes: Vec::new(),
                    keep: None,
                    keep_sets: None,
                    allocation: None,
                };
                Ok(keys.apply(blank))
            });
        }
        PoolCommand::Modify { name, keys, unset } => {
            return define(ctx, &name.clone(), |mine| {
                let Some(mut p) = mine else {
                    bail!("no pool '{name}' made by command: make it with `coffer pool create {name}`");
                };
                for k in &unset {
                    match k.as_str() {
                        "keep" => p.keep = None,
                        "keep_sets" => p.keep_sets = None,
                        "library" => p.library = None,
                        "barcodes" => p.barcodes.clear(),
                        "allocation" => p.allocation = None,
                        other => bail!("--unset {other}: keep, keep_sets, library, barcodes or allocation"),
                    }
                }
                Ok(keys.apply(p))
            });
        }
        other => other,
    };
    let board = ctx.board()?;
    let now = coffer::clock::unix_now();
    let held = ctx.hold_state()?;
    let catalog = held.catalog();
    let views = pools(&catalog, &coffer::lifecycle::pools::effective(&board.pools, &catalog), now);
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
        PoolCommand::Create { .. } | PoolCommand::Modify { .. } => unreachable!("handled above"),
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
