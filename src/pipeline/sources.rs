//! From the paths a person names to the sources of a backup: file or volume mode per path,
//! and a name prefix per tree when several share a session.

use std::collections::HashSet;
use std::path::PathBuf;

use super::backup::Source;
use super::baseline::SourceKey;
use crate::source::mode::{Chosen, RequestedMode, choose, probe};

/// Chooses file or volume mode for each path and names trees when there are several.
pub fn resolve(paths: &[PathBuf], mode: RequestedMode, file_threshold: u64) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for path in paths {
        if let Some((agent, root)) = agent_source(path)? {
            let prefix = if paths.len() > 1 {
                let name = agent_prefix(&agent, &root);
                if !names.insert(name.clone()) {
                    return Err(format!(
                        "two sources are named {}: back them up separately",
                        String::from_utf8_lossy(&name)
                    ));
                }
                Some(name)
            } else {
                None
            };
            out.push(Source::Agent { agent, root, prefix });
            continue;
        }
        let kind = probe(path).map_err(|e| format!("cannot back up {}: {e}", path.display()))?;
        match choose(path, &kind, mode, file_threshold)? {
            Chosen::Volume(dev) => out.push(Source::Volume(dev)),
            Chosen::Files => {
                let prefix = if paths.len() > 1 {
                    let canon = std::fs::canonicalize(path)
                        .map_err(|e| format!("cannot back up {}: {e}", path.display()))?;
                    let name = canon
                        .file_name()
                        .map(|n| n.as_encoded_bytes().to_vec())
                        .unwrap_or_else(|| b"root".to_vec());
                    if !names.insert(name.clone()) {
                        return Err(format!(
                            "two sources are named {}: back them up separately",
                            String::from_utf8_lossy(&name)
                        ));
                    }
                    Some(name)
                } else {
                    None
                };
                out.push(Source::Tree { root: path.clone(), prefix });
            }
        }
    }
    Ok(out)
}

/// The name an agent's tree goes under when several sources share a session: `AGENT:LAST`,
/// the last component of its root.
pub fn agent_prefix(agent: &str, root: &str) -> Vec<u8> {
    let last = root.rsplit('/').find(|c| !c.is_empty()).unwrap_or("root");
    format!("{agent}:{last}").into_bytes()
}

/// The agent and root of a source written `agent:NAME:/path`; `None` for a local path. The
/// root must be absolute and clean: the agent checks nothing of what the box asks.
pub fn agent_source(path: &std::path::Path) -> Result<Option<(String, String)>, String> {
    let Some(rest) = path.to_str().and_then(|s| s.strip_prefix("agent:")) else { return Ok(None) };
    let usage = || format!("'{}': an agent's source is agent:NAME:/absolute/path", path.display());
    let (agent, root) = rest.split_once(':').ok_or_else(usage)?;
    if !crate::catalog::agent_name_ok(agent) {
        return Err(usage());
    }
    let clean = root.starts_with('/')
        && root.len() <= crate::net::frame::MAX_ROOT
        && !root.contains('\0')
        && (root == "/" || root[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    if !clean {
        return Err(format!("{}: without '.', '..' or empty components", usage()));
    }
    Ok(Some((agent.to_owned(), root.to_owned())))
}

/// The key of the sources a person named: their canonical paths, so that a later incremental
/// backup of the same roots, however they are named, finds this one.
pub fn key(paths: &[PathBuf]) -> Result<SourceKey, String> {
    let canonical = paths
        .iter()
        .map(|p| match agent_source(p)? {
            // An agent's tree is named as written: the box cannot resolve its links.
            Some(_) => Ok(p.clone()),
            None => std::fs::canonicalize(p).map_err(|e| format!("cannot back up {}: {e}", p.display())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SourceKey::of_canonical_roots(&canonical))
}
