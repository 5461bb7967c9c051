//! One tape drive, spoken to in SSC commands through a [`Transport`] (SG_IO on a real drive,
//! the virtual library's drive in tests and on the built-in board): the low-level layer under
//! the tape target. It turns sense data into what a writer or reader acts on — early warning,
//! end of medium, filemark, end of data, write protection, no cartridge — and keeps its own
//! count of logical objects so that it can position on drives (like `tgt`'s) that answer
//! neither READ POSITION nor LOCATE.

use crate::scsi::cdb::{self, Space};
use crate::scsi::pages::{BlockDescriptor, ModeForm, ModeParams, Position};
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
    /// Logical objects (blocks and filemarks) from the beginning: our own count.
    object: u64,
}

impl std::fmt::Debug for TapeDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapeDrive").field("name", &self.name).field("object", &self.object).finish()
    }
}

impl TapeDrive {
    /// A drive reached through `t`, named `name` in messages.
    pub fn new(t: Box<dyn Transport + Send>, name: impl Into<String>) -> TapeDrive {
        TapeDrive { t, name: name.into(), block: 0, object: 0 }
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

    /// Waits out unit attentions (a load, a reset): the position is then unknown, so the
    /// caller must position and re-read the label before writing.
    pub fn ready(&mut self) -> Result<(), TapeError> {
        for _ in 0..MAX_UNIT_ATTENTIONS {
            match issue(&mut *self.t, &cdb::test_unit_ready(), DataBuf::None) {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.outcome(), Some(Outcome::UnitAttention(_))) => self.object = 0,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(TapeError::Attention { drive: self.name.clone() })
    }

    /// Sets fixed blocks of `len` bytes (0: variable).
    pub fn set_block_size(&mut self, len: u32) -> Result<(), TapeError> {
        let params = ModeParams {
            medium_type: 0,
            device_specific: 0,
            block_descriptor: Some(BlockDescriptor { density: 0, blocks: 0, block_len: len }),
            pages: Vec::new(),
        };
        let data = params.encode_select(ModeForm::Six);
        let n = u8::try_from(data.len()).expect("a header and one descriptor fit MODE SELECT(6)");
        issue(&mut *self.t, &cdb::mode_select6(n, false), DataBuf::Out(&data)).map_err(|e| self.err(e))?;
        self.block = len;
        Ok(())
    }

    /// Writes one block (exactly the block size in fixed mode).
    pub fn write_block(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        let c = if self.block == 0 {
            cdb::write6_variable(data.len() as u32)
        } else {
            assert_eq!(data.len(), self.block as usize, "fixed-block writes are whole blocks");
            cdb::write6_fixed(1, self.block)
        };
        match issue(&mut *self.t, &c, DataBuf::Out(data)) {
            Ok(_) => {
                self.object += 1;
                Ok(Written::Ok)
            }
            Err(e) if e.outcome() == Some(Outcome::EarlyWarning) => {
                self.object += 1;
                Ok(Written::EarlyWarning)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Writes a filemark and returns once the drive has everything before it on the medium:
    /// the durability point of a part.
    pub fn write_filemark(&mut self) -> Result<(), TapeError> {
        match issue(&mut *self.t, &cdb::write_filemarks6(1, false), DataBuf::None) {
            Ok(_) => {}
            Err(e) if e.outcome() == Some(Outcome::EarlyWarning) => {}
            Err(e) => return Err(self.err(e)),
        }
        self.object += 1;
        Ok(())
    }

    /// Reads the next block into `buf`.
    pub fn read_block(&mut self, buf: &mut [u8]) -> Result<Read, TapeError> {
        let c = if self.block == 0 {
            cdb::read6_variable(buf.len() as u32, true)
        } else {
            cdb::read6_fixed(1, self.block)
        };
        let r = issue(&mut *self.t, &c, DataBuf::In(buf));
        let found = match r {
            Ok(resp) => Read::Block(resp.transferred),
            Err(e) => match e.outcome() {
                Some(Outcome::Filemark { .. }) => Read::Filemark,
                Some(Outcome::EndOfData) => return Ok(Read::EndOfData),
                Some(Outcome::IncorrectLength { residual: Some(r) }) if r >= 0 => {
                    Read::Block(e.transferred())
                }
                _ => return Err(self.err(e)),
            },
        };
        self.object += 1;
        Ok(found)
    }

    /// Rewinds to the beginning.
    pub fn rewind(&mut self) -> Result<(), TapeError> {
        issue(&mut *self.t, &cdb::rewind(false), DataBuf::None).map_err(|e| self.err(e))?;
        self.object = 0;
        Ok(())
    }

    /// Spaces to the end of data (to append).
    pub fn to_end_of_data(&mut self) -> Result<(), TapeError> {
        issue(&mut *self.t, &cdb::space6(Space::EndOfData), DataBuf::None).map_err(|e| self.err(e))?;
        self.object = self.position()?;
        Ok(())
    }

    /// The logical object number: the drive's, or our own count where it cannot tell.
    pub fn position(&mut self) -> Result<u64, TapeError> {
        let mut buf = [0u8; 32];
        match issue(&mut *self.t, &cdb::read_position_long(), DataBuf::In(&mut buf)) {
            Ok(_) => match Position::decode(&buf) {
                Ok(p) if !p.object_unknown => {
                    self.object = p.block;
                    Ok(p.block)
                }
                _ => Ok(self.object),
            },
            Err(e) if e.is_unsupported() => Ok(self.object),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Positions before logical object `object`, which lies in file `file` (filemarks before
    /// it) whose first object is `file_start`: LOCATE, or where the drive refuses it, a rewind,
    /// SPACE over `file` filemarks, then SPACE over the blocks to the object.
    pub fn locate(&mut self, object: u64, file: u64, file_start: u64) -> Result<(), TapeError> {
        assert!(object >= file_start, "object {object} before its file's start {file_start}");
        match issue(&mut *self.t, &cdb::locate16(object, None, false), DataBuf::None) {
            Ok(_) => {
                self.object = object;
                Ok(())
            }
            Err(e) if e.is_unsupported() => self.locate_by_spacing(object, file, file_start),
            Err(e) => Err(self.err(e)),
        }
    }

    fn locate_by_spacing(&mut self, object: u64, file: u64, file_start: u64) -> Result<(), TapeError> {
        self.rewind()?;
        for (space, n) in [(Space::Filemarks as fn(i64) -> Space, file), (Space::Blocks, object - file_start)]
        {
            if n > 0 {
                let n = i64::try_from(n).expect("counts on a tape fit i64");
                issue(&mut *self.t, &cdb::space16(space(n)), DataBuf::None).map_err(|e| self.err(e))?;
            }
        }
        self.object = object;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
