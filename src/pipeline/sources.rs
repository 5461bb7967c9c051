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

/// The key of the sources a person named: their canonical paths, so that a later incremental
/// backup of the same roots, however they are named, finds this one.
pub fn key(paths: &[PathBuf]) -> Result<SourceKey, String> {
    let canonical = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).map_err(|e| format!("cannot back up {}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SourceKey::of_canonical_roots(&canonical))
}
