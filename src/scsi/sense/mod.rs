//! Sense data: what a device says after CHECK CONDITION. [`decode`] reads the fixed (0x70,
//! 0x71) and descriptor (0x72, 0x73) formats into a [`Sense`]; [`Sense::outcome`] classifies
//! it into the [`Outcome`] a caller branches on; [`Sense::encode`] writes either format back
//! (the simulator answers with it, tests build fixtures with it).
//!
//! Fault model: sense comes from a device, a driver or a simulator fault and may be short,
//! truncated by the additional-length byte or by the buffer, or garbage. [`decode`] never
//! panics: it reads what is present (absent fields read as zero or `None`) and refuses only
//! buffers too short to hold a sense key, or with an unknown response code.
//!
//! The INFORMATION field is read as two's complement: SSC uses it for residuals (requested
//! minus actual), which are negative when a block is longer than the read asked for or when
//! spacing backwards.

use std::fmt;

use super::bytes::{u32_at, u64_at};

/// Largest sense a device may return (SPC: 8 header bytes + 244 additional).
pub const MAX_SENSE_LEN: usize = 252;
/// Length of fixed-format sense as [`Sense::encode`] writes it.
pub const FIXED_SENSE_LEN: usize = 18;

/// The sense key: the broad class of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseKey {
    /// 0: nothing to report, or a filemark/EOM/ILI condition.
    NoSense,
    /// 1: completed after the device recovered an error.
    RecoveredError,
    /// 2: the unit cannot be accessed now.
    NotReady,
    /// 3: a flaw in the medium or its recorded data.
    MediumError,
    /// 4: the device failed.
    HardwareError,
    /// 5: the command or its parameters are not accepted.
    IllegalRequest,
    /// 6: a reset, medium change or parameter change happened since the last command.
    UnitAttention,
    /// 7: the medium is protected against the operation.
    DataProtect,
    /// 8: blank medium or end of recorded data.
    BlankCheck,
    /// 9: vendor specific.
    VendorSpecific,
    /// 0xA: a copy command aborted.
    CopyAborted,
    /// 0xB: the device aborted the command; it may be retried.
    AbortedCommand,
    /// 0xC: obsolete (was EQUAL).
    Equal,
    /// 0xD: the end of the partition was reached with data still in the buffer.
    VolumeOverflow,
    /// 0xE: source data did not match the medium.
    Miscompare,
    /// 0xF: completed (SPC-5).
    Completed,
}

const KEYS: [SenseKey; 16] = [
    SenseKey::NoSense,
    SenseKey::RecoveredError,
    SenseKey::NotReady,
    SenseKey::MediumError,
    SenseKey::HardwareError,
    SenseKey::IllegalRequest,
    SenseKey::UnitAttention,
    SenseKey::DataProtect,
    SenseKey::BlankCheck,
    SenseKey::VendorSpecific,
    SenseKey::CopyAborted,
    SenseKey::AbortedCommand,
    SenseKey::Equal,
    SenseKey::VolumeOverflow,
    SenseKey::Miscompare,
    SenseKey::Completed,
];

impl SenseKey {
    /// The key in the low four bits of `code`.
    pub fn from_code(code: u8) -> SenseKey {
        KEYS[usize::from(code & 0x0F)]
    }

    /// Its four-bit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Its name as SPC spells it.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 16] = [
            "NO SENSE",
            "RECOVERED ERROR",
            "NOT READY",
            "MEDIUM ERROR",
            "HARDWARE ERROR",
            "ILLEGAL REQUEST",
            "UNIT ATTENTION",
            "DATA PROTECT",
            "BLANK CHECK",
            "VENDOR SPECIFIC",
            "COPY ABORTED",
            "ABORTED COMMAND",
            "EQUAL",
            "VOLUME OVERFLOW",
            "MISCOMPARE",
            "COMPLETED",
        ];
        NAMES[usize::from(self.code())]
    }
}

/// Which sense format a device used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseFormat {
    /// Response codes 0x70 (current) and 0x71 (deferred).
    Fixed,
    /// Response codes 0x72 (current) and 0x73 (deferred).
    Descriptor,
}

/// Decoded sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// The format it came in.
    pub format: SenseFormat,
    /// A deferred error: it belongs to an earlier command (e.g. a buffered write).
    pub deferred: bool,
    /// The sense key.
    pub key: SenseKey,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// A filemark was read or spaced over.
    pub filemark: bool,
    /// End of medium (or partition), or early warning.
    pub eom: bool,
    /// Incorrect length: the block read is not as long as requested.
    pub ili: bool,
    /// The INFORMATION field, when valid (for SSC: requested minus actual count).
    pub information: Option<i64>,
    /// The COMMAND-SPECIFIC INFORMATION field (0 if absent).
    pub command_specific: u64,
    /// The SENSE-KEY SPECIFIC bytes when SKSV is set, with the SKSV bit cleared (field
    /// pointer for ILLEGAL REQUEST, progress for NOT READY).
    pub sense_key_specific: Option<[u8; 3]>,
}

/// Why sense bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenseError {
    /// No bytes at all.
    #[error("no sense data returned")]
    Empty,
    /// Too short to hold the sense key.
    #[error("sense data too short: {got} bytes, the {format} format needs {needed}")]
    Short {
        /// Bytes received.
        got: usize,
        /// Bytes needed.
        needed: usize,
        /// `"fixed"` or `"descriptor"`.
        format: &'static str,
    },
    /// Not a response code of SPC sense data.
    #[error("unknown sense response code {0:#04x}")]
    ResponseCode(u8),
}

/// Decodes fixed or descriptor sense data.
pub fn decode(buf: &[u8]) -> Result<Sense, SenseError> {
    let Some(&first) = buf.first() else { return Err(SenseError::Empty) };
    match first & 0x7F {
        0x70 | 0x71 => decode_fixed(buf),
        0x72 | 0x73 => decode_descriptor(buf),
        code => Err(SenseError::ResponseCode(code)),
    }
}

/// The bytes the additional-length byte (byte 7) says are valid, cut to what was received.
fn valid_part(buf: &[u8]) -> &[u8] {
    match buf.get(7) {
        Some(&n) => &buf[..buf.len().min(8 + usize::from(n))],
        None => buf,
    }
}

fn decode_fixed(buf: &[u8]) -> Result<Sense, SenseError> {
    if buf.len() < 3 {
        return Err(SenseError::Short { got: buf.len(), needed: 3, format: "fixed" });
    }
    let b = valid_part(buf);
    let flags = b[2];
    let information = if b[0] & 0x80 != 0 { u32_at(b, 3).map(|v| i64::from(v as i32)) } else { None };
    let sense_key_specific = match b.get(15..18) {
        Some(s) if s[0] & 0x80 != 0 => Some([s[0] & 0x7F, s[1], s[2]]),
        _ => None,
    };
    Ok(Sense {
        format: SenseFormat::Fixed,
        deferred: b[0] & 0x7F == 0x71,
        key: SenseKey::from_code(flags),
        asc: b.get(12).copied().unwrap_or(0),
        ascq: b.get(13).copied().unwrap_or(0),
        filemark: flags & 0x80 != 0,
        eom: flags & 0x40 != 0,
        ili: flags & 0x20 != 0,
        information,
        command_specific: u32_at(b, 8).map_or(0, u64::from),
        sense_key_specific,
    })
}

fn decode_descriptor(buf: &[u8]) -> Result<Sense, SenseError> {
    if buf.len() < 4 {
        return Err(SenseError::Short { got: buf.len(), needed: 4, format: "descriptor" });
    }
    let b = valid_part(buf);
    let mut s = Sense {
        format: SenseFormat::Descriptor,
        deferred: b[0] & 0x7F == 0x73,
        key: SenseKey::from_code(b[1]),
        asc: b[2],
        ascq: b[3],
        filemark: false,
        eom: false,
        ili: false,
        information: None,
        command_specific: 0,
        sense_key_specific: None,
    };
    let mut pos = 8;
    while pos + 2 <= b.len() {
        let (kind, len) = (b[pos], usize::from(b[pos + 1]));
        let Some(d) = b.get(pos..pos + 2 + len) else { break };
        read_descriptor(&mut s, kind, d);
        pos += d.len();
    }
    Ok(s)
}

/// Applies one sense data descriptor (SPC-4 4.5.2); unknown or short ones are skipped.
fn read_descriptor(s: &mut Sense, kind: u8, d: &[u8]) {
    match kind {
        0x00 if d.len() >= 12 && d[2] & 0x80 != 0 => s.information = u64_at(d, 4).map(|v| v as i64),
        0x01 if d.len() >= 12 => s.command_specific = u64_at(d, 4).unwrap_or(0),
        0x02 if d.len() >= 7 && d[4] & 0x80 != 0 => s.sense_key_specific = Some([d[4] & 0x7F, d[5], d[6]]),
        0x04 if d.len() >= 4 => {
            s.filemark |= d[3] & 0x80 != 0;
            s.eom |= d[3] & 0x40 != 0;
            s.ili |= d[3] & 0x20 != 0;
        }
        0x05 if d.len() >= 4 => s.ili |= d[3] & 0x20 != 0,
        _ => {}
    }
}

impl Sense {
    /// Current fixed-format sense with `key`, `asc`, `ascq` and nothing else set.
    pub fn new(key: SenseKey, asc: u8, ascq: u8) -> Sense {
        Sense {
            format: SenseFormat::Fixed,
            deferred: false,
            key,
            asc,
            ascq,
            filemark: false,
            eom: false,
            ili: false,
            information: None,
            command_specific: 0,
            sense_key_specific: None,
        }
    }

    /// The same sense with the FILEMARK bit set.
    pub fn with_filemark(self) -> Sense {
        Sense { filemark: true, ..self }
    }

    /// The same sense with the EOM bit set.
    pub fn with_eom(self) -> Sense {
        Sense { eom: true, ..self }
    }

    /// The same sense with the ILI bit set.
    pub fn with_ili(self) -> Sense {
        Sense { ili: true, ..self }
    }

    /// The same sense with a valid INFORMATION field.
    pub fn with_information(self, information: i64) -> Sense {
        Sense { information: Some(information), ..self }
    }

    /// The same sense to be encoded in descriptor format.
    pub fn descriptor(self) -> Sense {
        Sense { format: SenseFormat::Descriptor, ..self }
    }

    /// Encodes in the sense's format.
    ///
    /// # Panics
    /// In fixed format, if INFORMATION does not fit 32 bits signed or COMMAND-SPECIFIC
    /// INFORMATION 32 bits unsigned (the format cannot carry them).
    pub fn encode(&self) -> Vec<u8> {
        match self.format {
            SenseFormat::Fixed => self.encode_fixed().to_vec(),
            SenseFormat::Descriptor => self.encode_descriptor(),
        }
    }

    fn stream_flags(&self) -> u8 {
        (u8::from(self.filemark) << 7) | (u8::from(self.eom) << 6) | (u8::from(self.ili) << 5)
    }

    fn encode_fixed(&self) -> [u8; FIXED_SENSE_LEN] {
        let mut b = [0u8; FIXED_SENSE_LEN];
        b[0] = if self.deferred { 0x71 } else { 0x70 };
        b[2] = self.stream_flags() | self.key.code();
        if let Some(info) = self.information {
            let info = i32::try_from(info).expect("fixed sense INFORMATION fits 32 bits");
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        let csi = u32::try_from(self.command_specific).expect("fixed sense COMMAND-SPECIFIC fits 32 bits");
        b[8..12].copy_from_slice(&csi.to_be_bytes());
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some([a, c, d]) = self.sense_key_specific {
            b[15..18].copy_from_slice(&[a | 0x80, c, d]);
        }
        b
    }

    fn encode_descriptor(&self) -> Vec<u8> {
        let code = if self.deferred { 0x73 } else { 0x72 };
        let mut b = vec![code, self.key.code(), self.asc, self.ascq, 0, 0, 0, 0];
        if let Some(info) = self.information {
            b.extend_from_slice(&[0x00, 0x0A, 0x80, 0]);
            b.extend_from_slice(&info.to_be_bytes());
        }
        if self.command_specific != 0 {
            b.extend_from_slice(&[0x01, 0x0A, 0, 0]);
            b.extend_from_slice(&self.command_specific.to_be_bytes());
        }
        if let Some([a, c, d]) = self.sense_key_specific {
            b.extend_from_slice(&[0x02, 0x06, 0, 0, a | 0x80, c, d, 0]);
        }
        if self.stream_flags() != 0 {
            b.extend_from_slice(&[0x04, 0x02, 0, self.stream_flags()]);
        }
        b[7] = (b.len() - 8) as u8;
        b
    }

    /// What ASC/ASCQ mean, if coffer knows the pair.
    pub fn description(&self) -> Option<&'static str> {
        asc_text(self.asc, self.ascq)
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (ASC/ASCQ {:02X}/{:02X}", self.key.name(), self.asc, self.ascq)?;
        if let Some(text) = self.description() {
            write!(f, ": {text}")?;
        }
        f.write_str(")")?;
        for (set, name) in [(self.filemark, "filemark"), (self.eom, "EOM"), (self.ili, "ILI")] {
            if set {
                write!(f, " [{name}]")?;
            }
        }
        if let Some(info) = self.information {
            write!(f, " information {info}")?;
        }
        if self.deferred {
            f.write_str(" (deferred error of an earlier command)")?;
        }
        Ok(())
    }
}

/// Descriptions of the ASC/ASCQ pairs tape drives and libraries commonly report (SPC-4 annex).
pub fn asc_text(asc: u8, ascq: u8) -> Option<&'static str> {
    Some(match (asc, ascq) {
        (0x00, 0x00) => "no additional sense information",
        (0x00, 0x01) => "filemark detected",
        (0x00, 0x02) => "end-of-partition/medium detected",
        (0x00, 0x04) => "beginning-of-partition/medium detected",
        (0x00, 0x05) => "end-of-data detected",
        (0x00, 0x07) => "programmable early warning detected",
        (0x00, 0x16) => "operation in progress",
        (0x00, 0x17) => "cleaning requested",
        (0x04, 0x00) => "logical unit not ready, cause not reportable",
        (0x04, 0x01) => "logical unit is in process of becoming ready",
        (0x04, 0x02) => "logical unit not ready, initializing command required",
        (0x04, 0x03) => "logical unit not ready, manual intervention required",
        (0x04, 0x07) => "logical unit not ready, operation in progress",
        (0x04, 0x12) => "logical unit not ready, offline",
        (0x0C, 0x00) => "write error",
        (0x11, 0x00) => "unrecovered read error",
        (0x14, 0x03) => "end-of-data not found",
        (0x15, 0x01) => "mechanical positioning error",
        (0x1A, 0x00) => "parameter list length error",
        (0x20, 0x00) => "invalid command operation code",
        (0x21, 0x01) => "invalid element address",
        (0x24, 0x00) => "invalid field in CDB",
        (0x25, 0x00) => "logical unit not supported",
        (0x26, 0x00) => "invalid field in parameter list",
        (0x27, 0x00) => "write protected",
        (0x28, 0x00) => "not ready to ready change, medium may have changed",
        (0x28, 0x01) => "import or export element accessed",
        (0x29, _) => "power on, reset, or bus device reset occurred",
        (0x2A, 0x01) => "mode parameters changed",
        (0x30, 0x00) => "incompatible medium installed",
        (0x30, 0x03) => "cleaning cartridge installed",
        (0x30, 0x07) => "cleaning failure",
        (0x3A, _) => "medium not present",
        (0x3B, 0x00) => "sequential positioning error",
        (0x3B, 0x0D) => "medium destination element full",
        (0x3B, 0x0E) => "medium source element empty",
        (0x44, 0x00) => "internal target failure",
        (0x50, 0x00) => "write append error",
        (0x51, 0x00) => "erase failure",
        (0x52, 0x00) => "cartridge fault",
        (0x53, 0x00) => "media load or eject failed",
        (0x53, 0x02) => "medium removal prevented",
        (0x5D, _) => "failure prediction threshold exceeded",
        _ => return None,
    })
}

mod outcome;
pub use outcome::{IllegalRequestReason, NotReadyReason, Outcome, UnitAttentionReason};

#[cfg(test)]
mod tests;
