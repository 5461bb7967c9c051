//! The end-of-data mark of a raw disk (a block device, or an image file used as one). A volume
//! file's length says where its data ends; a device's size does not, and walking every part to
//! find the end would read the whole disk. So a raw disk keeps, after its label block, two
//! mark blocks written in turn: each says, for this medium, how far the data goes and in which
//! generation. The newest valid one counts.
//!
//! Layout: block 0 the volume label, blocks 1 and 2 the marks, parts from block 3 on.
//! A mark is written and synced after the part it covers has been synced, so a torn mark
//! leaves the other, older one: the part it would have added is then not part of the medium
//! (nor was it journaled: the journal commit comes after).
//!
//! Mark block: magic `CFEND\0\0\0`, format version u16, 6 reserved zero bytes, medium UUID,
//! generation u64, end u64, CRC-32 (IEEE) of the preceding bytes; little-endian; the rest of
//! the block is zero.

/// Bytes of the label block and of each mark block.
pub const MARK_BLOCK: u64 = 4096;
/// Where the first part of a raw disk starts.
pub const DATA_START: u64 = 3 * MARK_BLOCK;
/// Encoded length of a mark.
pub const MARK_LEN: usize = 52;

const MAGIC: [u8; 8] = *b"CFEND\0\0\0";
const VERSION: u16 = 1;

const _: () = assert!(MARK_LEN as u64 <= MARK_BLOCK);

/// Where a raw disk's data ends, as of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndMark {
    /// Medium the mark belongs to (a relabelled disk ignores its old marks).
    pub medium: [u8; 16],
    /// Counts up by one per mark written.
    pub generation: u64,
    /// Byte offset where the next part starts (block-aligned).
    pub end: u64,
}

impl EndMark {
    /// The mark of a freshly labelled disk.
    pub fn fresh(medium: [u8; 16]) -> EndMark {
        EndMark { medium, generation: 1, end: DATA_START }
    }

    /// The next generation, ending at `end`.
    pub fn next(&self, end: u64) -> EndMark {
        EndMark { medium: self.medium, generation: self.generation + 1, end }
    }

    /// Byte offset of the block this generation is written to.
    pub fn offset(&self) -> u64 {
        MARK_BLOCK * (1 + self.generation % 2)
    }

    /// The mark's bytes.
    pub fn encode(&self) -> [u8; MARK_LEN] {
        let mut b = [0u8; MARK_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[16..32].copy_from_slice(&self.medium);
        b[32..40].copy_from_slice(&self.generation.to_le_bytes());
        b[40..48].copy_from_slice(&self.end.to_le_bytes());
        let crc = crc32fast::hash(&b[..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A mark of `medium` from the start of a mark block; `None` if it is not one (blank,
    /// torn, another medium's, or an end before the data start).
    pub fn decode(b: &[u8], medium: [u8; 16]) -> Option<EndMark> {
        let b = b.get(..MARK_LEN)?;
        let ok = b[0..8] == MAGIC
            && b[8..10] == VERSION.to_le_bytes()
            && b[10..16] == [0; 6]
            && b[48..52] == crc32fast::hash(&b[..48]).to_le_bytes()
            && b[16..32] == medium;
        let field = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let m = EndMark { medium, generation: field(32), end: field(40) };
        (ok && m.end >= DATA_START && m.end.is_multiple_of(MARK_BLOCK)).then_some(m)
    }

    /// The newest valid mark in the two mark blocks (`blocks` holds blocks 1 and 2).
    pub fn newest(blocks: &[u8], medium: [u8; 16]) -> Option<EndMark> {
        let a = EndMark::decode(blocks, medium);
        let b = blocks.get(MARK_BLOCK as usize..).and_then(|b| EndMark::decode(b, medium));
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.generation >= b.generation { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(marks: &[EndMark]) -> Vec<u8> {
        let mut out = vec![0u8; 2 * MARK_BLOCK as usize];
        for m in marks {
            let at = (m.offset() - MARK_BLOCK) as usize;
            out[at..at + MARK_LEN].copy_from_slice(&m.encode());
        }
        out
    }

    #[test]
    fn the_newest_valid_mark_counts() {
        let id = [7; 16];
        let m1 = EndMark::fresh(id);
        let m2 = m1.next(DATA_START + 8 * MARK_BLOCK);
        let m3 = m2.next(DATA_START + 64 * MARK_BLOCK);
        assert_ne!(m2.offset(), m3.offset(), "generations alternate between the blocks");
        assert_eq!(EndMark::newest(&blocks(&[m1, m2]), id), Some(m2));
        assert_eq!(EndMark::newest(&blocks(&[m1, m2, m3]), id), Some(m3));
        // A torn newest mark leaves the older one.
        let mut b = blocks(&[m2, m3]);
        let at = (m3.offset() - MARK_BLOCK) as usize + 41;
        b[at] ^= 1;
        assert_eq!(EndMark::newest(&b, id), Some(m2));
        // Blank blocks, or another medium's marks, give nothing.
        assert_eq!(EndMark::newest(&[0; 2 * MARK_BLOCK as usize], id), None);
        assert_eq!(EndMark::newest(&blocks(&[m2, m3]), [8; 16]), None);
    }

    #[test]
    fn a_flip_in_any_byte_is_refused() {
        let id = [1; 16];
        let m = EndMark::fresh(id).next(DATA_START + MARK_BLOCK);
        let bytes = m.encode();
        assert_eq!(EndMark::decode(&bytes, id), Some(m));
        for i in 0..MARK_LEN {
            for bit in 0..8 {
                let mut b = bytes;
                b[i] ^= 1 << bit;
                assert_eq!(EndMark::decode(&b, id), None, "byte {i} bit {bit}");
            }
        }
    }
}
