//! `coffer drain --from STAGE [--to TARGET]`: moves finished sessions off a staging target
//! (an NVRAM ring) onto a slower one.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;
use coffer::device::{TargetSpec, open_target};
use coffer::pipeline::drain::{DrainReport, drain};
use coffer::store::State;
use serde_json::{Value, json};

use super::{Ctx, human_bytes};
use crate::outln;

/// Arguments of `coffer drain`.
#[derive(Debug, ClapArgs)]
pub struct DrainArgs {
    /// The staging target whose sessions to move: nvram:PATH.
    #[arg(long, value_name = "STAGE")]
    pub from: String,
    /// Where to move them. Default: the built-in disk target in the state directory.
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,
}

/// The target sessions go to when none is named.
pub fn default_target(ctx: &Ctx) -> anyhow::Result<TargetSpec> {
    Ok(ctx.board()?.default_target(&ctx.state)?)
}

/// Runs `coffer drain`.
pub fn run(ctx: &Ctx, a: DrainArgs) -> anyhow::Result<ExitCode> {
    let from: TargetSpec = a.from.parse()?;
    let to: TargetSpec = match &a.to {
        Some(t) => t.parse()?,
        None => default_target(ctx)?,
    };
    let mut store = ctx.hold_state()?;
    let report = drain_to(&mut store, &from, &to)?;
    if ctx.json {
        super::print_json(ctx, &report_json(&report));
    } else {
        print_report(ctx, &from, &to, &report);
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Drains `from` into `to`, with the context a person needs on failure.
pub fn drain_to(store: &mut impl State, from: &TargetSpec, to: &TargetSpec) -> anyhow::Result<DrainReport> {
    let mut target = open_target(to).with_context(|| format!("cannot use target {to}"))?;
    drain(store, &from.to_string(), &mut *target).with_context(|| {
        format!(
            "draining {from} to {to} stopped; the parts moved so far are journaled, the rest stay \
             on {from} and drain on the next run"
        )
    })
}

/// The report for scripts.
pub fn report_json(r: &DrainReport) -> Value {
    json!({ "sessions": r.sessions, "parts": r.parts, "bytes": r.bytes, "problems": r.problems })
}

/// The report for people.
pub fn print_report(ctx: &Ctx, from: &TargetSpec, to: &TargetSpec, r: &DrainReport) {
    outln!(
        ctx,
        "drained {} sessions ({} parts, {}) from {from} to {to}",
        r.sessions.len(),
        r.parts,
        human_bytes(r.bytes)
    );
    for p in &r.problems {
        outln!(ctx, "  problem: {p}");
    }
}
