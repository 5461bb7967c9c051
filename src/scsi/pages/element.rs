//! READ ELEMENT STATUS responses (SMC-3 6.10): an 8-byte element status header, then one
//! element status page per element type, each an 8-byte page header and fixed-length element
//! descriptors (12 bytes, plus 36 per volume tag, plus vendor bytes).
//!
//! Paging: the header says how many elements and bytes the whole report holds; a response cut
//! by the allocation length decodes to the whole descriptors it contains, and
//! [`ElementStatus::next_start`] names the address to ask from next. Query one element type at
//! a time: addresses of different types need not be ordered. `tgt` reports a byte count 8
//! bytes short and cuts the last descriptor's tail (after its volume tag), so completeness is
//! judged by element count, and a descriptor counts as whole once the fields coffer reads are
//! in. A report of no elements is empty whatever follows its header: `tgt` answers a query of
//! an element type it has none of with a zeroed page (element type 0).

use super::{PageError, need};
use crate::scsi::bytes::{ascii_field, put_ascii, put_u24, u16_at, u24_at};
use crate::scsi::cdb::ElementType;

/// Length of the element status header and of each page header.
const HEADER_LEN: usize = 8;
/// Fixed part of an element descriptor.
const DESCRIPTOR_LEN: usize = 12;
/// A volume tag: 32 bytes of identifier, 2 reserved, 2 of volume sequence number.
const VOLUME_TAG_LEN: usize = 36;
/// The part of a volume tag coffer reads.
const VOLUME_ID_LEN: usize = 32;

/// One element's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Its type.
    pub kind: ElementType,
    /// Its address.
    pub address: u16,
    /// It holds a cartridge.
    pub full: bool,
    /// It is in an abnormal state (see `asc`/`ascq`).
    pub except: bool,
    /// The robot can reach it.
    pub access: bool,
    /// IMPEXP (import/export elements): the cartridge was put in by an operator.
    pub import_export: bool,
    /// Why it is abnormal, when `except`.
    pub asc: u8,
    /// Qualifier of `asc`.
    pub ascq: u8,
    /// Where its cartridge came from, when the library knows (SVALID).
    pub source: Option<u16>,
    /// The cartridge's barcode (primary volume tag), trimmed; `None` if not asked for, not
    /// reported or blank.
    pub volume_tag: Option<String>,
}

impl Element {
    /// An empty, accessible element without exceptions.
    pub fn empty(kind: ElementType, address: u16) -> Element {
        Element {
            kind,
            address,
            full: false,
            except: false,
            access: true,
            import_export: false,
            asc: 0,
            ascq: 0,
            source: None,
            volume_tag: None,
        }
    }
}

/// A decoded READ ELEMENT STATUS response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementStatus {
    /// Address of the first element in the whole report.
    pub first_address: u16,
    /// Number of elements in the whole report.
    pub elements_available: u16,
    /// Bytes of the whole report, header included (from the header's byte count).
    pub available: usize,
    /// Bytes received.
    pub received: usize,
    /// The whole descriptors received, in report order.
    pub elements: Vec<Element>,
}

impl ElementStatus {
    /// Decodes a response; `buf` holds only the bytes received.
    pub fn decode(buf: &[u8]) -> Result<ElementStatus, PageError> {
        need("element status header", buf, HEADER_LEN)?;
        let available = HEADER_LEN + u24_at(buf, 5).unwrap_or(0) as usize;
        let mut status = ElementStatus {
            first_address: u16_at(buf, 0).unwrap_or(0),
            elements_available: u16_at(buf, 2).unwrap_or(0),
            available,
            received: buf.len(),
            elements: Vec::new(),
        };
        // No elements of the type asked for: whatever follows the header is not a page
        // (tgt sends a zeroed page header, element type 0, for a type it has none of).
        if status.elements_available == 0 {
            return Ok(status);
        }
        let end = buf.len().min(available);
        let mut pos = HEADER_LEN;
        while pos + HEADER_LEN <= end {
            let page_end = pos + HEADER_LEN + u24_at(buf, pos + 5).unwrap_or(0) as usize;
            let whole = decode_page(&buf[pos..end.min(page_end)], pos, &mut status.elements)?;
            if !whole || page_end > end {
                break;
            }
            pos = page_end;
        }
        Ok(status)
    }

    /// Every element in the report was received.
    pub fn is_complete(&self) -> bool {
        self.elements.len() >= usize::from(self.elements_available)
    }

    /// The address to ask from next when the report was cut short: one past the last element
    /// received. `None` if complete, or if not even one descriptor fitted (ask with a larger
    /// allocation).
    pub fn next_start(&self) -> Option<u16> {
        if self.is_complete() {
            return None;
        }
        self.elements.last().and_then(|e| e.address.checked_add(1))
    }
}

/// Decodes one element status page (`page` is cut to the bytes received); `offset` is its
/// position in the response, for errors. Returns whether every descriptor was whole.
fn decode_page(page: &[u8], offset: usize, out: &mut Vec<Element>) -> Result<bool, PageError> {
    const WHAT: &str = "element status page";
    let Some(kind) = ElementType::from_code(page[0] & 0x0F) else {
        let detail = format!("element type code {}", page[0] & 0x0F);
        return Err(PageError::Invalid { what: WHAT, offset, detail });
    };
    let pvoltag = page[1] & 0x80 != 0;
    let desc_len = usize::from(u16_at(page, 2).unwrap_or(0));
    let needed = DESCRIPTOR_LEN + if pvoltag { VOLUME_ID_LEN } else { 0 };
    if desc_len < needed {
        let detail = format!("descriptor length {desc_len}, needs at least {needed}");
        return Err(PageError::Invalid { what: WHAT, offset: offset + 2, detail });
    }
    let mut d = HEADER_LEN;
    while d < page.len() {
        let desc = &page[d..page.len().min(d + desc_len)];
        if desc.len() < needed {
            return Ok(false);
        }
        out.push(decode_descriptor(kind, desc, pvoltag));
        d += desc_len;
    }
    Ok(true)
}

fn decode_descriptor(kind: ElementType, d: &[u8], pvoltag: bool) -> Element {
    let flags = d[2];
    let tag =
        if pvoltag { Some(ascii_field(&d[DESCRIPTOR_LEN..DESCRIPTOR_LEN + VOLUME_ID_LEN])) } else { None };
    Element {
        kind,
        address: u16_at(d, 0).unwrap_or(0),
        full: flags & 0x01 != 0,
        import_export: flags & 0x02 != 0,
        except: flags & 0x04 != 0,
        access: flags & 0x08 != 0,
        asc: d[4],
        ascq: d[5],
        source: if d[9] & 0x80 != 0 { u16_at(d, 10) } else { None },
        volume_tag: tag.filter(|t| !t.is_empty()),
    }
}

/// Encodes a whole report of `elements` as a library answers (the caller cuts it to the
/// allocation length). Consecutive elements of one type form one page; with `voltag`, every
/// descriptor carries a primary volume tag (blank when the element has none).
///
/// # Panics
/// If the report exceeds the 24-bit byte count, or there are more than 65535 elements.
pub fn encode_element_status(elements: &[Element], voltag: bool) -> Vec<u8> {
    let desc_len = DESCRIPTOR_LEN + if voltag { VOLUME_TAG_LEN } else { 0 };
    let count = u16::try_from(elements.len()).expect("element count fits 16 bits");
    let mut b = vec![0u8; HEADER_LEN];
    b[0..2].copy_from_slice(&elements.first().map_or(0, |e| e.address).to_be_bytes());
    b[2..4].copy_from_slice(&count.to_be_bytes());
    for run in elements.chunk_by(|a, b| a.kind == b.kind) {
        let page = b.len();
        b.extend_from_slice(&[run[0].kind.code(), if voltag { 0x80 } else { 0 }, 0, 0, 0, 0, 0, 0]);
        b[page + 2..page + 4].copy_from_slice(&(desc_len as u16).to_be_bytes());
        put_u24(&mut b, page + 5, (run.len() * desc_len) as u32);
        for e in run {
            encode_descriptor(&mut b, e, desc_len, voltag);
        }
    }
    let total = b.len() - HEADER_LEN;
    put_u24(&mut b, 5, u32::try_from(total).expect("element status fits 24 bits"));
    b
}

fn encode_descriptor(b: &mut Vec<u8>, e: &Element, desc_len: usize, voltag: bool) {
    let start = b.len();
    b.resize(start + desc_len, 0);
    let d = &mut b[start..];
    d[0..2].copy_from_slice(&e.address.to_be_bytes());
    d[2] = u8::from(e.full)
        | (u8::from(e.import_export) << 1)
        | (u8::from(e.except) << 2)
        | (u8::from(e.access) << 3);
    d[4] = e.asc;
    d[5] = e.ascq;
    if let Some(src) = e.source {
        d[9] = 0x80;
        d[10..12].copy_from_slice(&src.to_be_bytes());
    }
    if voltag {
        put_ascii(
            &mut d[DESCRIPTOR_LEN..DESCRIPTOR_LEN + VOLUME_ID_LEN],
            e.volume_tag.as_deref().unwrap_or(""),
        );
    }
}
