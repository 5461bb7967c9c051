//! `coffer scan TARGET`: rebuilds the catalog from the media of a target.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use coffer::device::{TargetSpec, open_media};
use coffer::pipeline::scan::scan;
use serde_json::json;

use super::Ctx;
use crate::outln;

/// Arguments of `coffer scan`.
#[derive(Debug, ClapArgs)]
pub struct ScanArgs {
    /// The target whose media to read: disk:DIR.
    pub target: String,
}

/// Runs `coffer scan`.
pub fn run(ctx: &Ctx, a: ScanArgs) -> anyhow::Result<ExitCode> {
    let spec: TargetSpec = a.target.parse()?;
    let location = spec.to_string();
    let mut media = open_media(&location)?;
    let mut store = ctx.hold_state()?;
    let report = scan(&mut *media, &location, &mut store)?;
    if ctx.json {
        super::print_json(
            ctx,
            &json!({
                "media": report.media, "sessions_added": report.sessions_added, "sessions_known": report.sessions_known,
                "objects_added": report.objects_added, "problems": report.problems,
            }),
        );
    } else {
        outln!(
            ctx,
            "scanned {} media of {location}: {} sessions added ({} objects), {} already in the catalog",
            report.media,
            report.sessions_added,
            report.objects_added,
            report.sessions_known
        );
        for p in &report.problems {
            outln!(ctx, "  problem: {p}");
        }
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
