//! Line editing for a dumb terminal: bytes typed in, the echo to send back and whole lines out.
//!
//! A serial terminal does not echo what is typed, so the console does: printable ASCII as
//! typed (or `*` while a PIN is entered), backspace as `BS SP BS`, which every terminal
//! understands. Everything else a line could carry is dropped here, so that nothing past
//! this point sees control characters: escape sequences (arrow keys and the like, swallowed
//! whole), other control characters, bytes over 0x7e (line noise at a wrong speed, UTF-8).
//! A line is at most [`MAX_LINE`] characters; more rings the bell and is not taken.

use heapless::String;

/// Longest line a person can type.
pub const MAX_LINE: usize = 120;

const BELL: u8 = 0x07;
const BS: u8 = 0x08;
const DEL: u8 = 0x7f;
const ESC: u8 = 0x1b;
const CTRL_C: u8 = 0x03;
const CTRL_U: u8 = 0x15;

/// Where the editor is within an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [ …` or `ESC O …`, until the final byte.
    Sequence,
}

/// What one byte typed did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Typed {
    /// Bytes to send back to the terminal.
    pub echo: std::vec::Vec<u8>,
    /// A line ended by Enter, without its end.
    pub line: Option<std::string::String>,
}

/// The line being typed.
#[derive(Debug, Clone)]
pub struct Editor {
    buf: String<MAX_LINE>,
    escape: Escape,
    /// The last byte was CR: an LF right after it is the same Enter.
    after_cr: bool,
    /// Echo `*` instead of the characters.
    secret: bool,
}

impl Default for Editor {
    fn default() -> Editor {
        Editor::new()
    }
}

impl Editor {
    /// An empty line.
    pub fn new() -> Editor {
        Editor { buf: String::new(), escape: Escape::None, after_cr: false, secret: false }
    }

    /// Echo `*` for each character from now on (`true`) or the characters themselves.
    pub fn set_secret(&mut self, secret: bool) {
        self.secret = secret;
    }

    /// What is typed so far.
    pub fn pending(&self) -> &str {
        &self.buf
    }

    /// Takes one byte from the terminal.
    pub fn feed(&mut self, b: u8) -> Typed {
        let mut out = Typed::default();
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Start => {
                self.escape = if b == b'[' || b == b'O' { Escape::Sequence } else { Escape::None };
                return out;
            }
            Escape::Sequence => {
                // Parameters and intermediates are 0x20..=0x3f; the final byte ends it.
                if !(0x20..=0x3f).contains(&b) {
                    self.escape = Escape::None;
                }
                return out;
            }
            Escape::None => {}
        }
        match b {
            b'\r' | b'\n' => {
                if b == b'\n' && after_cr {
                    return out;
                }
                self.after_cr = b == b'\r';
                out.echo.extend_from_slice(b"\r\n");
                out.line = Some(self.buf.as_str().into());
                self.buf.clear();
            }
            // Erasing past the start of the line echoes nothing.
            BS | DEL if self.buf.pop().is_some() => out.echo.extend_from_slice(b"\x08 \x08"),
            CTRL_U => {
                for _ in 0..self.buf.len() {
                    out.echo.extend_from_slice(b"\x08 \x08");
                }
                self.buf.clear();
            }
            CTRL_C => {
                self.buf.clear();
                out.echo.extend_from_slice(b"^C\r\n");
                out.line = Some(std::string::String::new());
            }
            ESC => self.escape = Escape::Start,
            0x20..=0x7e => {
                if self.buf.push(b as char).is_ok() {
                    out.echo.push(if self.secret { b'*' } else { b });
                } else {
                    out.echo.push(BELL);
                }
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn feed_all(e: &mut Editor, bytes: &[u8]) -> (Vec<u8>, Vec<std::string::String>) {
        let mut echo = Vec::new();
        let mut lines = Vec::new();
        for &b in bytes {
            let t = e.feed(b);
            echo.extend(t.echo);
            lines.extend(t.line);
        }
        (echo, lines)
    }

    #[test]
    fn lines_end_on_cr_lf_or_crlf_once() {
        let mut e = Editor::new();
        let (echo, lines) = feed_all(&mut e, b"status\r\njobs\rlog\n\r\n");
        assert_eq!(lines, ["status", "jobs", "log", ""]);
        assert_eq!(echo, b"status\r\njobs\r\nlog\r\n\r\n");
    }

    #[test]
    fn backspace_and_kill_edit_the_line() {
        let mut e = Editor::new();
        let (echo, lines) = feed_all(&mut e, b"stz\x7fat\x08\x08atus\r");
        assert_eq!(lines, ["status"]);
        assert!(echo.starts_with(b"stz\x08 \x08at"));
        let (_, lines) = feed_all(&mut e, b"garbage\x15jobs\r");
        assert_eq!(lines, ["jobs"]);
        // Backspace on an empty line sends nothing.
        assert!(e.feed(DEL).echo.is_empty());
    }

    #[test]
    fn escape_sequences_and_noise_are_dropped() {
        let mut e = Editor::new();
        // Arrow up, a function key, an 8-bit byte, a NUL, a lone ESC followed by a letter.
        let (echo, lines) = feed_all(&mut e, b"st\x1b[Aat\x1b[15~u\xc3\xa9\x00s\x1bx\r");
        assert_eq!(lines, ["status"]);
        assert!(!echo.contains(&ESC));
    }

    #[test]
    fn secret_echoes_stars_and_ctrl_c_cancels() {
        let mut e = Editor::new();
        e.set_secret(true);
        let (echo, lines) = feed_all(&mut e, b"2468\r");
        assert_eq!(lines, ["2468"]);
        assert_eq!(echo, b"****\r\n");
        let (_, lines) = feed_all(&mut e, b"12\x03");
        assert_eq!(lines, [""]);
    }

    #[test]
    fn an_over_long_line_rings_and_is_cut() {
        let mut e = Editor::new();
        let (echo, lines) = feed_all(&mut e, &[b'x'; MAX_LINE + 5]);
        assert!(lines.is_empty());
        assert_eq!(echo.iter().filter(|&&b| b == BELL).count(), 5);
        assert_eq!(e.pending().len(), MAX_LINE);
    }

    proptest! {
        #[test]
        fn any_bytes_give_printable_lines_and_safe_echo(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut e = Editor::new();
            let (echo, lines) = feed_all(&mut e, &bytes);
            for l in &lines {
                prop_assert!(l.len() <= MAX_LINE);
                prop_assert!(l.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            }
            prop_assert!(echo.iter().all(|&b| b == b'\r' || b == b'\n' || b == BS || b == BELL || (0x20..=0x7e).contains(&b)));
        }
    }
}
