//! Classification of sense data into the conditions callers branch on. The rules follow SSC-4
//! and SMC-3, widened where real devices differ: `tgt` reports SPACE into end of data as NO
//! SENSE with END-OF-DATA DETECTED (SSC says BLANK CHECK), and spacing back onto the beginning
//! of tape as NO SENSE with BEGINNING-OF-PARTITION without the EOM bit.

use super::{Sense, SenseKey};

/// What a CHECK CONDITION means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// NO SENSE and no filemark, EOM or ILI: the command completed.
    NoSense,
    /// RECOVERED ERROR: the command completed after the device recovered an error.
    Recovered,
    /// A filemark was read or spaced over; the position is after it (before it backwards).
    Filemark {
        /// Requested minus done (blocks or bytes), when reported.
        residual: Option<i64>,
    },
    /// EOM with NO SENSE or RECOVERED ERROR: the write succeeded inside the early-warning zone;
    /// finish the medium and ask for the next one.
    EarlyWarning,
    /// VOLUME OVERFLOW, or EOM with MEDIUM ERROR: the end of the partition was reached and the
    /// data was not (all) written or read.
    EndOfMedium,
    /// Spacing or reading backwards reached the beginning of the partition.
    BeginningOfMedium,
    /// BLANK CHECK or END-OF-DATA DETECTED: nothing recorded past this point.
    EndOfData,
    /// ILI with NO SENSE: the block read was not as long as requested.
    IncorrectLength {
        /// Requested minus actual length: negative if the block was longer and its tail was
        /// lost.
        residual: Option<i64>,
    },
    /// NOT READY.
    NotReady(NotReadyReason),
    /// MEDIUM ERROR: a flaw in the medium or its data.
    MediumError,
    /// HARDWARE ERROR: the device failed.
    HardwareError,
    /// UNIT ATTENTION: something changed since the last command; the command was not run.
    UnitAttention(UnitAttentionReason),
    /// DATA PROTECT.
    DataProtect {
        /// WRITE PROTECTED (27/00): the cartridge's write-protect tab is set.
        write_protected: bool,
    },
    /// ILLEGAL REQUEST.
    IllegalRequest(IllegalRequestReason),
    /// ABORTED COMMAND: the device gave up on the command; it may be retried.
    Aborted,
    /// Anything else (vendor specific, miscompare…).
    Other,
}

/// Why a unit is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReadyReason {
    /// 04/01: loading or calibrating; ask again shortly.
    BecomingReady,
    /// 04/07: another operation (an immediate rewind, a load) is still running.
    InProgress,
    /// 04/02: a LOAD (or START) is needed.
    InitializationRequired,
    /// 04/03: an operator has to act.
    ManualIntervention,
    /// 3A/xx: no cartridge in the drive.
    NoMedium,
    /// 30/03: a cleaning cartridge is loaded.
    CleaningCartridge,
    /// Any other NOT READY.
    Other,
}

/// What a UNIT ATTENTION reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitAttentionReason {
    /// 29/xx: power on or reset; positions and mode settings are lost.
    Reset,
    /// 28/xx: a medium may have been changed (loaded, or an import/export slot accessed).
    MediumChanged,
    /// 2A/xx: mode or log parameters were changed by another initiator.
    ParametersChanged,
    /// Any other UNIT ATTENTION.
    Other,
}

/// Why a command was refused as an ILLEGAL REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IllegalRequestReason {
    /// 20/00: the device does not implement the operation code.
    UnsupportedCommand,
    /// 24/00: a CDB field is not supported (also how devices refuse a service action).
    InvalidFieldInCdb,
    /// 26/00: a field of the parameter list (MODE SELECT data) is not supported.
    InvalidFieldInParameters,
    /// 21/01: no element at that address.
    InvalidElementAddress,
    /// 3B/0E: MOVE MEDIUM from an empty element.
    SourceEmpty,
    /// 3B/0D: MOVE MEDIUM to a full element.
    DestinationFull,
    /// 53/02: medium removal is prevented (PREVENT ALLOW MEDIUM REMOVAL).
    RemovalPrevented,
    /// Any other ILLEGAL REQUEST.
    Other,
}

impl Sense {
    /// Classifies this sense. Position conditions (end of data, filemark, end of medium,
    /// incorrect length) take precedence over the sense key, as SSC reports them with NO SENSE,
    /// MEDIUM ERROR or BLANK CHECK keys.
    pub fn outcome(&self) -> Outcome {
        use SenseKey::*;
        let code = (self.asc, self.ascq);
        let informational = matches!(self.key, NoSense | RecoveredError);
        if self.key == BlankCheck || code == (0x00, 0x05) {
            return Outcome::EndOfData;
        }
        if self.key == VolumeOverflow || (self.key == MediumError && (self.eom || code == (0x00, 0x02))) {
            return Outcome::EndOfMedium;
        }
        if self.filemark || (informational && code == (0x00, 0x01)) {
            return Outcome::Filemark { residual: self.information };
        }
        if informational && code == (0x00, 0x04) {
            return Outcome::BeginningOfMedium;
        }
        if informational && (self.eom || code == (0x00, 0x02) || code == (0x00, 0x07)) {
            return Outcome::EarlyWarning;
        }
        if informational && self.ili {
            return Outcome::IncorrectLength { residual: self.information };
        }
        match self.key {
            NoSense | Completed => Outcome::NoSense,
            RecoveredError => Outcome::Recovered,
            NotReady => Outcome::NotReady(not_ready(code)),
            MediumError => Outcome::MediumError,
            HardwareError => Outcome::HardwareError,
            IllegalRequest => Outcome::IllegalRequest(illegal_request(code)),
            UnitAttention => Outcome::UnitAttention(match self.asc {
                0x29 => UnitAttentionReason::Reset,
                0x28 => UnitAttentionReason::MediumChanged,
                0x2A => UnitAttentionReason::ParametersChanged,
                _ => UnitAttentionReason::Other,
            }),
            DataProtect => Outcome::DataProtect { write_protected: code == (0x27, 0x00) },
            AbortedCommand => Outcome::Aborted,
            BlankCheck => Outcome::EndOfData,
            VolumeOverflow => Outcome::EndOfMedium,
            VendorSpecific | CopyAborted | Equal | Miscompare => Outcome::Other,
        }
    }
}

fn not_ready(code: (u8, u8)) -> NotReadyReason {
    match code {
        (0x04, 0x01) => NotReadyReason::BecomingReady,
        (0x04, 0x07) => NotReadyReason::InProgress,
        (0x04, 0x02) => NotReadyReason::InitializationRequired,
        (0x04, 0x03) => NotReadyReason::ManualIntervention,
        (0x3A, _) => NotReadyReason::NoMedium,
        (0x30, 0x03) => NotReadyReason::CleaningCartridge,
        _ => NotReadyReason::Other,
    }
}

fn illegal_request(code: (u8, u8)) -> IllegalRequestReason {
    match code {
        (0x20, 0x00) => IllegalRequestReason::UnsupportedCommand,
        (0x24, 0x00) => IllegalRequestReason::InvalidFieldInCdb,
        (0x26, 0x00) => IllegalRequestReason::InvalidFieldInParameters,
        (0x21, 0x01) => IllegalRequestReason::InvalidElementAddress,
        (0x3B, 0x0E) => IllegalRequestReason::SourceEmpty,
        (0x3B, 0x0D) => IllegalRequestReason::DestinationFull,
        (0x53, 0x02) => IllegalRequestReason::RemovalPrevented,
        _ => IllegalRequestReason::Other,
    }
}

impl Outcome {
    /// The command completed; the sense is only informational.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::NoSense | Outcome::Recovered)
    }

    /// Sending the same command again may succeed without anyone acting: the unit is becoming
    /// ready, a unit attention has now been reported, or the device aborted the command.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Outcome::NotReady(NotReadyReason::BecomingReady | NotReadyReason::InProgress)
                | Outcome::UnitAttention(_)
                | Outcome::Aborted
        )
    }

    /// The device does not implement the command (invalid operation code): fall back to
    /// another way (SPACE instead of LOCATE). Devices refusing a service action report
    /// [`IllegalRequestReason::InvalidFieldInCdb`] instead, which callers probing a service
    /// action should treat alike.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Outcome::IllegalRequest(IllegalRequestReason::UnsupportedCommand))
    }

    /// A position condition on tape (filemark, early warning, end or beginning of medium, end
    /// of data, incorrect length): expected while reading or writing, not a device failure.
    pub fn is_position(&self) -> bool {
        matches!(
            self,
            Outcome::Filemark { .. }
                | Outcome::EarlyWarning
                | Outcome::EndOfMedium
                | Outcome::BeginningOfMedium
                | Outcome::EndOfData
                | Outcome::IncorrectLength { .. }
        )
    }
}
