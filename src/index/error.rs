//! Index errors: what a caller branches on (damage, a newer format, I/O, a caller's mistake).

use std::io;
use std::path::{Path, PathBuf};

use super::INDEX_VERSION;

/// Why bytes do not decode as a part of an index file (the pure decoders' error; the file
/// layer adds the file and the byte offset in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break a rule of the format: damage, or not an index at all.
    #[error("{what} (byte {at} of the part)")]
    Damaged {
        /// Offset within the bytes given to the decoder.
        at: usize,
        /// What is wrong.
        what: String,
    },
    /// Written by a newer format version.
    #[error("format version {version}, newer than {INDEX_VERSION}")]
    NewerVersion {
        /// The version found.
        version: u16,
    },
}

impl DecodeError {
    /// A [`DecodeError::Damaged`] at `at`.
    pub(crate) fn damaged(at: usize, what: impl Into<String>) -> DecodeError {
        DecodeError::Damaged { at, what: what.into() }
    }

    /// The error for the file `file`, whose decoded part starts at byte `base`.
    pub(crate) fn in_file(self, file: &Path, base: u64) -> IndexError {
        match self {
            DecodeError::Damaged { at, what } => {
                IndexError::Corrupt { file: file.to_owned(), offset: base + at as u64, what }
            }
            DecodeError::NewerVersion { version } => {
                IndexError::NewerVersion { file: file.to_owned(), version }
            }
        }
    }
}

/// Why an index file could not be written, opened or read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An operating-system call failed on an index file.
    #[error("index {op} of {} failed: {source}", file.display())]
    Io {
        /// File it failed on.
        file: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The file's bytes break the format: damaged, truncated or not an index.
    #[error(
        "index file {} is damaged at byte {offset}: {what}; the session's data on its media is \
         not affected: `coffer --state NEW_DIR scan TARGET` rebuilds its catalog from the media",
        file.display()
    )]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset in the file of the damaged part (for a block: the block's start).
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// Written by a newer coffer.
    #[error(
        "index file {} has format version {version}, but this coffer reads up to version \
         {INDEX_VERSION}: it was written by a newer coffer; upgrade coffer to read it",
        file.display()
    )]
    NewerVersion {
        /// The file.
        file: PathBuf,
        /// The version found.
        version: u16,
    },
    /// An entry was pushed after one that sorts after it; it was not written.
    #[error(
        "entry {entry} refused by index {}: it sorts before the entry pushed before it \
         ({previous}); entries must come in index order (a caller's bug); nothing was written",
        file.display()
    )]
    OutOfOrder {
        /// The file being written.
        file: PathBuf,
        /// The refused entry's path.
        entry: String,
        /// The path of the entry before it.
        previous: String,
    },
    /// An entry the format cannot hold; it was not written.
    #[error("entry {entry} refused by index {}: {what}; nothing was written", file.display())]
    Invalid {
        /// The file being written.
        file: PathBuf,
        /// The refused entry's path, as far as it can be shown.
        entry: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The file would exceed a limit of the format.
    #[error("index {} would exceed {what}; split the session's index", file.display())]
    TooLarge {
        /// The file being written.
        file: PathBuf,
        /// Which limit.
        what: String,
    },
}

impl IndexError {
    /// Wraps an I/O error with the file and operation.
    pub(crate) fn io(file: &Path, op: &'static str) -> impl FnOnce(io::Error) -> IndexError {
        let file = file.to_owned();
        move |source| IndexError::Io { file, op, source }
    }

    /// Whether the file's contents are at fault (damage or a newer format), as opposed to the
    /// OS or the caller: the file has to be removed and rebuilt, or coffer upgraded.
    pub fn is_damage(&self) -> bool {
        matches!(self, IndexError::Corrupt { .. } | IndexError::NewerVersion { .. })
    }
}

/// A path as error messages show it: lossy UTF-8, cut to a readable length.
pub(crate) fn shown(path: &[u8]) -> String {
    const SHOWN_MAX: usize = 200;
    let s = String::from_utf8_lossy(&path[..path.len().min(SHOWN_MAX)]).into_owned();
    if path.len() > SHOWN_MAX { format!("{s}…") } else { s }
}
