//! Mode parameters (MODE SENSE responses and MODE SELECT parameter lists) in the 6- and 10-byte
//! forms: header, block descriptor (density, block size) and mode pages, with the data
//! compression page (0x0F, SSC) and the element address assignment page (0x1D, SMC).
//!
//! A mode parameter list is `header | block descriptors | pages`; each page is
//! `PS/SPF/code, length, body` (or a 4-byte header with SPF set, for subpages).

use super::{COMPRESSION_PAGE, ELEMENT_ADDRESS_PAGE, PageError, need};
use crate::scsi::bytes::{put_u24, u16_at, u24_at, u32_at};
use crate::scsi::cdb::ElementType;

/// Which MODE SENSE/SELECT form the data belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeForm {
    /// MODE SENSE(6)/SELECT(6): 4-byte header, at most 255 bytes.
    Six,
    /// MODE SENSE(10)/SELECT(10): 8-byte header.
    Ten,
}

impl ModeForm {
    fn header_len(self) -> usize {
        match self {
            ModeForm::Six => 4,
            ModeForm::Ten => 8,
        }
    }

    /// The total length of the mode data the device holds, from the header's mode data length
    /// (`None` if the header is incomplete): ask again with that allocation when it is more
    /// than was received.
    pub fn available(self, buf: &[u8]) -> Option<usize> {
        match self {
            ModeForm::Six => buf.first().map(|&n| usize::from(n) + 1),
            ModeForm::Ten => u16_at(buf, 0).map(|n| usize::from(n) + 2),
        }
    }
}

/// A short-form block descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDescriptor {
    /// Density code (0: the default for the medium).
    pub density: u8,
    /// Number of blocks (0 for tape: the rest of the medium).
    pub blocks: u32,
    /// Block length in bytes; 0 means variable-length blocks.
    pub block_len: u32,
}

impl BlockDescriptor {
    /// Its length in bytes.
    pub const LEN: usize = 8;

    /// A descriptor that only sets the block length (0: variable), for MODE SELECT.
    pub fn block_size(block_len: u32) -> BlockDescriptor {
        BlockDescriptor { density: 0, blocks: 0, block_len }
    }

    fn decode(b: &[u8]) -> Option<BlockDescriptor> {
        Some(BlockDescriptor { density: *b.first()?, blocks: u24_at(b, 1)?, block_len: u24_at(b, 5)? })
    }

    /// Encodes the 8 bytes.
    ///
    /// # Panics
    /// If the number of blocks or the block length does not fit 24 bits.
    pub fn encode(&self) -> [u8; BlockDescriptor::LEN] {
        let mut b = [0u8; BlockDescriptor::LEN];
        b[0] = self.density;
        put_u24(&mut b, 1, self.blocks);
        put_u24(&mut b, 5, self.block_len);
        b
    }
}

/// Mode parameters: header fields, the first block descriptor and the raw pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeParams {
    /// Medium type.
    pub medium_type: u8,
    /// Device-specific parameter (SSC: WP bit 7, buffered mode bits 6–4, speed bits 3–0).
    pub device_specific: u8,
    /// The first block descriptor, if the device sent any.
    pub block_descriptor: Option<BlockDescriptor>,
    /// The mode pages, as received.
    pub pages: Vec<u8>,
}

impl ModeParams {
    /// Decodes mode parameters of `form`. Data cut short by the allocation length decodes with
    /// the pages received (see [`ModeForm::available`]); a cut block descriptor is an error.
    pub fn decode(buf: &[u8], form: ModeForm) -> Result<ModeParams, PageError> {
        const WHAT: &str = "mode parameters";
        let hdr = form.header_len();
        need(WHAT, buf, hdr)?;
        let (medium_type, device_specific, bd_len) = match form {
            ModeForm::Six => (buf[1], buf[2], usize::from(buf[3])),
            ModeForm::Ten => {
                if buf[4] & 0x01 != 0 {
                    let detail = "long LBA block descriptors are not used by tape devices".to_string();
                    return Err(PageError::Invalid { what: WHAT, offset: 4, detail });
                }
                (buf[2], buf[3], usize::from(u16_at(buf, 6).unwrap_or(0)))
            }
        };
        let end = form.available(buf).unwrap_or(hdr).clamp(hdr, buf.len());
        let body = &buf[..end];
        need(WHAT, body, hdr + bd_len)?;
        let block_descriptor = match bd_len {
            0 => None,
            n if n % BlockDescriptor::LEN != 0 => {
                let detail = format!("block descriptor length {n} is not a multiple of 8");
                return Err(PageError::Invalid { what: WHAT, offset: hdr - 1, detail });
            }
            _ => BlockDescriptor::decode(&body[hdr..hdr + BlockDescriptor::LEN]),
        };
        Ok(ModeParams {
            medium_type,
            device_specific,
            block_descriptor,
            pages: body[hdr + bd_len..].to_vec(),
        })
    }

    /// The write-protect bit of the device-specific parameter (SSC): the loaded cartridge is
    /// write protected.
    pub fn write_protected(&self) -> bool {
        self.device_specific & 0x80 != 0
    }

    /// The buffered mode field of the device-specific parameter (SSC; 1: writes are buffered).
    pub fn buffered_mode(&self) -> u8 {
        (self.device_specific >> 4) & 0x07
    }

    /// The page with `code` (subpage 0), including its 2-byte header, if present and whole.
    pub fn page(&self, code: u8) -> Option<&[u8]> {
        iter_pages(&self.pages).find(|p| p[0] & 0x3F == code & 0x3F && p[0] & 0x40 == 0)
    }

    fn encode(&self, form: ModeForm, select: bool) -> Vec<u8> {
        let hdr = form.header_len();
        let bd = self.block_descriptor.map(|d| d.encode());
        let bd_len = bd.map_or(0, |b| b.len());
        let mut b = vec![0u8; hdr];
        if let Some(d) = bd {
            b.extend_from_slice(&d);
        }
        let first_page = b.len();
        b.extend_from_slice(&self.pages);
        let dsp = if select { self.device_specific & 0x7F } else { self.device_specific };
        let len = b.len();
        match form {
            ModeForm::Six => {
                assert!(len <= 256, "mode data of {len} bytes does not fit the 6-byte form");
                b[0] = if select { 0 } else { (len - 1) as u8 };
                b[1..4].copy_from_slice(&[self.medium_type, dsp, bd_len as u8]);
            }
            ModeForm::Ten => {
                let n = u16::try_from(len - 2).expect("mode data fits the 10-byte form");
                b[0..2].copy_from_slice(&if select { [0, 0] } else { n.to_be_bytes() });
                b[2..4].copy_from_slice(&[self.medium_type, dsp]);
                b[6..8].copy_from_slice(&(bd_len as u16).to_be_bytes());
            }
        }
        if select {
            clear_ps_bits(&mut b[first_page..]);
        }
        b
    }

    /// Encodes as a device answers MODE SENSE.
    ///
    /// # Panics
    /// If the data does not fit the form (256 bytes for the 6-byte form).
    pub fn encode_sense(&self, form: ModeForm) -> Vec<u8> {
        self.encode(form, false)
    }

    /// Encodes as a MODE SELECT parameter list: mode data length 0, the write-protect bit and
    /// every page's PS bit cleared (SPC requires both), so pages read with MODE SENSE can be
    /// sent back.
    ///
    /// # Panics
    /// If the data does not fit the form.
    pub fn encode_select(&self, form: ModeForm) -> Vec<u8> {
        self.encode(form, true)
    }
}

/// Whole pages in a page list, each with its header; stops at a page cut short.
pub fn iter_pages(pages: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = pages;
    std::iter::from_fn(move || {
        let len = page_len(rest)?;
        let (page, tail) = rest.split_at_checked(len)?;
        rest = tail;
        Some(page)
    })
}

/// The length of the page at the start of `b`, header included.
fn page_len(b: &[u8]) -> Option<usize> {
    let first = *b.first()?;
    if first & 0x40 != 0 { Some(4 + usize::from(u16_at(b, 2)?)) } else { Some(2 + usize::from(*b.get(1)?)) }
}

fn clear_ps_bits(pages: &mut [u8]) {
    let mut pos = 0;
    while let Some(len) = page_len(&pages[pos..]) {
        if pos + len > pages.len() {
            break;
        }
        pages[pos] &= 0x7F;
        pos += len;
    }
}

/// Checks a page's code and minimum body length, returning the page.
fn check_page<'a>(page: &'a [u8], what: &'static str, code: u8, body: usize) -> Result<&'a [u8], PageError> {
    need(what, page, 2)?;
    if page[0] & 0x3F != code {
        let detail = format!("page code {:#04x}, expected {code:#04x}", page[0] & 0x3F);
        return Err(PageError::Invalid { what, offset: 0, detail });
    }
    if usize::from(page[1]) < body {
        let detail = format!("page length {}, expected at least {body}", page[1]);
        return Err(PageError::Invalid { what, offset: 1, detail });
    }
    need(what, page, 2 + body)?;
    Ok(page)
}

/// The data compression mode page (SSC 0x0F).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionPage {
    /// DCE: compress data written.
    pub dce: bool,
    /// DCC: the drive can compress (read only).
    pub dcc: bool,
    /// DDE: decompress data read.
    pub dde: bool,
    /// RED: what to report when reading data compressed with an unknown algorithm.
    pub red: u8,
    /// Compression algorithm (1: the drive's default; LTO uses SLDC, 0x03).
    pub compression_algorithm: u32,
    /// Decompression algorithm.
    pub decompression_algorithm: u32,
}

impl CompressionPage {
    /// Length of the page, header included.
    pub const LEN: usize = 16;

    /// Decodes the page (starting at its page code byte).
    pub fn decode(page: &[u8]) -> Result<CompressionPage, PageError> {
        let p = check_page(page, "data compression page", COMPRESSION_PAGE, 0x0E)?;
        Ok(CompressionPage {
            dce: p[2] & 0x80 != 0,
            dcc: p[2] & 0x40 != 0,
            dde: p[3] & 0x80 != 0,
            red: (p[3] >> 5) & 0x03,
            compression_algorithm: u32_at(p, 4).unwrap_or(0),
            decompression_algorithm: u32_at(p, 8).unwrap_or(0),
        })
    }

    /// Encodes the page with PS clear, as MODE SELECT sends it.
    pub fn encode(&self) -> [u8; CompressionPage::LEN] {
        let mut b = [0u8; CompressionPage::LEN];
        b[0] = COMPRESSION_PAGE;
        b[1] = 0x0E;
        b[2] = (u8::from(self.dce) << 7) | (u8::from(self.dcc) << 6);
        b[3] = (u8::from(self.dde) << 7) | ((self.red & 0x03) << 5);
        b[4..8].copy_from_slice(&self.compression_algorithm.to_be_bytes());
        b[8..12].copy_from_slice(&self.decompression_algorithm.to_be_bytes());
        b
    }
}

/// A run of element addresses of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ElementRange {
    /// First address.
    pub first: u16,
    /// Number of elements.
    pub count: u16,
}

impl ElementRange {
    /// Whether `address` is in the range.
    pub fn contains(&self, address: u16) -> bool {
        address >= self.first && u32::from(address) < u32::from(self.first) + u32::from(self.count)
    }
}

/// The element address assignment page (SMC 0x1D): where each element type's addresses start
/// and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ElementAddresses {
    /// Robots.
    pub transport: ElementRange,
    /// Storage slots.
    pub storage: ElementRange,
    /// Import/export slots.
    pub import_export: ElementRange,
    /// Drives.
    pub data_transfer: ElementRange,
}

impl ElementAddresses {
    /// Length of the page, header included.
    pub const LEN: usize = 20;

    /// Decodes the page (starting at its page code byte).
    pub fn decode(page: &[u8]) -> Result<ElementAddresses, PageError> {
        let p = check_page(page, "element address assignment page", ELEMENT_ADDRESS_PAGE, 0x12)?;
        let range =
            |off| ElementRange { first: u16_at(p, off).unwrap_or(0), count: u16_at(p, off + 2).unwrap_or(0) };
        Ok(ElementAddresses {
            transport: range(2),
            storage: range(6),
            import_export: range(10),
            data_transfer: range(14),
        })
    }

    /// Encodes the page.
    pub fn encode(&self) -> [u8; ElementAddresses::LEN] {
        let mut b = [0u8; ElementAddresses::LEN];
        b[0] = ELEMENT_ADDRESS_PAGE;
        b[1] = 0x12;
        for (i, r) in
            [self.transport, self.storage, self.import_export, self.data_transfer].iter().enumerate()
        {
            b[2 + 4 * i..4 + 4 * i].copy_from_slice(&r.first.to_be_bytes());
            b[4 + 4 * i..6 + 4 * i].copy_from_slice(&r.count.to_be_bytes());
        }
        b
    }

    /// The range of element type `kind`.
    pub fn range(&self, kind: ElementType) -> ElementRange {
        match kind {
            ElementType::Transport => self.transport,
            ElementType::Storage => self.storage,
            ElementType::ImportExport => self.import_export,
            ElementType::DataTransfer => self.data_transfer,
        }
    }
}
