//! Journal errors: what a caller branches on (damage, I/O, limits).

use std::io;

/// Why the journal could not be opened, written or committed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An operating-system call failed on a journal file.
    #[error("journal {op} of {file} failed: {source}")]
    Io {
        /// File it failed on.
        file: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Committed records are unreadable: the journal refuses to open for writing.
    #[error(
        "journal file {file} is damaged at byte {offset}: {reason}; records from there on \
         cannot be trusted"
    )]
    Damaged {
        /// File holding the damage.
        file: String,
        /// Byte offset of the first damaged record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record is intact but the caller could not apply it (unknown kind from a newer coffer,
    /// or a record inconsistent with the state before it).
    #[error("journal record {seq} in {file} at byte {offset} cannot be applied: {reason}")]
    Apply {
        /// File holding the record.
        file: String,
        /// Its byte offset.
        offset: u64,
        /// Its sequence number.
        seq: u64,
        /// The caller's reason.
        reason: String,
    },
    /// No journal exists where one was to be read.
    #[error("no journal in {dir}")]
    Missing {
        /// The directory.
        dir: String,
    },
    /// A record over [`super::MAX_PAYLOAD`] or a group over [`super::MAX_GROUP_BYTES`].
    #[error("journal {what} of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Record or group.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A commit failed earlier: what is on disk is unknown until the journal is reopened.
    #[error("journal unusable after a failed commit: reopen it to recover")]
    Poisoned,
    /// The journal was opened read-only.
    #[error("journal is open read-only (it was damaged or is being inspected)")]
    ReadOnly,
}

impl JournalError {
    /// Wraps an I/O error with the file and operation.
    pub(crate) fn io(file: &str, op: &'static str) -> impl FnOnce(io::Error) -> JournalError {
        let file = file.to_owned();
        move |source| JournalError::Io { file, op, source }
    }

    /// Whether the journal's contents are at fault (as opposed to the OS or a limit).
    pub fn is_damage(&self) -> bool {
        matches!(self, JournalError::Damaged { .. } | JournalError::Apply { .. })
    }
}
