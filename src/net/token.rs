//! One-time enrolment tokens. `coffer agent add NAME` makes one; the person carries it to the
//! client, where `coffer agent enroll --token T` reads the agent's name back out of it, so the
//! token is all the client needs besides the box's address and fingerprint.
//!
//! A token is base64url without padding of `name`, a NUL, and [`SECRET_BYTES`] random bytes:
//! 59 to 118 characters, within the frame's token bound. The box keeps only its SHA-256
//! ([`digest`]), so the journal never holds a usable token.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::catalog::agent_name_ok;

/// Random bytes in a token: 192 bits, never guessed within its hour.
pub const SECRET_BYTES: usize = 24;
/// How long a token is accepted, in seconds.
pub const TOKEN_VALID_SECS: u64 = 3600;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a token is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The system's random source failed.
    #[error("the system's random source failed: {0}")]
    Random(String),
    /// Not what `coffer agent add` prints.
    #[error("not an enrolment token (copy it whole, as `coffer agent add` printed it on the box)")]
    Malformed,
}

/// A new token for agent `name` (a valid agent name).
pub fn make(name: &str) -> Result<String, TokenError> {
    debug_assert!(agent_name_ok(name));
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
    let mut raw = Vec::with_capacity(name.len() + 1 + SECRET_BYTES);
    raw.extend_from_slice(name.as_bytes());
    raw.push(0);
    raw.extend_from_slice(&secret);
    Ok(B64.encode(raw))
}

/// The agent name a token was made for.
pub fn name_of(token: &str) -> Result<String, TokenError> {
    let raw = B64.decode(token.trim()).map_err(|_| TokenError::Malformed)?;
    let nul = raw.iter().position(|&b| b == 0).ok_or(TokenError::Malformed)?;
    if raw.len() - nul - 1 != SECRET_BYTES {
        return Err(TokenError::Malformed);
    }
    let name = std::str::from_utf8(&raw[..nul]).map_err(|_| TokenError::Malformed)?;
    if !agent_name_ok(name) {
        return Err(TokenError::Malformed);
    }
    Ok(name.to_owned())
}

/// What the box keeps of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Compares a token's digest with the kept one in constant time.
pub fn matches(token: &str, kept: &[u8; 32]) -> bool {
    let d = digest(token);
    d.iter().zip(kept).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::{MAX_TOKEN, MIN_TOKEN};

    #[test]
    fn a_token_names_its_agent_and_fits_the_frame() {
        for name in ["a", "db1", &"n".repeat(64)] {
            let t = make(name).unwrap();
            assert_eq!(name_of(&t).unwrap(), name);
            assert!((MIN_TOKEN..=MAX_TOKEN).contains(&t.len()), "{} characters", t.len());
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert!(matches(&t, &digest(&t)));
            assert!(matches(&format!(" {t}\n"), &digest(&t)), "pasted with white space");
        }
        assert_ne!(make("db1").unwrap(), make("db1").unwrap());
    }

    #[test]
    fn other_strings_are_not_tokens() {
        let good = make("db1").unwrap();
        assert!(!matches(&make("db1").unwrap(), &digest(&good)));
        for bad in ["", "not base64!", &good[..good.len() - 4], &B64.encode(b"db1"), &B64.encode([0u8; 25])] {
            assert_eq!(name_of(bad), Err(TokenError::Malformed), "{bad:?}");
        }
        let mut raw = b"../x\0".to_vec();
        raw.extend_from_slice(&[1; SECRET_BYTES]);
        assert_eq!(name_of(&B64.encode(raw)), Err(TokenError::Malformed));
    }
}
