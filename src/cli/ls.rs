//! `coffer ls [SESSION]`: sessions, or the objects of one.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use coffer::catalog::SessionKind;
use serde_json::json;

use super::{Ctx, human_bytes, session_arg};

/// Arguments of `coffer ls`.
#[derive(Debug, ClapArgs)]
pub struct LsArgs {
    /// A session id or `latest`; without it, all sessions are listed.
    pub session: Option<String>,
}

/// Runs `coffer ls`.
pub fn run(ctx: &Ctx, a: LsArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let c = store.catalog();
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
                        "session": s.id(), "started": s.start().started, "source": s.start().source,
                        "kind": kind, "base": base,
                        "status": f.map_or("running".into(), |f| format!("{:?}", f.status).to_lowercase()),
                        "objects": s.objects().len(), "bytes_in": f.map(|f| f.raw_bytes),
                        "bytes_stored": f.map(|f| f.stored_bytes),
                    })
                })
                .collect();
            super::print_json(&json!(rows));
        } else {
            println!(
                "{:>8}  {:<10}  {:>9}  {:>10}  {:>10}  source",
                "session", "status", "objects", "in", "stored"
            );
            for s in c.sessions() {
                let f = s.finish();
                let status = f.map_or("running".into(), |f| format!("{:?}", f.status).to_lowercase());
                let kind = match s.start().kind {
                    SessionKind::Full => String::new(),
                    SessionKind::Incremental { base } => format!(" (incremental on {base})"),
                };
                println!(
                    "{:>8}  {:<10}  {:>9}  {:>10}  {:>10}  {}{kind}",
                    s.id(),
                    status,
                    s.objects().len(),
                    f.map_or("-".into(), |f| human_bytes(f.raw_bytes)),
                    f.map_or("-".into(), |f| human_bytes(f.stored_bytes)),
                    s.start().source
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let id = session_arg(&store, &s)?;
    let objects = c.objects(id).unwrap_or(&[]);
    if ctx.json {
        let rows: Vec<_> = objects
            .iter()
            .map(|o| {
                json!({
                    "id": o.id, "path": String::from_utf8_lossy(&o.path), "kind": format!("{:?}", o.kind).to_lowercase(),
                    "size": o.size, "mtime": o.mtime, "segment_offset": o.segment_offset, "length": o.length,
                    "stream": o.stream, "part": o.part, "position": o.position,
                })
            })
            .collect();
        super::print_json(&json!(rows));
    } else {
        for o in objects {
            let kind = format!("{:?}", o.kind).to_lowercase();
            println!("{kind:<10} {:>12}  {}", o.size, String::from_utf8_lossy(&o.path));
        }
    }
    Ok(ExitCode::SUCCESS)
}
