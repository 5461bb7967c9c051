//! Target specifications as people write them: `disk:DIR[,volume=SIZE][,pool=NAME]`,
//! `nvram:PATH[,size=SIZE][,pool=NAME]`, `null:`. Sizes take K, M, G, T suffixes (powers of
//! 1024).

use std::path::PathBuf;

use super::disk::{DEFAULT_VOLUME_SIZE, DiskMedia, DiskTarget};
use super::null::NullTarget;
use super::{DeviceError, Media, Target};

/// Default media pool.
pub const DEFAULT_POOL: &str = "default";

/// A parsed target specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// Volume files in a directory.
    Disk {
        /// The directory (absolute).
        dir: PathBuf,
        /// Largest volume file.
        volume_size: u64,
        /// Media pool.
        pool: String,
    },
    /// Discards everything.
    Null,
}

impl std::str::FromStr for TargetSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<TargetSpec, DeviceError> {
        let bad = |detail: &str| DeviceError::BadSpec {
            spec: s.to_owned(),
            detail: detail.to_owned(),
        };
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("expected KIND:..., e.g. disk:/srv/backup"))?;
        let mut parts = rest.split(',');
        let path = parts.next().unwrap_or("");
        let mut volume_size = DEFAULT_VOLUME_SIZE;
        let mut pool = DEFAULT_POOL.to_owned();
        for opt in parts {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| bad("options are key=value"))?;
            match (kind, k) {
                ("disk", "volume") => {
                    volume_size = parse_size(v).ok_or_else(|| bad("volume size like 4G"))?
                }
                ("disk", "pool") if !v.is_empty() && v.len() <= 64 => pool = v.to_owned(),
                _ => return Err(bad(&format!("unknown option '{k}' for {kind} targets"))),
            }
        }
        match kind {
            "disk" if path.is_empty() => {
                Err(bad("disk targets need a directory: disk:/srv/backup"))
            }
            "disk" => {
                let dir = std::path::absolute(path).map_err(|e| bad(&e.to_string()))?;
                Ok(TargetSpec::Disk {
                    dir,
                    volume_size,
                    pool,
                })
            }
            "null" if path.is_empty() => Ok(TargetSpec::Null),
            "null" => Err(bad("null: takes nothing after the colon")),
            _ => Err(bad("unknown target kind: use disk:DIR or null:")),
        }
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Disk { dir, .. } => write!(f, "disk:{}", dir.display()),
            TargetSpec::Null => write!(f, "null:"),
        }
    }
}

/// Parses `123`, `64K`, `4M`, `8G`, `1T`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        b'T' | b't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Opens a target for writing.
pub fn open_target(spec: &TargetSpec) -> Result<Box<dyn Target>, DeviceError> {
    Ok(match spec {
        TargetSpec::Disk {
            dir,
            volume_size,
            pool,
        } => Box::new(DiskTarget::new(dir, *volume_size, pool)?),
        TargetSpec::Null => Box::new(NullTarget::new()),
    })
}

/// Opens the media at a location the catalog recorded (a target's description).
pub fn open_media(location: &str) -> Result<Box<dyn Media>, DeviceError> {
    match location.parse::<TargetSpec>()? {
        TargetSpec::Disk { dir, .. } => Ok(Box::new(DiskMedia::new(&dir))),
        TargetSpec::Null => Err(DeviceError::BadSpec {
            spec: location.to_owned(),
            detail: "a null target keeps nothing to read back".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let s: TargetSpec = "disk:/srv/b,volume=64M,pool=weekly".parse().unwrap();
        assert_eq!(
            s,
            TargetSpec::Disk {
                dir: "/srv/b".into(),
                volume_size: 64 << 20,
                pool: "weekly".into()
            }
        );
        assert_eq!("null:".parse::<TargetSpec>().unwrap(), TargetSpec::Null);
        for bad in [
            "disk:",
            "tape",
            "disk:/x,volume=lots",
            "disk:/x,colour=red",
            "ftp:/x",
            "null:/x",
        ] {
            let e = bad.parse::<TargetSpec>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("99999999999T"), None);
    }
}
