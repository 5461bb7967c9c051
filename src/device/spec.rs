//! Target specifications as people write them: `disk:DIR[,volume=SIZE][,pool=NAME]`,
//! `disk:/dev/sdX[,pool=NAME]` or `disk:IMAGE,raw` (one raw disk); disks also take
//! `rate=SIZE` (a write-rate cap) and `measure` (measure the write rate at start),
//! `nvram:PATH[,size=SIZE][,pool=NAME]`, `library:NAME[,pool=NAME][,block=SIZE][,drives=N]`
//! (a tape library of the board file: one writer per drive), `tape:/dev/nstN[,pool=][,block=]`
//! (one drive without a changer: the cartridge in it), `null:`. Sizes take K, M, G, T suffixes (powers of
//! 1024).

use std::path::PathBuf;

use super::disk::{DEFAULT_VOLUME_SIZE, DiskMedia, DiskTarget};
use super::null::NullTarget;
use super::nvram::{NvramMedia, NvramTarget};
use super::tape::{TapeMedia, TapeTarget};
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
        /// `dir` is one raw disk (an image file given `,raw`; block devices are raw anyway).
        raw: bool,
        /// Write at most this many bytes per second.
        rate: Option<u64>,
        /// Measure the write rate at start, for the planner.
        measure: bool,
    },
    /// A persistent-memory region or file used as a ring of session parts.
    Nvram {
        /// The file or device (absolute).
        path: PathBuf,
        /// Size to create a missing file with; for an existing one, the size it must have.
        size: Option<u64>,
        /// Media pool.
        pool: String,
    },
    /// The cartridges of one pool in a tape library of the board, one writer per drive.
    Library {
        /// The library's name in the board file.
        name: String,
        /// Media pool.
        pool: String,
        /// Block size for cartridges labelled now.
        block: usize,
        /// Write through at most this many drives (default: every online drive).
        drives: Option<usize>,
    },
    /// One tape drive without a changer (`/dev/nstN` or `/dev/sgN`): the cartridge in it.
    Tape {
        /// The drive's device node.
        path: String,
        /// Media pool.
        pool: String,
        /// Block size for a cartridge labelled now.
        block: usize,
    },
    /// Discards everything.
    Null,
}

impl std::str::FromStr for TargetSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<TargetSpec, DeviceError> {
        let bad = |detail: &str| DeviceError::BadSpec { spec: s.to_owned(), detail: detail.to_owned() };
        let (kind, rest) =
            s.split_once(':').ok_or_else(|| bad("expected KIND:..., e.g. disk:/srv/backup"))?;
        let mut parts = rest.split(',');
        let path = parts.next().unwrap_or("");
        let mut volume_size = DEFAULT_VOLUME_SIZE;
        let mut size = None;
        let mut pool = DEFAULT_POOL.to_owned();
        let mut raw = false;
        let mut rate = None;
        let mut measure = false;
        let mut block = super::tape::DEFAULT_TAPE_BLOCK;
        let mut drives = None;
        for opt in parts {
            if kind == "disk" && opt == "raw" {
                raw = true;
                continue;
            }
            if kind == "disk" && opt == "measure" {
                measure = true;
                continue;
            }
            let (k, v) = opt.split_once('=').ok_or_else(|| bad("options are key=value"))?;
            match (kind, k) {
                ("disk", "volume") => {
                    volume_size = parse_size(v).ok_or_else(|| bad("volume size like 4G"))?
                }
                ("disk", "rate") => {
                    rate = Some(parse_size(v).ok_or_else(|| bad("rate like 100M (bytes per second)"))?)
                }
                ("nvram", "size") => size = Some(parse_size(v).ok_or_else(|| bad("region size like 256M"))?),
                ("library" | "tape", "block") => {
                    block = parse_size(v)
                        .map(|b| b as usize)
                        .filter(|b| super::tape::TAPE_BLOCK_RANGE.contains(b) && b % 4096 == 0)
                        .ok_or_else(|| bad("block size from 64K to 1M, a multiple of 4K"))?
                }
                ("library", "drives") => {
                    drives = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("drives=N, N ≥ 1"))?)
                }
                ("disk" | "nvram" | "library" | "tape", "pool") if !v.is_empty() && v.len() <= 64 => {
                    pool = v.to_owned()
                }
                _ => return Err(bad(&format!("unknown option '{k}' for {kind} targets"))),
            }
        }
        match kind {
            "disk" if path.is_empty() => Err(bad("disk targets need a directory: disk:/srv/backup")),
            "disk" => {
                let dir = std::path::absolute(path).map_err(|e| bad(&e.to_string()))?;
                let raw = raw || super::disk::is_block_device(&dir);
                if raw && measure {
                    return Err(bad("measure writes a scratch file: it is for directories, not raw disks"));
                }
                Ok(TargetSpec::Disk { dir, volume_size, pool, raw, rate, measure })
            }
            "nvram" if path.is_empty() => {
                Err(bad("nvram targets need a file or device: nvram:/dev/pmem0 or nvram:/srv/coffer.nvr"))
            }
            "nvram" => {
                let path = std::path::absolute(path).map_err(|e| bad(&e.to_string()))?;
                Ok(TargetSpec::Nvram { path, size, pool })
            }
            "library" if path.is_empty() => {
                Err(bad("library targets name a library of the board: library:vlib"))
            }
            "library" => Ok(TargetSpec::Library { name: path.to_owned(), pool, block, drives }),
            "tape" if !path.starts_with("/dev/") => Err(bad("tape targets name a drive: tape:/dev/nst0")),
            "tape" => Ok(TargetSpec::Tape { path: path.to_owned(), pool, block }),
            "null" if path.is_empty() => Ok(TargetSpec::Null),
            "null" => Err(bad("null: takes nothing after the colon")),
            _ => Err(bad(
                "unknown target kind: use disk:DIR, nvram:PATH, library:NAME, tape:/dev/nstN or null:",
            )),
        }
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Disk { dir, raw, .. } => f.write_str(&super::disk::describe(dir, *raw)),
            TargetSpec::Nvram { path, .. } => write!(f, "nvram:{}", path.display()),
            TargetSpec::Library { name, .. } => write!(f, "library:{name}"),
            TargetSpec::Tape { path, .. } => write!(f, "tape:{path}"),
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

/// Opens the writers of a target: one, or for a library one per drive it may use.
pub fn open_targets(spec: &TargetSpec) -> Result<Vec<Box<dyn Target>>, DeviceError> {
    match spec {
        TargetSpec::Library { name, pool, block, drives } => {
            let lib = crate::library::open(name)?;
            let online = lib.drive_counts().1;
            let n = drives.map_or(online, |d| d.min(online)).max(1);
            Ok((0..n)
                .map(|k| Box::new(TapeTarget::new(lib.clone(), pool, *block, k)) as Box<dyn Target>)
                .collect())
        }
        _ => Ok(vec![open_target(spec)?]),
    }
}

/// Opens a target for writing (a library: one writer).
pub fn open_target(spec: &TargetSpec) -> Result<Box<dyn Target>, DeviceError> {
    Ok(match spec {
        TargetSpec::Library { name, pool, block, .. } => {
            Box::new(TapeTarget::new(crate::library::open(name)?, pool, *block, 0))
        }
        TargetSpec::Tape { path, pool, block } => {
            Box::new(TapeTarget::new(crate::library::open_drive(path)?, pool, *block, 0))
        }
        TargetSpec::Disk { dir, pool, raw: true, rate, .. } => {
            Box::new(DiskTarget::raw(dir, pool)?.with_rate(*rate))
        }
        TargetSpec::Disk { dir, volume_size, pool, raw: false, rate, measure } => {
            let mut t = DiskTarget::new(dir, *volume_size, pool)?.with_rate(*rate);
            if *measure {
                t.measure_rate()?;
            }
            Box::new(t)
        }
        TargetSpec::Nvram { path, size, pool } => Box::new(NvramTarget::new(path, *size, pool)?),
        TargetSpec::Null => Box::new(NullTarget::new()),
    })
}

/// Opens the media at a location the catalog recorded (a target's description).
pub fn open_media(location: &str) -> Result<Box<dyn Media>, DeviceError> {
    match location.parse::<TargetSpec>()? {
        TargetSpec::Disk { dir, raw: true, .. } => Ok(Box::new(DiskMedia::raw(&dir))),
        TargetSpec::Disk { dir, .. } => Ok(Box::new(DiskMedia::new(&dir))),
        TargetSpec::Nvram { path, .. } => Ok(Box::new(NvramMedia::new(&path))),
        TargetSpec::Library { name, .. } => Ok(Box::new(TapeMedia::new(crate::library::open(&name)?))),
        TargetSpec::Tape { path, .. } => Ok(Box::new(TapeMedia::new(crate::library::open_drive(&path)?))),
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
                pool: "weekly".into(),
                raw: false,
                rate: None,
                measure: false,
            }
        );
        assert!(matches!("disk:/srv/b,measure".parse().unwrap(), TargetSpec::Disk { measure: true, .. }));
        assert!("disk:/srv/b.img,raw,measure".parse::<TargetSpec>().is_err());
        let s: TargetSpec = "disk:/srv/b,rate=100M".parse().unwrap();
        assert!(matches!(s, TargetSpec::Disk { rate: Some(r), .. } if r == 100 << 20));
        let s: TargetSpec = "disk:/srv/disk.img,raw".parse().unwrap();
        assert!(matches!(s, TargetSpec::Disk { raw: true, .. }));
        assert_eq!(s.to_string(), "disk:/srv/disk.img,raw");
        assert_eq!("null:".parse::<TargetSpec>().unwrap(), TargetSpec::Null);
        let s: TargetSpec = "nvram:/dev/pmem0,size=64M,pool=fast".parse().unwrap();
        assert_eq!(
            s,
            TargetSpec::Nvram { path: "/dev/pmem0".into(), size: Some(64 << 20), pool: "fast".into() }
        );
        assert_eq!(s.to_string(), "nvram:/dev/pmem0");
        assert_eq!(
            "nvram:/x".parse::<TargetSpec>().unwrap(),
            TargetSpec::Nvram { path: "/x".into(), size: None, pool: DEFAULT_POOL.into() }
        );
        assert_eq!(
            "tape:/dev/nst0,pool=weekly".parse::<TargetSpec>().unwrap(),
            TargetSpec::Tape { path: "/dev/nst0".into(), pool: "weekly".into(), block: 256 << 10 }
        );
        assert!(matches!(
            "library:vlib,block=1M,drives=1".parse().unwrap(),
            TargetSpec::Library { block: 1048576, drives: Some(1), .. }
        ));
        for bad in [
            "tape:nst0",
            "library:",
            "library:vlib,block=3M",
            "library:vlib,drives=0",
            "disk:",
            "tape",
            "disk:/x,volume=lots",
            "disk:/x,colour=red",
            "ftp:/x",
            "null:/x",
            "nvram:",
            "nvram:/x,size=big",
            "nvram:/x,volume=1G",
            "disk:/x,size=1G",
        ] {
            let e = bad.parse::<TargetSpec>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("99999999999T"), None);
    }
}
