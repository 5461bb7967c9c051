//! `coffer ls [SESSION [PATH]]`: sessions, or the objects of one (at and under a path), read
//! from the session's index file.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use coffer::catalog::SessionKind;
use coffer::index::Entry;
use serde_json::json;

use super::{Ctx, human_bytes, session_arg};
use crate::outln;

/// Arguments of `coffer ls`.
#[derive(Debug, ClapArgs)]
pub struct LsArgs {
    /// A session id or `latest`; without it, all sessions are listed.
    pub session: Option<String>,
    /// Only the objects at this path and under it (relative to the backup's source root, as
    /// `coffer ls SESSION` shows them).
    #[arg(requires = "session")]
    pub path: Option<String>,
    /// List the media the catalog knows instead: barcode, kind, pool, where, bytes used (how
    /// far its committed data goes), state, sessions on it.
    #[arg(long, conflicts_with = "session")]
    pub media: bool,
}

/// Runs `coffer ls`.
pub fn run(ctx: &Ctx, a: LsArgs) -> anyhow::Result<ExitCode> {
    let held = ctx.hold_state()?;
    let c = &*held.catalog();
    if a.media {
        media(ctx, c);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(s) = a.session else {
        if ctx.json {
            let rows: Vec<_> = c
                .sessions()
                .map(|s| {
                    let f = s.finish();
                    let (kind, base) = match s.start().kind {
                        SessionKind::Full => ("full", None),
                        SessionKind::Incremental { base } => ("incremental", Some(base)),
                    };
                    json!({
                        "session": s.id(), "job": s.start().job, "started": s.start().started, "source": s.start().source,
                        "kind": kind, "base": base,
                        "status": f.map_or("running".into(), |f| format!("{:?}", f.status).to_lowercase()),
                        "objects": s.object_count(), "bytes_in": f.map(|f| f.raw_bytes),
                        "index_pruned": s.index_pruned().is_some(),
                        "bytes_stored": f.map(|f| f.stored_bytes),
                        "parts": s.parts().map(|p| json!({
                            "stream": p.stream, "part": p.part, "position": p.position,
                            "barcode": c.medium(p.medium).map(|m| m.barcode()),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            super::print_json(ctx, &json!(rows));
        } else {
            outln!(
                ctx,
                "{:>8}  {:<10}  {:>9}  {:>10}  {:>10}  source",
                "session",
                "status",
                "objects",
                "in",
                "stored"
            );
            for s in c.sessions() {
                let f = s.finish();
                let status = f.map_or("running".into(), |f| format!("{:?}", f.status).to_lowercase());
                let mut kind = match s.start().kind {
                    SessionKind::Full => String::new(),
                    SessionKind::Incremental { base } => format!(" (incremental on {base})"),
                };
                if s.index_pruned().is_some() {
                    kind.push_str(" [index pruned]");
                }
                outln!(
                    ctx,
                    "{:>8}  {:<10}  {:>9}  {:>10}  {:>10}  {}{kind}",
                    s.id(),
                    status,
                    s.object_count(),
                    f.map_or("-".into(), |f| human_bytes(f.raw_bytes)),
                    f.map_or("-".into(), |f| human_bytes(f.stored_bytes)),
                    s.start().source
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let id = session_arg(c, &s)?;
    let entries = coffer::store::State::indexes(&held).session(c, id)?;
    let path = a.path.as_deref().map(|p| p.trim_end_matches('/').trim_start_matches("./").as_bytes());
    let objects = entries.under(path.unwrap_or(b"")).filter_map(|e| match e {
        Ok(Entry::Object(o)) => Some(Ok(o)),
        Ok(Entry::Kept(_)) => None,
        Err(e) => Some(Err(e)),
    });
    if ctx.json {
        let rows: Vec<_> = objects
            .map(|o| {
                let o = o?;
                Ok(
                json!({
                    "id": o.id, "path": String::from_utf8_lossy(&o.path), "kind": format!("{:?}", o.kind).to_lowercase(),
                    "size": o.size, "mtime": o.mtime, "segment_offset": o.segment_offset, "length": o.length,
                    "stream": o.stream, "part": o.part, "position": o.position,
                }))
            })
            .collect::<Result<Vec<_>, coffer::index::IndexError>>()?;
        nothing_under(id, a.path.as_deref(), rows.len())?;
        super::print_json(ctx, &json!(rows));
    } else {
        let mut listed = 0;
        for o in objects {
            let o = o?;
            let kind = format!("{:?}", o.kind).to_lowercase();
            outln!(ctx, "{kind:<10} {:>12}  {}", o.size, String::from_utf8_lossy(&o.path));
            listed += 1;
        }
        nothing_under(id, a.path.as_deref(), listed)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A path that names nothing in the session is an error, not an empty list.
fn nothing_under(session: u64, path: Option<&str>, listed: usize) -> anyhow::Result<()> {
    match path {
        Some(p) if listed == 0 => anyhow::bail!(
            "session {session} holds no object at or under {p:?} (paths are relative to the backup's \
             source root: `coffer ls {session}` lists them)"
        ),
        _ => Ok(()),
    }
}

/// `coffer ls --media`.
fn media(ctx: &Ctx, c: &coffer::catalog::Catalog) {
    let lower = |d: &dyn std::fmt::Debug| format!("{d:?}").to_lowercase();
    if ctx.json {
        let rows: Vec<_> = c
            .media()
            .map(|m| {
                let i = m.info();
                json!({
                    "barcode": m.barcode(), "kind": lower(&i.kind), "pool": i.pool, "location": i.location,
                    "capacity": i.capacity, "used": m.used(), "state": lower(&m.state()),
                    "sessions": c.sessions_on(m.id()).map(|s| s.id()).collect::<Vec<_>>(),
                })
            })
            .collect();
        super::print_json(ctx, &json!(rows));
        return;
    }
    outln!(
        ctx,
        "{:<20}  {:<6}  {:<10}  {:>10}  {:<9}  {:>8}  location",
        "barcode",
        "kind",
        "pool",
        "used",
        "state",
        "sessions"
    );
    for m in c.media() {
        let i = m.info();
        outln!(
            ctx,
            "{:<20}  {:<6}  {:<10}  {:>10}  {:<9}  {:>8}  {}",
            m.barcode(),
            lower(&i.kind),
            i.pool,
            human_bytes(m.used()),
            lower(&m.state()),
            c.sessions_on(m.id()).count(),
            i.location
        );
    }
}
