//! The TapeAlert log page (0x2E, SSC-4 annex): 64 one-bit flags a drive raises for cleaning,
//! media and hardware problems. Flags are numbered 1 to 64 as in the standard; parameter codes
//! outside that range are ignored. Reading the page clears the flags on most drives.

use super::{PageError, TAPE_ALERT_PAGE, need};
use crate::scsi::bytes::u16_at;

/// 0x03: the operation failed with an unrecoverable error.
pub const HARD_ERROR: u8 = 0x03;
/// 0x04: the cartridge is damaged or worn.
pub const MEDIA: u8 = 0x04;
/// 0x05: the drive cannot read data from the cartridge.
pub const READ_FAILURE: u8 = 0x05;
/// 0x06: the drive cannot write data to the cartridge.
pub const WRITE_FAILURE: u8 = 0x06;
/// 0x09: the cartridge is write protected.
pub const WRITE_PROTECT: u8 = 0x09;
/// 0x0B: a cleaning cartridge is loaded.
pub const CLEANING_MEDIA: u8 = 0x0B;
/// 0x14: the drive needs cleaning now.
pub const CLEAN_NOW: u8 = 0x14;
/// 0x15: the drive is due for routine cleaning.
pub const CLEAN_PERIODIC: u8 = 0x15;
/// 0x16: the cleaning cartridge is used up.
pub const EXPIRED_CLEANING_MEDIA: u8 = 0x16;
/// 0x17: the cartridge loaded for cleaning is not a cleaning cartridge.
pub const INVALID_CLEANING_TAPE: u8 = 0x17;
/// 0x1E: the drive has a hardware fault (reset it).
pub const HARDWARE_A: u8 = 0x1E;
/// 0x1F: the drive has a hardware fault (its self test failed).
pub const HARDWARE_B: u8 = 0x1F;

/// Flags that mean data could not be read or written, or the drive is broken.
pub const HARD_ERROR_FLAGS: [u8; 6] =
    [HARD_ERROR, MEDIA, READ_FAILURE, WRITE_FAILURE, HARDWARE_A, HARDWARE_B];

/// The set TapeAlert flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapeAlert {
    /// Bit `n - 1` is flag `n`.
    bits: u64,
}

impl TapeAlert {
    /// Decodes the log page. A page cut short yields the parameters received whole.
    pub fn decode(buf: &[u8]) -> Result<TapeAlert, PageError> {
        const WHAT: &str = "TapeAlert log page";
        need(WHAT, buf, 4)?;
        if buf[0] & 0x3F != TAPE_ALERT_PAGE {
            let detail = format!("page code {:#04x}, expected {TAPE_ALERT_PAGE:#04x}", buf[0] & 0x3F);
            return Err(PageError::Invalid { what: WHAT, offset: 0, detail });
        }
        let end = buf.len().min(4 + usize::from(u16_at(buf, 2).unwrap_or(0)));
        let mut alert = TapeAlert::default();
        let mut pos = 4;
        while pos + 4 <= end {
            let code = u16_at(buf, pos).unwrap_or(0);
            let len = usize::from(buf[pos + 3]);
            if pos + 4 + len > end {
                break;
            }
            let value = buf[pos + 4..pos + 4 + len].first().copied().unwrap_or(0);
            if let Ok(flag @ 1..=64) = u8::try_from(code)
                && value & 0x01 != 0
            {
                alert = alert.with(flag);
            }
            pos += 4 + len;
        }
        Ok(alert)
    }

    /// Encodes the page with all 64 parameters, as a drive answers.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![TAPE_ALERT_PAGE, 0, 0, 0];
        for flag in 1..=64u8 {
            b.extend_from_slice(&[0, flag, 0, 1, u8::from(self.is_set(flag))]);
        }
        let len = (b.len() - 4) as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        b
    }

    /// The same set plus `flag` (1 to 64; others are ignored).
    pub fn with(self, flag: u8) -> TapeAlert {
        match flag {
            1..=64 => TapeAlert { bits: self.bits | 1 << (flag - 1) },
            _ => self,
        }
    }

    /// The same set without `flag`.
    pub fn without(self, flag: u8) -> TapeAlert {
        match flag {
            1..=64 => TapeAlert { bits: self.bits & !(1 << (flag - 1)) },
            _ => self,
        }
    }

    /// The flags set in either.
    pub fn union(self, other: TapeAlert) -> TapeAlert {
        TapeAlert { bits: self.bits | other.bits }
    }

    /// Whether `flag` is set.
    pub fn is_set(&self, flag: u8) -> bool {
        matches!(flag, 1..=64) && self.bits & (1 << (flag - 1)) != 0
    }

    /// No flag is set.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The drive must be cleaned before it can be trusted ([`CLEAN_NOW`]).
    pub fn cleaning_required(&self) -> bool {
        self.is_set(CLEAN_NOW)
    }

    /// The drive is due for routine cleaning ([`CLEAN_PERIODIC`]).
    pub fn cleaning_requested(&self) -> bool {
        self.is_set(CLEAN_PERIODIC)
    }

    /// Any of [`HARD_ERROR_FLAGS`] is set.
    pub fn hard_error(&self) -> bool {
        HARD_ERROR_FLAGS.iter().any(|&f| self.is_set(f))
    }

    /// The set flags, lowest first.
    pub fn flags(&self) -> impl Iterator<Item = u8> + '_ {
        (1..=64u8).filter(|&f| self.is_set(f))
    }
}

/// The standard name of a flag coffer acts on or reports.
pub fn flag_name(flag: u8) -> Option<&'static str> {
    Some(match flag {
        0x01 => "read warning",
        0x02 => "write warning",
        HARD_ERROR => "hard error",
        MEDIA => "media",
        READ_FAILURE => "read failure",
        WRITE_FAILURE => "write failure",
        0x07 => "media life",
        0x08 => "not data grade",
        WRITE_PROTECT => "write protect",
        0x0A => "no removal",
        CLEANING_MEDIA => "cleaning media",
        0x0C => "unsupported format",
        0x0F => "cartridge memory failure",
        0x10 => "forced eject",
        0x12 => "tape directory corrupted on load",
        0x13 => "nearing media life",
        CLEAN_NOW => "clean now",
        CLEAN_PERIODIC => "clean periodic",
        EXPIRED_CLEANING_MEDIA => "expired cleaning media",
        INVALID_CLEANING_TAPE => "invalid cleaning tape",
        HARDWARE_A => "hardware A",
        HARDWARE_B => "hardware B",
        0x20 => "interface",
        0x21 => "eject media",
        0x22 => "download fail",
        0x24 => "drive temperature",
        0x27 => "diagnostics required",
        0x37 => "loading failure",
        0x38 => "unrecoverable unload failure",
        _ => return None,
    })
}
