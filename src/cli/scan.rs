//! `coffer scan TARGET`: rebuilds the catalog from the media of a target. `coffer scan
//! --session N`: reads the per-file index of session N, pruned from the state, back from the
//! session's media and writes it again, so that its files can be listed and restored one by one.

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
    #[arg(required_unless_present = "session")]
    pub target: Option<String>,
    /// Read only this session's pruned index back from its media (the catalog says where its
    /// parts are).
    #[arg(long, value_name = "N", conflicts_with = "target")]
    pub session: Option<u64>,
}

/// Runs `coffer scan`.
pub fn run(ctx: &Ctx, a: ScanArgs) -> anyhow::Result<ExitCode> {
    let target = match (a.target, a.session) {
        (_, Some(session)) => return session_index(ctx, session),
        (Some(t), None) => t,
        (None, None) => anyhow::bail!("name a target to scan (disk:DIR), or --session N"),
    };
    let spec: TargetSpec = target.parse()?;
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

/// `coffer scan --session N`.
fn session_index(ctx: &Ctx, session: u64) -> anyhow::Result<ExitCode> {
    let mut store = ctx.hold_state()?;
    let done = coffer::pipeline::reindex::reindex(&mut store, session)?;
    if ctx.json {
        super::print_json(
            ctx,
            &json!({"session": session, "entries": done.entries, "index_bytes": done.bytes}),
        );
    } else {
        outln!(
            ctx,
            "read session {session}'s index back from its media: {} entries ({}); `coffer ls {session}` lists them",
            done.entries,
            super::human_bytes(done.bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}
