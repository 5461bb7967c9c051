//! The boundary between SCSI as data and a device: the [`Transport`] trait (SG_IO, the
//! simulator) and [`issue`], the one function that sends a command. `issue` checks that the
//! buffer fits the CDB, hands both to the transport, and turns the [`Completion`] into a
//! [`Response`] or a [`ScsiError`] carrying the decoded sense and its [`Outcome`].
//!
//! Fault model: a transport fails (device gone, timeout, adapter error) with a
//! [`TransportError`]; a device answers with a non-GOOD status, sense that may be missing or
//! malformed, and fewer bytes than asked (the residual). Informational sense (NO SENSE without
//! filemark/EOM/ILI, RECOVERED ERROR) completes the command: it comes back in
//! [`Response::sense`], not as an error.

use std::time::Duration;

use super::cdb::{Cdb, Direction};
use super::sense::{self, Outcome, Sense, SenseError};

/// The data buffer of one command.
#[derive(Debug)]
pub enum DataBuf<'a> {
    /// No data phase.
    None,
    /// Data comes from the device into this buffer.
    In(&'a mut [u8]),
    /// Data goes from this buffer to the device.
    Out(&'a [u8]),
}

impl DataBuf<'_> {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            DataBuf::None => 0,
            DataBuf::In(b) => b.len(),
            DataBuf::Out(b) => b.len(),
        }
    }

    /// It holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which way it moves data.
    pub fn direction(&self) -> Direction {
        match self {
            DataBuf::None => Direction::None,
            DataBuf::In(_) => Direction::FromDevice,
            DataBuf::Out(_) => Direction::ToDevice,
        }
    }
}

/// SCSI status of a completed command (SAM-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0x00.
    Good,
    /// 0x02: sense data says why.
    CheckCondition,
    /// 0x04.
    ConditionMet,
    /// 0x08: the device cannot take the command now.
    Busy,
    /// 0x18: another initiator holds a reservation.
    ReservationConflict,
    /// 0x28: the device's task set is full.
    TaskSetFull,
    /// 0x30.
    AcaActive,
    /// 0x40: aborted by another initiator.
    TaskAborted,
    /// Anything else.
    Other(u8),
}

impl Status {
    /// The status of status byte `b`.
    pub fn from_byte(b: u8) -> Status {
        match b {
            0x00 => Status::Good,
            0x02 => Status::CheckCondition,
            0x04 => Status::ConditionMet,
            0x08 => Status::Busy,
            0x18 => Status::ReservationConflict,
            0x28 => Status::TaskSetFull,
            0x30 => Status::AcaActive,
            0x40 => Status::TaskAborted,
            other => Status::Other(other),
        }
    }

    /// Its status byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Status::Good => 0x00,
            Status::CheckCondition => 0x02,
            Status::ConditionMet => 0x04,
            Status::Busy => 0x08,
            Status::ReservationConflict => 0x18,
            Status::TaskSetFull => 0x28,
            Status::AcaActive => 0x30,
            Status::TaskAborted => 0x40,
            Status::Other(b) => b,
        }
    }
}

/// What a transport reports for a command the device answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The SCSI status.
    pub status: Status,
    /// Sense bytes (with CHECK CONDITION), at most [`sense::MAX_SENSE_LEN`].
    pub sense: Vec<u8>,
    /// Bytes of the data phase not transferred.
    pub residual: usize,
}

impl Completion {
    /// GOOD status with `residual` bytes not transferred.
    pub fn good(residual: usize) -> Completion {
        Completion { status: Status::Good, sense: Vec::new(), residual }
    }

    /// CHECK CONDITION with `sense` and `residual` bytes not transferred.
    pub fn check(sense: Vec<u8>, residual: usize) -> Completion {
        Completion { status: Status::CheckCondition, sense, residual }
    }
}

/// Why a transport could not deliver a command or its answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The device node could not be opened.
    #[error("cannot open {path}: {source}{hint}")]
    Open {
        /// The device path.
        path: String,
        /// The OS error.
        source: std::io::Error,
        /// What to do (a permission or path hint, or empty).
        hint: &'static str,
    },
    /// The file does not take SCSI commands.
    #[error("{path} is not a SCSI generic device ({source}); give a /dev/sgN or /dev/nstN path")]
    NotScsi {
        /// The path.
        path: String,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The kernel refused the SG_IO request.
    #[error("SG_IO on {path} failed: {source}")]
    Io {
        /// The device path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command did not complete within its timeout; the device's state is unknown.
    #[error("no answer within {timeout:?}: the command was aborted, the device's position is unknown")]
    Timeout {
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The host adapter or transport reported an error (a `DID_*` host byte on Linux).
    #[error("host adapter error {code:#04x} ({meaning})")]
    Host {
        /// The host status.
        code: u16,
        /// What it means.
        meaning: &'static str,
    },
    /// The driver reported an error (a `DRIVER_*` byte on Linux).
    #[error("driver error {code:#04x}")]
    Driver {
        /// The driver status.
        code: u16,
    },
    /// The transport failed otherwise (the simulator's injected faults).
    #[error("{0}")]
    Other(String),
}

/// Linux host status codes after which the same command can be sent again.
const RETRYABLE_HOST: [u16; 6] = [
    0x02, // DID_BUS_BUSY
    0x08, // DID_RESET
    0x0B, // DID_SOFT_ERROR
    0x0C, // DID_IMM_RETRY
    0x0D, // DID_REQUEUE
    0x0E, // DID_TRANSPORT_DISRUPTED
];

impl TransportError {
    /// The transport suggests the same command may succeed if sent again. Tape callers must
    /// still check the position: a command cut off by a reset may have moved the tape.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TransportError::Host { code, .. } if RETRYABLE_HOST.contains(code))
    }
}

/// Something that runs SCSI commands: the Linux SG_IO device, or the simulator.
pub trait Transport {
    /// Runs `cdb` with `data`, whose length is exactly the CDB's transfer length and whose
    /// direction matches it ([`issue`] guarantees both).
    fn execute(&mut self, cdb: &Cdb, data: DataBuf<'_>) -> Result<Completion, TransportError>;
}

/// A command that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Data bytes moved (transfer length minus residual).
    pub transferred: usize,
    /// Informational sense that came with a completed command (NO SENSE, RECOVERED ERROR),
    /// e.g. 00/17 cleaning requested.
    pub sense: Option<Sense>,
}

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ScsiError {
    /// CHECK CONDITION: the device said why.
    #[error("{command}: {sense}")]
    Check {
        /// The command's name.
        command: &'static str,
        /// The decoded sense.
        sense: Sense,
        /// What it means.
        outcome: Outcome,
        /// Data bytes moved before the condition (a read stopped at a filemark).
        transferred: usize,
    },
    /// CHECK CONDITION with sense that cannot be decoded.
    #[error("{command}: CHECK CONDITION without usable sense data ({source})")]
    BadSense {
        /// The command's name.
        command: &'static str,
        /// Why the sense could not be decoded.
        source: SenseError,
        /// Data bytes moved.
        transferred: usize,
    },
    /// BUSY or TASK SET FULL: the device cannot take the command now.
    #[error("{command}: device busy ({status:?}); retry shortly")]
    Busy {
        /// The command's name.
        command: &'static str,
        /// Which status.
        status: Status,
    },
    /// RESERVATION CONFLICT: another host or program has reserved the device.
    #[error(
        "{command}: reservation conflict: another host or program has reserved the device; release it there"
    )]
    ReservationConflict {
        /// The command's name.
        command: &'static str,
    },
    /// Another status coffer does not expect (ACA ACTIVE, TASK ABORTED, reserved codes).
    #[error("{command}: unexpected SCSI status {status:?}")]
    Status {
        /// The command's name.
        command: &'static str,
        /// The status.
        status: Status,
    },
    /// The transport failed.
    #[error("{command}: {source}")]
    Transport {
        /// The command's name.
        command: &'static str,
        /// Why.
        source: TransportError,
    },
}

impl ScsiError {
    /// The same command may succeed if sent again (busy, becoming ready, unit attention,
    /// aborted, a transient adapter error).
    pub fn is_retryable(&self) -> bool {
        match self {
            ScsiError::Check { outcome, .. } => outcome.is_retryable(),
            ScsiError::Busy { .. } => true,
            ScsiError::Status { status, .. } => *status == Status::TaskAborted,
            ScsiError::Transport { source, .. } => source.is_retryable(),
            ScsiError::BadSense { .. } | ScsiError::ReservationConflict { .. } => false,
        }
    }

    /// The device does not implement the command.
    pub fn is_unsupported(&self) -> bool {
        self.outcome().is_some_and(|o| o.is_unsupported())
    }

    /// The classified sense, for CHECK CONDITION.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            ScsiError::Check { outcome, .. } => Some(*outcome),
            _ => None,
        }
    }

    /// The decoded sense, for CHECK CONDITION.
    pub fn sense(&self) -> Option<&Sense> {
        match self {
            ScsiError::Check { sense, .. } => Some(sense),
            _ => None,
        }
    }

    /// Data bytes moved before the command failed.
    pub fn transferred(&self) -> usize {
        match self {
            ScsiError::Check { transferred, .. } | ScsiError::BadSense { transferred, .. } => *transferred,
            _ => 0,
        }
    }
}

/// Sends `cdb` through `t` with `data` and interprets the answer. The only place coffer issues
/// a SCSI command.
///
/// # Panics
/// If `data` does not go the CDB's way or is shorter than its transfer length (a bug in the
/// caller). A longer buffer is fine: only the transfer length is used.
pub fn issue(t: &mut dyn Transport, cdb: &Cdb, data: DataBuf<'_>) -> Result<Response, ScsiError> {
    let len = cdb.transfer_len();
    assert!(
        data.len() >= len && (len == 0 || data.direction() == cdb.direction()),
        "{}: a {:?} buffer of {} bytes for a {:?} transfer of {len}",
        cdb.name(),
        data.direction(),
        data.len(),
        cdb.direction(),
    );
    let data = match data {
        _ if len == 0 => DataBuf::None,
        DataBuf::In(b) => DataBuf::In(&mut b[..len]),
        DataBuf::Out(b) => DataBuf::Out(&b[..len]),
        DataBuf::None => DataBuf::None,
    };
    let completion =
        t.execute(cdb, data).map_err(|source| ScsiError::Transport { command: cdb.name(), source })?;
    interpret(cdb, &completion)
}

/// Turns a completion of `cdb` into a response or an error.
fn interpret(cdb: &Cdb, c: &Completion) -> Result<Response, ScsiError> {
    let command = cdb.name();
    let transferred = cdb.transfer_len().saturating_sub(c.residual);
    match c.status {
        Status::Good | Status::ConditionMet => Ok(Response { transferred, sense: None }),
        Status::CheckCondition => {
            let sense = sense::decode(&c.sense).map_err(|source| ScsiError::BadSense {
                command,
                source,
                transferred,
            })?;
            let outcome = sense.outcome();
            if outcome.is_success() {
                Ok(Response { transferred, sense: Some(sense) })
            } else {
                Err(ScsiError::Check { command, sense, outcome, transferred })
            }
        }
        Status::Busy | Status::TaskSetFull => Err(ScsiError::Busy { command, status: c.status }),
        Status::ReservationConflict => Err(ScsiError::ReservationConflict { command }),
        status @ (Status::AcaActive | Status::TaskAborted | Status::Other(_)) => {
            Err(ScsiError::Status { command, status })
        }
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
