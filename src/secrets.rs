//! The box's own secrets: a board file ships with the documented example token (and PIN), and
//! at first boot the image replaces them with random ones (`coffer board secrets FILE`, run by
//! `coffer-secrets.service`), shown once on the serial console.
//!
//! - Token: [`TOKEN_BYTES`] random bytes, base64url without padding (43 characters).
//! - PIN: [`PIN_DIGITS`] decimal digits, uniform (rejection sampling, no modulo bias).
//!
//! A board "holds the example secrets" when its status token is [`EXAMPLE_TOKEN`]; then both the
//! token and the console PIN are replaced. The PIN alone does not count: a board whose token
//! was already made its own (the hardware-in-the-loop harness hands one in with PIN 2468) was
//! written by someone who chose it. The rewrite keeps the file's comments and layout
//! (`toml_edit`), and the result must pass the board check before it replaces the file.
//! Randomness comes in as bytes, so the logic is tested without it.

use base64::Engine;

use crate::board::{Board, EXAMPLE_TOKEN};

/// Random bytes of a token.
pub const TOKEN_BYTES: usize = 32;
/// Digits of a PIN.
pub const PIN_DIGITS: u32 = 6;
/// Random bytes [`Secrets::from_random`] takes: the token's, then four per PIN draw.
pub const RANDOM_BYTES: usize = TOKEN_BYTES + 4 * PIN_DRAWS;
/// PIN draws before giving up; each is accepted with probability > 0.99, so 16 never run out
/// in practice (a failure is reported, never a biased PIN).
const PIN_DRAWS: usize = 16;

const PIN_RANGE: u32 = 10u32.pow(PIN_DIGITS);
/// Draws at or above this are rejected: the largest multiple of the PIN range in a u32.
const PIN_ACCEPT_BELOW: u32 = u32::MAX - (u32::MAX % PIN_RANGE);

/// New secrets for a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// The status endpoint's bearer token.
    pub token: String,
    /// The console PIN.
    pub pin: String,
}

/// Why the secrets could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The board file is not TOML.
    #[error("not a TOML board file: {0}")]
    Syntax(String),
    /// The rewritten board does not pass the board check.
    #[error("the board with new secrets does not pass the board check: {0}")]
    Board(#[from] crate::board::BoardError),
    /// The random bytes gave no unbiased PIN (practically impossible).
    #[error("no unbiased PIN from {PIN_DRAWS} draws: try again")]
    Unlucky,
    /// The system's random source failed.
    #[error("the system's random source failed: {0}")]
    Random(String),
}

impl Secrets {
    /// Secrets from [`RANDOM_BYTES`] random bytes.
    pub fn from_random(bytes: &[u8; RANDOM_BYTES]) -> Result<Secrets, SecretsError> {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..TOKEN_BYTES]);
        let draw = bytes[TOKEN_BYTES..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("four bytes")))
            .find(|&n| n < PIN_ACCEPT_BELOW)
            .ok_or(SecretsError::Unlucky)?;
        let pin = format!("{:0width$}", draw % PIN_RANGE, width = PIN_DIGITS as usize);
        Ok(Secrets { token, pin })
    }

    /// Secrets from the system's random source.
    pub fn generate() -> Result<Secrets, SecretsError> {
        let mut bytes = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| SecretsError::Random(e.to_string()))?;
        Secrets::from_random(&bytes)
    }
}

/// Whether the board text holds the example secrets (its status token is the example's).
pub fn holds_example(text: &str) -> Result<bool, SecretsError> {
    let doc = parse(text)?;
    Ok(doc.get("status").and_then(|s| s.get("token")).and_then(|t| t.as_str()) == Some(EXAMPLE_TOKEN))
}

/// The board text with `secrets` in place of its status token and console PIN (where it has
/// them), everything else as it was. The result passes the board check.
pub fn rewrite(text: &str, secrets: &Secrets) -> Result<String, SecretsError> {
    let mut doc = parse(text)?;
    if let Some(status) = doc.get_mut("status").and_then(|s| s.as_table_like_mut()) {
        status.insert("token", toml_edit::value(secrets.token.as_str()));
    }
    if let Some(console) = doc.get_mut("console").and_then(|s| s.as_table_like_mut()) {
        console.insert("pin", toml_edit::value(secrets.pin.as_str()));
    }
    let out = doc.to_string();
    Board::parse(&out)?;
    Ok(out)
}

fn parse(text: &str) -> Result<toml_edit::DocumentMut, SecretsError> {
    text.parse::<toml_edit::DocumentMut>().map_err(|e| SecretsError::Syntax(e.to_string()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const IMAGE_BOARD: &str = include_str!("../image/board.toml");

    fn secrets(seed: u8) -> Secrets {
        let mut bytes = [seed; RANDOM_BYTES];
        bytes.iter_mut().enumerate().for_each(|(i, b)| *b = b.wrapping_mul(31).wrapping_add(i as u8));
        Secrets::from_random(&bytes).unwrap()
    }

    #[test]
    fn the_image_board_is_refused_until_its_secrets_are_made() {
        assert!(holds_example(IMAGE_BOARD).unwrap());
        let e = Board::parse(IMAGE_BOARD).unwrap_err().to_string();
        assert!(e.starts_with("status.token: the documented example token"), "{e}");
        let s = secrets(7);
        let out = rewrite(IMAGE_BOARD, &s).unwrap();
        let board = Board::parse(&out).unwrap();
        assert_eq!(board.status.unwrap().token, s.token);
        assert_eq!(board.console.unwrap().pin, s.pin);
        assert!(!holds_example(&out).unwrap());
        // Comments and the rest of the board stay as they were.
        let kept = |t: &str| t.lines().filter(|l| !l.starts_with("token") && !l.starts_with("pin")).count();
        assert_eq!(kept(&out), kept(IMAGE_BOARD));
        assert!(out.starts_with("# The appliance image's board"));
    }

    #[test]
    fn tokens_are_43_base64url_characters_and_pins_6_digits() {
        let s = secrets(1);
        assert_eq!(s.token.len(), 43);
        assert!(s.token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{}", s.token);
        assert_eq!(s.pin.len(), 6);
        assert!(s.pin.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(secrets(1), secrets(2));
    }

    #[test]
    fn biased_pin_draws_are_rejected_not_folded() {
        let mut bytes = [0u8; RANDOM_BYTES];
        // Every draw but the last is in the biased tail.
        for c in bytes[TOKEN_BYTES..].chunks_exact_mut(4) {
            c.copy_from_slice(&u32::MAX.to_le_bytes());
        }
        assert!(matches!(Secrets::from_random(&bytes), Err(SecretsError::Unlucky)));
        let last = RANDOM_BYTES - 4;
        bytes[last..].copy_from_slice(&1_000_042u32.to_le_bytes());
        assert_eq!(Secrets::from_random(&bytes).unwrap().pin, "000042");
    }

    proptest! {
        #[test]
        fn any_random_bytes_make_a_board_that_passes_the_check(bytes in proptest::collection::vec(any::<u8>(), RANDOM_BYTES)) {
            let bytes: [u8; RANDOM_BYTES] = bytes.try_into().unwrap();
            if let Ok(s) = Secrets::from_random(&bytes) {
                prop_assert!(Board::parse(&rewrite(IMAGE_BOARD, &s).unwrap()).is_ok());
            }
        }
    }
}
