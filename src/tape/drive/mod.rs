//! One tape drive, spoken to in SSC commands through a [`Transport`] (SG_IO on a real drive,
//! the virtual library's drive in tests and on the built-in board): the low-level layer under
//! the tape target. It turns sense data into what a writer or reader acts on — early warning,
//! end of medium, filemark, end of data, write protection, no cartridge — and keeps its own
//! count of logical objects so that it can position on drives (like `tgt`'s) that answer
//! neither READ POSITION nor LOCATE.

use super::{TapeIo, TapePos};
use crate::scsi::cdb::{self, PageControl, Space};
use crate::scsi::pages::{BlockDescriptor, ModeForm, ModeParams, Position, TapeAlert};
use crate::scsi::sense::{NotReadyReason, Outcome};
use crate::scsi::transport::{DataBuf, ScsiError, Transport, issue};

/// Unit attentions absorbed in a row before the drive counts as failing.
const MAX_UNIT_ATTENTIONS: usize = 4;

/// What a write reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written; room left.
    Ok,
    /// Written, inside the early-warning zone: finish the part and change cartridges.
    EarlyWarning,
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A block of this many bytes.
    Block(usize),
    /// A filemark (the position is now after it).
    Filemark,
    /// Nothing recorded here.
    EndOfData,
}

/// Why a drive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    /// No cartridge in the drive.
    #[error("{drive}: no cartridge loaded")]
    NoMedium {
        /// The drive.
        drive: String,
    },
    /// The cartridge is write-protected.
    #[error("{drive}: the cartridge is write-protected; use another or clear its tab")]
    WriteProtected {
        /// The drive.
        drive: String,
    },
    /// The end of the medium: the data was not written.
    #[error("{drive}: end of medium: the block was not written")]
    EndOfMedium {
        /// The drive.
        drive: String,
    },
    /// The drive keeps reporting unit attentions.
    #[error("{drive}: unit attention does not clear")]
    Attention {
        /// The drive.
        drive: String,
    },
    /// The drive answered something that makes no sense.
    #[error("{drive}: {detail}")]
    Protocol {
        /// The drive.
        drive: String,
        /// What was wrong.
        detail: String,
    },
    /// The drive does not become ready (loading, or a cartridge it cannot use).
    #[error("{drive}: the drive does not become ready; check the cartridge and the drive's display")]
    NotReady {
        /// The drive.
        drive: String,
    },
    /// A call to the operating system's tape driver failed.
    #[error("{drive}: {what}: {source}{fix}")]
    Io {
        /// The drive.
        drive: String,
        /// What was being done.
        what: String,
        /// What the driver said.
        source: std::io::Error,
        /// What to do about it (empty, or starting with "; ").
        fix: &'static str,
    },
    /// Any other SCSI failure.
    #[error("{drive}: {source}")]
    Scsi {
        /// The drive.
        drive: String,
        /// What the device said.
        source: ScsiError,
    },
}

/// A tape drive.
pub struct TapeDrive {
    t: Box<dyn Transport + Send>,
    name: String,
    /// Fixed block size (0: variable).
    block: u32,
    /// Where the drive is, by our own count (drives like `tgt`'s cannot tell).
    at: TapePos,
}

impl std::fmt::Debug for TapeDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapeDrive").field("name", &self.name).field("at", &self.at).finish()
    }
}

/// Blocks asked for in one SPACE when counting a file's blocks on a drive that cannot say
/// where it is: more than any file holds, so the drive stops at the filemark or end of data.
const SPACE_ALL: i64 = 1 << 40;

impl TapeDrive {
    /// A drive reached through `t`, named `name` in messages.
    pub fn new(t: Box<dyn Transport + Send>, name: impl Into<String>) -> TapeDrive {
        TapeDrive { t, name: name.into(), block: 0, at: TapePos::default() }
    }

    fn err(&self, source: ScsiError) -> TapeError {
        let drive = self.name.clone();
        match source.outcome() {
            Some(Outcome::NotReady(NotReadyReason::NoMedium)) => TapeError::NoMedium { drive },
            Some(Outcome::DataProtect { .. }) => TapeError::WriteProtected { drive },
            Some(Outcome::EndOfMedium) => TapeError::EndOfMedium { drive },
            _ => TapeError::Scsi { drive, source },
        }
    }

    fn run(&mut self, c: &cdb::Cdb, data: DataBuf<'_>) -> Result<(), TapeError> {
        issue(&mut *self.t, c, data).map(|_| ()).map_err(|e| self.err(e))
    }

    /// Writes one block (exactly the block size in fixed mode).
    pub fn write_block(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        if self.block != 0 {
            assert_eq!(data.len(), self.block as usize, "fixed-block writes are whole blocks");
        }
        self.write_blocks(data)
    }

    /// Spaces forward over every block up to the next filemark or the end of data, counting
    /// them from the residual the drive reports. Returns whether a filemark ended the run.
    fn space_over_file(&mut self) -> Result<bool, TapeError> {
        match issue(&mut *self.t, &cdb::space16(Space::Blocks(SPACE_ALL)), DataBuf::None) {
            Ok(_) => Err(TapeError::Protocol {
                drive: self.name.clone(),
                detail: "SPACE over 2^40 blocks met neither a filemark nor the end of data".into(),
            }),
            Err(e) => {
                let residual = e.sense().and_then(|s| s.information).unwrap_or(0).max(0);
                let moved = (SPACE_ALL - residual.min(SPACE_ALL)) as u64;
                match e.outcome() {
                    Some(Outcome::Filemark { .. }) => {
                        self.at.object += moved + 1;
                        self.at.file += 1;
                        Ok(true)
                    }
                    Some(Outcome::EndOfData) => {
                        self.at.object += moved;
                        Ok(false)
                    }
                    _ => Err(self.err(e)),
                }
            }
        }
    }

    pub(crate) fn locate_by_spacing(&mut self, to: TapePos, file_start: u64) -> Result<(), TapeError> {
        self.rewind()?;
        for (space, n) in
            [(Space::Filemarks as fn(i64) -> Space, to.file), (Space::Blocks, to.object - file_start)]
        {
            if n > 0 {
                let n = i64::try_from(n).expect("counts on a tape fit i64");
                self.run(&cdb::space16(space(n)), DataBuf::None)?;
            }
        }
        self.at = to;
        Ok(())
    }
}

impl TapeIo for TapeDrive {
    fn name(&self) -> &str {
        &self.name
    }

    fn ready(&mut self) -> Result<(), TapeError> {
        for _ in 0..MAX_UNIT_ATTENTIONS {
            match issue(&mut *self.t, &cdb::test_unit_ready(), DataBuf::None) {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.outcome(), Some(Outcome::UnitAttention(_))) => {
                    self.at = TapePos::default()
                }
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(TapeError::Attention { drive: self.name.clone() })
    }

    fn set_block_size(&mut self, len: u32) -> Result<(), TapeError> {
        let params = ModeParams {
            medium_type: 0,
            device_specific: 0,
            block_descriptor: Some(BlockDescriptor { density: 0, blocks: 0, block_len: len }),
            pages: Vec::new(),
        };
        let data = params.encode_select(ModeForm::Six);
        let n = u8::try_from(data.len()).expect("a header and one descriptor fit MODE SELECT(6)");
        self.run(&cdb::mode_select6(n, false), DataBuf::Out(&data))?;
        self.block = len;
        Ok(())
    }

    fn write_blocks(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        let (c, blocks) = if self.block == 0 {
            (cdb::write6_variable(data.len() as u32), 1)
        } else {
            assert_eq!(data.len() % self.block as usize, 0, "fixed-block writes are whole blocks");
            let n = (data.len() / self.block as usize) as u32;
            (cdb::write6_fixed(n, self.block), u64::from(n))
        };
        match issue(&mut *self.t, &c, DataBuf::Out(data)) {
            Ok(_) => {
                self.at.object += blocks;
                Ok(Written::Ok)
            }
            Err(e) if e.outcome() == Some(Outcome::EarlyWarning) => {
                self.at.object += blocks;
                Ok(Written::EarlyWarning)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    fn write_filemark(&mut self) -> Result<(), TapeError> {
        match issue(&mut *self.t, &cdb::write_filemarks6(1, false), DataBuf::None) {
            Ok(_) => {}
            Err(e) if e.outcome() == Some(Outcome::EarlyWarning) => {}
            Err(e) => return Err(self.err(e)),
        }
        self.at.object += 1;
        self.at.file += 1;
        Ok(())
    }

    fn read_block(&mut self, buf: &mut [u8]) -> Result<Read, TapeError> {
        let c = if self.block == 0 {
            cdb::read6_variable(buf.len() as u32, true)
        } else {
            cdb::read6_fixed(1, self.block)
        };
        let r = issue(&mut *self.t, &c, DataBuf::In(buf));
        let found = match r {
            Ok(resp) => Read::Block(resp.transferred),
            Err(e) => match e.outcome() {
                Some(Outcome::Filemark { .. }) => {
                    self.at.file += 1;
                    Read::Filemark
                }
                Some(Outcome::EndOfData) => return Ok(Read::EndOfData),
                Some(Outcome::IncorrectLength { residual: Some(r) }) if r >= 0 => {
                    Read::Block(e.transferred())
                }
                _ => return Err(self.err(e)),
            },
        };
        self.at.object += 1;
        Ok(found)
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.run(&cdb::rewind(false), DataBuf::None)?;
        self.at = TapePos::default();
        Ok(())
    }

    fn to_end_of_data(&mut self) -> Result<TapePos, TapeError> {
        match issue(&mut *self.t, &cdb::space6(Space::EndOfData), DataBuf::None) {
            Ok(_) => {}
            Err(e) if e.is_unsupported() => {}
            Err(e) => return Err(self.err(e)),
        }
        if let Some(p) = self.reported_position()? {
            self.at = p;
            return Ok(p);
        }
        // The drive cannot say where it is: count files and blocks from the beginning.
        self.rewind()?;
        while self.space_over_file()? {}
        Ok(self.at)
    }

    fn position(&mut self) -> Result<TapePos, TapeError> {
        Ok(self.reported_position()?.unwrap_or(self.at))
    }

    fn locate(&mut self, to: TapePos, file_start: u64) -> Result<(), TapeError> {
        assert!(to.object >= file_start, "object {} before its file's start {file_start}", to.object);
        match issue(&mut *self.t, &cdb::locate16(to.object, None, false), DataBuf::None) {
            Ok(_) => {
                self.at = to;
                Ok(())
            }
            Err(e) if e.is_unsupported() => self.locate_by_spacing(to, file_start),
            Err(e) => Err(self.err(e)),
        }
    }

    fn write_protected(&mut self) -> Result<bool, TapeError> {
        let mut buf = [0u8; 12];
        let c = cdb::mode_sense6(0, 0, PageControl::Current, true, buf.len() as u8);
        let got = issue(&mut *self.t, &c, DataBuf::In(&mut buf)).map_err(|e| self.err(e))?;
        let n = got.transferred.clamp(4, buf.len());
        let p = ModeParams::decode(&buf[..n], ModeForm::Six).map_err(|e| TapeError::Protocol {
            drive: self.name.clone(),
            detail: format!("MODE SENSE(6): {e}"),
        })?;
        Ok(p.write_protected())
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.run(&cdb::unload(false), DataBuf::None)?;
        self.at = TapePos::default();
        Ok(())
    }

    fn tape_alerts(&mut self) -> Result<TapeAlert, TapeError> {
        let mut buf = vec![0u8; 4 + 64 * 5];
        match issue(&mut *self.t, &cdb::log_sense_tape_alert(buf.len() as u16), DataBuf::In(&mut buf)) {
            Ok(_) => TapeAlert::decode(&buf).map_err(|e| TapeError::Protocol {
                drive: self.name.clone(),
                detail: format!("LOG SENSE (TapeAlert): {e}"),
            }),
            Err(e) if e.is_unsupported() => Ok(TapeAlert::default()),
            Err(e) => Err(self.err(e)),
        }
    }

    fn cleaning_done(&mut self) -> Result<bool, TapeError> {
        match issue(&mut *self.t, &cdb::test_unit_ready(), DataBuf::None) {
            Err(e) if e.sense().is_some_and(|s| (s.asc, s.ascq) == (0x30, 0x03)) => Ok(false),
            // Ready, or empty once the drive ejected the cleaning cartridge: the cycle is over.
            Ok(_) | Err(ScsiError::Check { .. }) => Ok(true),
            Err(e) => Err(self.err(e)),
        }
    }
}

impl TapeDrive {
    /// The position the drive reports (READ POSITION, long form); `None` where it cannot say.
    fn reported_position(&mut self) -> Result<Option<TapePos>, TapeError> {
        let mut buf = [0u8; 32];
        match issue(&mut *self.t, &cdb::read_position_long(), DataBuf::In(&mut buf)) {
            Ok(_) => match Position::decode(&buf) {
                Ok(p) if !p.object_unknown && !p.mark_position_unknown => {
                    Ok(Some(TapePos { object: p.block, file: p.file }))
                }
                _ => Ok(None),
            },
            Err(e) if e.is_unsupported() => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }
}

#[cfg(test)]
mod tests;
