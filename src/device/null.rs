//! `null:`: a target that keeps nothing, for measuring the rest of the data path.

use super::label::new_label;
use super::{DeviceError, Mounted, PartStart, Target};
use crate::format::records::VolumeLabel;

/// Counts bytes and discards them.
#[derive(Debug)]
pub struct NullTarget {
    label: VolumeLabel,
    written: u64,
    mounted_before: bool,
}

impl NullTarget {
    /// A null target with a fresh medium.
    pub fn new() -> NullTarget {
        let id = uuid::Uuid::new_v4();
        let barcode = format!("NUL-{}", &id.simple().to_string()[..12].to_uppercase());
        let mut label = new_label(barcode, "null", 4096);
        label.medium = *id.as_bytes();
        NullTarget { label, written: 0, mounted_before: false }
    }
}

impl Default for NullTarget {
    fn default() -> Self {
        NullTarget::new()
    }
}

impl Target for NullTarget {
    fn describe(&self) -> String {
        "null:".into()
    }
    fn block_size(&self) -> usize {
        4096
    }
    fn mount(&mut self) -> Result<Mounted, DeviceError> {
        let new = !self.mounted_before;
        self.mounted_before = true;
        Ok(Mounted {
            label: self.label.clone(),
            capacity: u64::MAX / 2,
            location: self.describe(),
            new,
            kind: crate::catalog::MediumKind::Disk,
        })
    }
    fn begin_part(&mut self) -> Result<PartStart, DeviceError> {
        Ok(PartStart { medium: self.label.medium, position: self.written, file_number: 0 })
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), DeviceError> {
        self.written += bytes.len() as u64;
        Ok(())
    }
    fn remaining(&self) -> u64 {
        u64::MAX / 2 - self.written
    }
    fn end_part(&mut self) -> Result<(), DeviceError> {
        self.written = super::aligned::round_up(self.written, 4096);
        Ok(())
    }
    fn next_medium(&mut self) -> Result<Mounted, DeviceError> {
        self.mount()
    }
}
