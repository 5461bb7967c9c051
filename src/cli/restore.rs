//! `coffer restore` and `coffer verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use coffer::format::records::SessionStatus;
use coffer::pipeline::restore::{Action, RemoteTo, RestoreReport, RestoreRequest, run};
use serde_json::json;

use super::{Ctx, human_bytes, session_arg};
use crate::outln;

/// Arguments of `coffer restore`.
#[derive(Debug, ClapArgs)]
pub struct RestoreArgs {
    /// Session id, or `latest`. An incremental session restores the source as it was then,
    /// reading its chain down to the full session.
    pub session: String,
    /// Directory to restore into (created if missing), or `agent:NAME:/dir` on a backup
    /// agent (through the running service; under the agent's `--restore-to` paths).
    #[arg(long = "to", value_name = "DIR")]
    pub to: PathBuf,
    /// Restore only these paths (as `coffer ls SESSION` shows them) and what lies below them.
    pub paths: Vec<String>,
}

/// Arguments of `coffer verify`.
#[derive(Debug, ClapArgs)]
pub struct VerifyArgs {
    /// Session id, or `latest`.
    pub session: String,
    /// Also compare every object with the files under this directory, or under
    /// `agent:NAME:/dir` on a backup agent (through the running service; under the agent's
    /// `--paths`, and only its own trees of the session).
    #[arg(long, value_name = "DIR")]
    pub compare: Option<PathBuf>,
}

/// Runs `coffer restore`.
pub fn run_restore(ctx: &Ctx, a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let held = ctx.hold_state()?;
    let catalog = &*held.catalog();
    let session = session_arg(catalog, &a.session)?;
    let mut paths: Vec<Vec<u8>> =
        a.paths.iter().map(|p| p.trim_end_matches('/').as_bytes().to_vec()).collect();
    let action = match coffer::pipeline::sources::agent_source(&a.to).map_err(anyhow::Error::msg)? {
        Some((agent, dir)) => {
            paths = agents_own(catalog, session, &agent, paths)?;
            Action::Remote(agent_sink(ctx, &agent, &dir, false)?)
        }
        None => Action::Restore(a.to.clone()),
    };
    let indexes =
        indexes_for(ctx, catalog, coffer::store::State::indexes(&held), session, !paths.is_empty())?;
    let req = RestoreRequest { session, paths, action };
    let report = run(catalog, &indexes, &req)?;
    // A whole restore of one session is counted against what it committed; an incremental's
    // restore also reads the sessions of its chain, and is checked object by object only.
    let interrupted = interrupted(catalog, session, a.paths.is_empty() && report.sessions.len() == 1);
    print(ctx, "restore", session, &report, interrupted);
    Ok(exit(&report, interrupted))
}

/// The indexes a restore or verify of `session` reads. A session whose index was pruned (or
/// an incremental some of whose chain's sessions were) restores whole: each pruned index is
/// read back from the media for this command only and held in memory. A selection of paths
/// is refused then: finding one file needs the index in the state, which
/// `coffer scan --session N` brings back.
fn indexes_for(
    ctx: &Ctx,
    catalog: &coffer::catalog::Catalog,
    indexes: coffer::store::Indexes,
    session: u64,
    selected: bool,
) -> anyhow::Result<coffer::store::Indexes> {
    let pruned = coffer::pipeline::reindex::pruned_in_chain(catalog, session);
    if pruned.is_empty() {
        return Ok(indexes);
    }
    let list = pruned.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let whose = if pruned == [session] {
        format!("session {session}'s per-file index was pruned")
    } else {
        format!("the per-file index of session {list} (of session {session}'s chain) was pruned")
    };
    if selected {
        let scans = pruned
            .iter()
            .map(|id| format!("`coffer scan --session {id}`"))
            .collect::<Vec<_>>()
            .join(", then ");
        anyhow::bail!(
            "{whose} (older than the board's catalog_keep), so single paths cannot be found in it: restore the whole session (name no paths), or run {scans} to read the index back from the media, then restore the paths"
        );
    }
    if !ctx.json {
        outln!(
            ctx,
            "{whose}: reading it back from the media for this restore (the session comes back whole)"
        );
    }
    Ok(coffer::pipeline::reindex::load_pruned(catalog, indexes, session)?)
}

/// The paths of session `session` a restore onto agent `agent` may take: `paths` when the
/// session holds only the agent's trees; in a session of several sources (agents multiplexed
/// onto one drive), only what lies under the agent's own trees, all of them when `paths` is
/// empty. An agent gets back only its own data.
fn agents_own(
    catalog: &coffer::catalog::Catalog,
    session: u64,
    agent: &str,
    paths: Vec<Vec<u8>>,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let source = catalog.session(session).map(|s| s.start().source.clone()).unwrap_or_default();
    let sources: Vec<&str> = source.split(' ').filter(|s| !s.is_empty()).collect();
    let own = format!("agent:{agent}:");
    let mine: Vec<&str> = sources.iter().filter_map(|s| s.strip_prefix(&own)).collect();
    if mine.is_empty() {
        anyhow::bail!(
            "session {session} backed up {source}, none of it agent {agent}'s: an agent gets back only its own data (restore it on the box instead)"
        );
    }
    if mine.len() == 1 && sources.len() == 1 {
        return Ok(paths);
    }
    let prefixes: Vec<Vec<u8>> =
        mine.iter().map(|root| coffer::pipeline::sources::agent_prefix(agent, root)).collect();
    if paths.is_empty() {
        return Ok(prefixes);
    }
    let under = |p: &[u8], pre: &[u8]| p == pre || (p.starts_with(pre) && p.get(pre.len()) == Some(&b'/'));
    if let Some(p) = paths.iter().find(|p| !prefixes.iter().any(|pre| under(p, pre))) {
        anyhow::bail!(
            "{} is not under agent {agent}'s trees in session {session} ({}): an agent gets back only its own data",
            String::from_utf8_lossy(p),
            prefixes.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(paths)
}

/// Where a restore onto agent `agent` goes: the agent's connection in the service.
fn agent_sink(ctx: &Ctx, agent: &str, dir: &str, compare: bool) -> anyhow::Result<RemoteTo> {
    let (Some(connected), Some(store)) = (&ctx.agents, &ctx.shared) else {
        anyhow::bail!(
            "a restore onto an agent goes through the running service, which the agents connect to: start it"
        );
    };
    let links =
        coffer::service::agents::Links { connected: connected.clone(), store: store.clone(), spool: None };
    let sink =
        coffer::service::agents::AgentSink::new(links, agent, dir, 0, compare).map_err(anyhow::Error::msg)?;
    Ok(RemoteTo(std::sync::Arc::new(sink)))
}

/// Runs `coffer verify`.
pub fn run_verify(ctx: &Ctx, a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let held = ctx.hold_state()?;
    let catalog = &*held.catalog();
    let session = session_arg(catalog, &a.session)?;
    let agent = match &a.compare {
        Some(dir) => coffer::pipeline::sources::agent_source(dir).map_err(anyhow::Error::msg)?,
        None => None,
    };
    // A compare with an agent's files: the agent reads them and compares, the box verifies
    // what it reads back on the way; only the agent's own trees of the session.
    let (paths, action) = match agent {
        Some((agent, dir)) => (
            agents_own(catalog, session, &agent, Vec::new())?,
            Action::Remote(agent_sink(ctx, &agent, &dir, true)?),
        ),
        None => (Vec::new(), Action::Verify(a.compare.clone())),
    };
    let indexes =
        indexes_for(ctx, catalog, coffer::store::State::indexes(&held), session, !paths.is_empty())?;
    let req = RestoreRequest { session, paths, action };
    let report = run(catalog, &indexes, &req)?;
    let interrupted = interrupted(catalog, session, true);
    print(ctx, "verify", session, &report, interrupted);
    Ok(exit(&report, interrupted))
}

/// For an interrupted session read whole: how many objects its writer committed (each object
/// once, however many segments it was split into). Reading back fewer is a failure.
fn interrupted(catalog: &coffer::catalog::Catalog, session: u64, whole: bool) -> Option<u64> {
    let s = catalog.session(session)?;
    let f = s.finish()?;
    (whole && f.status == SessionStatus::Interrupted).then(|| s.object_count())
}

fn ok(r: &RestoreReport, interrupted: Option<u64>) -> bool {
    r.failures.is_empty() && r.differences.is_empty() && interrupted.is_none_or(|n| n == r.objects)
}

fn exit(r: &RestoreReport, interrupted: Option<u64>) -> ExitCode {
    if ok(r, interrupted) { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn print(ctx: &Ctx, what: &str, session: u64, r: &RestoreReport, interrupted: Option<u64>) {
    let rate = r.bytes as f64 / r.seconds.max(1e-6) / 1e6;
    let tape = coffer::library::activity();
    if ctx.json {
        super::print_json(
            ctx,
            &json!({
                "command": what, "session": session, "ok": ok(r, interrupted),
                "interrupted": interrupted.is_some(), "committed": interrupted,
                "objects": r.objects, "bytes": r.bytes, "seconds": r.seconds, "mb_per_s": rate,
                "failures": r.failures, "differences": r.differences,
                "ownership_failures": r.fs.as_ref().map(|f| f.ownership_failures),
                "skipped_sockets": r.fs.as_ref().map(|f| f.skipped_sockets),
                "sessions": r.sessions, "tape": tape,
                "demux": r.demux.map(|d| json!({"read_bytes": d.read, "part_bytes": d.parts})),
            }),
        );
        return;
    }
    let verdict = if ok(r, interrupted) { "ok" } else { "FAILED" };
    outln!(
        ctx,
        "{what} of session {session}: {verdict}: {} objects, {}, {rate:.0} MB/s, {:.1} s",
        r.objects,
        human_bytes(r.bytes),
        r.seconds
    );
    if let Some(n) = interrupted {
        let done = if what == "restore" { "restored" } else { "verified" };
        outln!(ctx, "interrupted session: {n} objects committed, {} {done}", r.objects);
    }
    if r.sessions.len() > 1 {
        let list = r.sessions.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        outln!(
            ctx,
            "  read from sessions {list}: the incremental session's chain, each file from the newest"
        );
    }
    if let Some(d) = r.demux {
        outln!(
            ctx,
            "  demultiplexed: read {} of the {} in the multiplexed parts ({:.0}%)",
            human_bytes(d.read),
            human_bytes(d.parts),
            100.0 * d.read as f64 / d.parts.max(1) as f64
        );
    }
    for a in &tape {
        outln!(
            ctx,
            "  tape: library {}: {} seeks, {} data blocks read, {} robot moves",
            a.library,
            a.seeks,
            a.blocks_read,
            a.moves
        );
    }
    for f in r.failures.iter().take(50) {
        outln!(ctx, "  error: {f}");
    }
    for d in r.differences.iter().take(50) {
        outln!(ctx, "  differs: {d}");
    }
    let more = (r.failures.len() + r.differences.len()).saturating_sub(100);
    if more > 0 {
        outln!(ctx, "  … and {more} more (--json lists all)");
    }
    if let Some(fs) = &r.fs
        && fs.skipped_sockets > 0
    {
        outln!(
            ctx,
            "  {} sockets were recorded but not recreated (a socket belongs to a running program)",
            fs.skipped_sockets
        );
    }
    if let Some(fs) = &r.fs
        && fs.ownership_failures > 0
    {
        outln!(
            ctx,
            "  {} objects kept the restoring user as owner (run as root to restore owners)",
            fs.ownership_failures
        );
    }
}
