//! `coffer backup SRC... [--to TARGET] [--incremental]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use coffer::device::{TargetSpec, open_targets};
use coffer::format::records::SessionStatus;
use coffer::pipeline::backup::{BackupRequest, BackupSummary, Source, run as run_backup};
use coffer::pipeline::baseline::{Baseline, Incremental, check_sources};
use coffer::pipeline::drain::DrainReport;
use coffer::pipeline::{Cancel, DEFAULT_UNIT};
use coffer::source::mode::{DEFAULT_FILE_THRESHOLD, RequestedMode};
use serde_json::json;

use super::{Ctx, human_bytes};
use crate::outln;

/// Arguments of `coffer backup`.
#[derive(Debug, ClapArgs)]
pub struct BackupArgs {
    /// Files, directories or block devices to back up.
    #[arg(required = true, value_name = "SRC")]
    pub sources: Vec<PathBuf>,
    /// Where to write: disk:DIR[,volume=SIZE][,pool=NAME] or null:. Default: the built-in
    /// disk target in the state directory.
    #[arg(long = "to", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// File mode, volume mode, or decide per source.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: RequestedMode,
    /// File count over which `auto` reads a whole file system as its volume.
    #[arg(long, default_value_t = DEFAULT_FILE_THRESHOLD)]
    pub file_threshold: u64,
    /// Unit size: how much data one record carries (e.g. 4M).
    #[arg(long, value_parser = parse_unit, default_value = "4M")]
    pub unit: usize,
    /// Do not cross into other file systems below a source directory.
    #[arg(long)]
    pub one_file_system: bool,
    /// Store the data as read, without LZ4 (for data known not to compress).
    #[arg(long)]
    pub no_compression: bool,
    /// Land the session on this fast target (nvram:PATH) first, then drain it to the --to
    /// target.
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// With several --to targets: print which files and segments would go to which target,
    /// and write nothing.
    #[arg(long)]
    pub plan_only: bool,
    /// Store only the regular files new or changed since the last complete backup of the same
    /// sources (and every directory, link and special file); a full backup when there is none.
    #[arg(long)]
    pub incremental: bool,
}

/// Whether a backup is full or incremental, and why a requested incremental one is not.
#[derive(Debug, Default)]
struct Lineage {
    /// The session an incremental backup builds on.
    base: Option<u64>,
    /// Why `--incremental` ran a full backup.
    full_because: Option<String>,
}

/// `--plan-only`: the plan, for people (a line per target) or as JSON.
fn plan_only(
    ctx: &Ctx,
    req: &BackupRequest,
    targets: &[Box<dyn coffer::device::Target>],
    specs: &[String],
) -> anyhow::Result<ExitCode> {
    let p = coffer::pipeline::multi::make_plan(req, targets)?;
    if ctx.json {
        let paths: Vec<String> =
            p.entries.iter().map(|e| String::from_utf8_lossy(&e.meta.path).into_owned()).collect();
        super::print_json(
            ctx,
            &json!({
                "targets": specs,
                "plan": p.plan, "paths": paths, "problems": p.problems,
            }),
        );
    } else {
        for (d, s) in specs.iter().enumerate() {
            outln!(ctx, "device {d}: {s}");
        }
        print!("{}", p.plan.summary());
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_unit(s: &str) -> Result<usize, String> {
    let n = coffer::device::spec::parse_size(s).ok_or("a size like 1M, 4M or 16M")?;
    let max = coffer::format::MAX_UNIT_LEN as u64;
    if !(64 << 10..=max).contains(&n) || n % 4096 != 0 {
        return Err(format!("unit must be a multiple of 4096 from 64K to {}M", max >> 20));
    }
    Ok(n as usize)
}

/// Runs `coffer backup`.
pub fn run(ctx: &Ctx, a: BackupArgs) -> anyhow::Result<ExitCode> {
    let specs: Vec<TargetSpec> = match a.targets.as_slice() {
        [] => vec![super::drain::default_target(ctx)?],
        many => many.iter().map(|t| t.parse()).collect::<Result<_, _>>()?,
    };
    let spec = specs[0].clone();
    let stage: Option<TargetSpec> = a.stage.as_deref().map(str::parse).transpose()?;
    if stage.is_some() && specs.len() > 1 {
        bail!("--stage drains to one target: give one --to with it");
    }
    let sources = resolve_sources(&a)?;
    if sources.iter().any(|s| matches!(s, Source::Agent { .. })) {
        bail!(
            "an agent's tree is backed up by the running service, which the agents connect to: \
             start it (`coffer serve`, or systemctl start coffer) and run this again"
        );
    }
    let description = a.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    let source_key = coffer::pipeline::sources::key(&a.sources).map_err(anyhow::Error::msg)?;
    // The catalog is needed now only to find the baseline; otherwise it is opened once the
    // targets are (a plan needs none).
    let mut opened = None;
    let mut lineage = Lineage::default();
    let incremental = if a.incremental {
        check_sources(&sources)?;
        let store = opened.insert(ctx.open_store()?);
        match Baseline::find(store.catalog(), &store.indexes(), source_key) {
            Ok(b) => {
                lineage.base = Some(b.base());
                Some(Incremental::new(b))
            }
            Err(e) => {
                lineage.full_because = Some(e.to_string());
                None
            }
        }
    } else {
        None
    };
    let req = BackupRequest {
        sources,
        description,
        unit: if a.unit == 0 { DEFAULT_UNIT } else { a.unit },
        job: 0,
        one_file_system: a.one_file_system,
        compress: !a.no_compression,
        compress_on_agent: false,
        cancel: Cancel::default(),
        source_key,
        incremental,
        agents: None,
    };
    let writing: Vec<TargetSpec> = match &stage {
        Some(st) => vec![st.clone()],
        None => specs.clone(),
    };
    // A library target writes through each of its drives: one writer (and stream) per drive.
    let mut targets = Vec::new();
    let mut names = Vec::new();
    for t in &writing {
        for w in open_targets(t).with_context(|| format!("cannot use target {t}"))? {
            names.push(if matches!(t, TargetSpec::Library { .. }) { w.describe() } else { t.to_string() });
            targets.push(w);
        }
    }
    if a.plan_only {
        return plan_only(ctx, &req, &targets, &names);
    }
    let mut store = match opened {
        Some(s) => s,
        None => ctx.open_store()?,
    };
    coffer::library::learn_catalog(store.catalog());
    cancel_on_signals(&req.cancel)?;
    let interactive = ctx.interactive();
    let t0 = Instant::now();
    let summary = run_backup(&req, targets, &mut store, |p| {
        if interactive {
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            let raw = p.raw.load(Ordering::Relaxed);
            eprint!(
                "\r{} in, {} stored, {} objects, {:.0} MB/s   ",
                human_bytes(raw),
                human_bytes(p.stored.load(Ordering::Relaxed)),
                p.objects.load(Ordering::Relaxed),
                raw as f64 / secs / 1e6
            );
            let _ = std::io::stderr().flush();
        }
    })?;
    if interactive {
        eprintln!();
    }
    // The session is durable on the stage; draining moves it (and any left by earlier runs).
    let drained = match &stage {
        Some(st) if summary.error.is_none() => Some(super::drain::drain_to(&mut store, st, &spec)?),
        _ => None,
    };
    // After each job the drives are checked: cleaned, taken offline, errors counted.
    if let Err(e) = coffer::pipeline::health::journal_health(&mut store) {
        tracing::warn!(target: "library", "drive health after the backup could not be journaled: {e}");
    }
    report(ctx, &names, &summary, &lineage, drained.as_ref());
    if let (Some(st), Some(d)) = (&stage, &drained)
        && !ctx.json
    {
        super::drain::print_report(ctx, st, &spec, d);
    }
    let drain_problems = drained.as_ref().is_some_and(|d| !d.problems.is_empty());
    Ok(if summary.status == SessionStatus::Cancelled {
        ExitCode::from(EXIT_CANCELLED)
    } else if summary.error.is_some() {
        ExitCode::from(2)
    } else if drain_problems {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Exit status of a cancelled backup (as a shell reports a program stopped by SIGINT).
pub(super) const EXIT_CANCELLED: u8 = 130;

/// SIGINT or SIGTERM cancels the backup cleanly (what was read is written and closed); a
/// second one, while that happens, ends the process at once.
pub(super) fn cancel_on_signals(cancel: &Cancel) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, EXIT_CANCELLED.into(), cancel.flag())
            .context("cannot handle signals")?;
        signal_hook::flag::register(sig, cancel.flag()).context("cannot handle signals")?;
    }
    Ok(())
}

/// Chooses file or volume mode for each source and names trees when there are several.
fn resolve_sources(a: &BackupArgs) -> anyhow::Result<Vec<Source>> {
    coffer::pipeline::sources::resolve(&a.sources, a.mode, a.file_threshold).map_err(anyhow::Error::msg)
}

fn report(ctx: &Ctx, specs: &[String], s: &BackupSummary, lineage: &Lineage, drained: Option<&DrainReport>) {
    let spec = specs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" + ");
    let streams: Vec<_> = s
        .streams
        .iter()
        .map(|t| {
            json!({"stream": t.stream, "target": t.target, "objects": t.objects, "bytes": t.bytes, "error": t.error})
        })
        .collect();
    let ratio = if s.bytes_stored > 0 { s.bytes_in as f64 / s.bytes_stored as f64 } else { 0.0 };
    let rate = s.bytes_in as f64 / s.seconds.max(1e-6) / 1e6;
    if ctx.json {
        super::print_json(
            ctx,
            &json!({
                "session": s.session, "status": format!("{:?}", s.status).to_lowercase(),
                "target": spec, "objects": s.objects, "bytes_in": s.bytes_in,
                "bytes_stored": s.bytes_stored, "ratio": ratio, "mb_per_s": rate, "seconds": s.seconds,
                "problems": s.problems, "error": s.error,
                "drained": drained.map(super::drain::report_json),
                "streams": streams, "moved": s.moved, "tape": coffer::library::activity(),
                "kind": if lineage.base.is_some() { "incremental" } else { "full" },
                "base": lineage.base, "full_because": lineage.full_because,
                "unchanged": {"files": s.unchanged.files, "bytes": s.unchanged.bytes},
            }),
        );
        return;
    }
    match &s.error {
        None => outln!(ctx, "session {} complete on {spec}", s.session),
        Some(e) => outln!(ctx, "session {} FAILED on {spec}: {e}", s.session),
    }
    outln!(
        ctx,
        "  {} objects, {} in, {} stored (ratio {ratio:.2}), {rate:.0} MB/s, {:.1} s",
        s.objects,
        human_bytes(s.bytes_in),
        human_bytes(s.bytes_stored),
        s.seconds
    );
    match (lineage.base, &lineage.full_because) {
        (Some(base), _) => outln!(
            ctx,
            "  incremental on session {base}: {} unchanged files ({}) not stored again",
            s.unchanged.files,
            human_bytes(s.unchanged.bytes)
        ),
        (None, Some(why)) => outln!(ctx, "  full backup: {why}"),
        (None, None) => {}
    }
    for t in &s.streams {
        let how = t.error.as_ref().map_or_else(String::new, |e| format!(" — FAILED: {e}"));
        outln!(
            ctx,
            "  MULTI STREAM [JOB {}] SUBJOB {}: {} objects, {} on {}{how}",
            s.job,
            t.stream,
            t.objects,
            human_bytes(t.bytes),
            t.target
        );
    }
    for m in &s.moved {
        outln!(
            ctx,
            "  moved {} from failed device {} to the others in {} pieces ({} were already durable there)",
            human_bytes(m.bytes),
            m.from,
            m.moves.len(),
            human_bytes(m.kept)
        );
    }
    if s.error.is_some() {
        outln!(ctx, "  the objects journaled before the failure stay restorable: `coffer ls {}`", s.session);
    }
    if !s.problems.is_empty() {
        outln!(ctx, "  {} problems (not backed up or changed while read):", s.problems.len());
        for p in s.problems.iter().take(20) {
            outln!(ctx, "    {p}");
        }
        if s.problems.len() > 20 {
            outln!(ctx, "    … and {} more (--json lists all)", s.problems.len() - 20);
        }
    }
}
