//! Big-endian field access for decoders and encoders. Readers return `None` past the end of the
//! buffer instead of panicking, so decoders can turn a short response into a typed error.

/// The big-endian `u16` at `off`, if the buffer holds it.
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// The big-endian 24-bit value at `off`, if the buffer holds it.
pub(crate) fn u24_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(3)?)?;
    Some(u32::from_be_bytes([0, s[0], s[1], s[2]]))
}

/// The big-endian `u32` at `off`, if the buffer holds it.
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The big-endian `u64` at `off`, if the buffer holds it.
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

/// Writes the low 24 bits of `v` big-endian at `off`.
///
/// # Panics
/// If `v` does not fit 24 bits or the buffer is too short (both are bugs in the caller).
pub(crate) fn put_u24(b: &mut [u8], off: usize, v: u32) {
    assert!(v <= 0x00FF_FFFF, "{v} does not fit a 24-bit field");
    b[off..off + 3].copy_from_slice(&v.to_be_bytes()[1..]);
}

/// Text from a fixed-width ASCII field: trailing and leading spaces and NULs removed, bytes
/// outside printable ASCII replaced by `?` so a garbled field still prints safely.
pub(crate) fn ascii_field(b: &[u8]) -> String {
    let blank = |c: &u8| *c == b' ' || *c == 0;
    let start = b.iter().position(|c| !blank(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !blank(c)).map_or(start, |i| i + 1);
    b[start..end].iter().map(|&c| if (0x20..0x7F).contains(&c) { c as char } else { '?' }).collect()
}

/// Writes `text` left-aligned into `field`, padded with spaces and cut at the field's width.
pub(crate) fn put_ascii(field: &mut [u8], text: &str) {
    field.fill(b' ');
    let n = text.len().min(field.len());
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_stop_at_the_end() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&b, 6), Some(0x0708));
        assert_eq!(u16_at(&b, 7), None);
        assert_eq!(u24_at(&b, 5), Some(0x060708));
        assert_eq!(u24_at(&b, 6), None);
        assert_eq!(u32_at(&b, 4), Some(0x05060708));
        assert_eq!(u32_at(&b, usize::MAX), None);
        assert_eq!(u64_at(&b, 0), Some(0x0102030405060708));
        assert_eq!(u64_at(&b, 1), None);
    }

    #[test]
    fn ascii_fields_are_trimmed_and_sanitised() {
        assert_eq!(ascii_field(b"  AB12CDL8  \0\0"), "AB12CDL8");
        assert_eq!(ascii_field(b"     "), "");
        assert_eq!(ascii_field(b"A\xFFB"), "A?B");
        let mut f = [0u8; 6];
        put_ascii(&mut f, "XY");
        assert_eq!(&f, b"XY    ");
        put_ascii(&mut f, "TOOLONGTEXT");
        assert_eq!(&f, b"TOOLON");
    }

    #[test]
    #[should_panic(expected = "24-bit")]
    fn put_u24_refuses_wide_values() {
        put_u24(&mut [0; 3], 0, 0x0100_0000);
    }
}
