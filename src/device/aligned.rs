//! Buffers aligned for `O_DIRECT` I/O, without unsafe code: a heap allocation with room to
//! spare, used from its first aligned byte. The allocation never moves (it is never resized).

/// Alignment of direct I/O buffers, offsets and lengths.
pub const ALIGN: usize = 4096;

/// A zeroed, `ALIGN`-aligned byte buffer of fixed length.
#[derive(Debug)]
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        assert!(start < ALIGN);
        AlignedBuf { storage, start, len }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// `n` rounded up to a multiple of `block`.
pub fn round_up(n: u64, block: u64) -> u64 {
    n.div_ceil(block) * block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned() {
        for len in [1, 4096, 100_000] {
            let b = AlignedBuf::new(len);
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.len(), len);
        }
        assert_eq!(round_up(1, 4096), 4096);
        assert_eq!(round_up(8192, 4096), 8192);
    }
}
