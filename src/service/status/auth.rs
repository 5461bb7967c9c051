//! Who may see the status: a request whose `Authorization` header carries the board's token,
//! either as a bearer token (scripts, Prometheus) or as the password of HTTP Basic auth with any
//! user name (browsers: they cannot send a bearer header from a URL, but they answer a Basic
//! challenge, with the credentials of a `http://user:token@host/` URL or by asking).
//!
//! The token is compared in constant time. A header that is malformed in any way (unknown
//! scheme, bad base64, no `:` in the Basic credentials, longer than [`MAX_CREDENTIALS`]) is
//! simply not authorized: the caller answers 401 either way.

/// Longest credentials (the part after the scheme) looked at; longer headers are refused
/// before decoding. Far above any usable token, far below the server's header limit.
pub const MAX_CREDENTIALS: usize = 1024;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `given` is the token, in time independent of both: hashing first makes the compared
/// strings the same length, so not even the token's length shows in the timing.
fn is_token(given: &[u8], token: &str) -> bool {
    constant_time_eq(blake3::hash(given).as_bytes(), blake3::hash(token.as_bytes()).as_bytes())
}

/// Whether an `Authorization` header carries `token`, as `Bearer TOKEN` or as
/// `Basic base64(USER:TOKEN)`. Scheme names are case-insensitive (RFC 7235).
pub fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(header) = header else {
        return false;
    };
    let Some(space) = header.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, credentials) = (&header[..space], header[space..].trim_ascii());
    if credentials.len() > MAX_CREDENTIALS {
        return false;
    }
    if scheme.eq_ignore_ascii_case(b"bearer") {
        is_token(credentials, token)
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        basic_password(credentials).is_some_and(|p| is_token(p.as_slice(), token))
    } else {
        false
    }
}

/// The password of Basic credentials (`base64(user:password)`; the user name cannot hold a
/// `:`, the password can).
fn basic_password(credentials: &[u8]) -> Option<Vec<u8>> {
    let decoded = decode_base64(credentials)?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

/// The value of one base64 character (standard alphabet, RFC 4648 §4).
fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes standard base64, padded or not; `None` for anything else (other characters,
/// padding in the middle, a length no encoding has).
pub fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    let mut s = s;
    if s.len().is_multiple_of(4) {
        for _ in 0..2 {
            s = s.strip_suffix(b"=").unwrap_or(s);
        }
    }
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    for group in s.chunks(4) {
        let mut bits = 0u32;
        for &c in group {
            bits = bits << 6 | sextet(c)?;
        }
        // A group of n characters holds n*6 bits: n-1 whole bytes, the rest is fill.
        bits <<= 6 * (4 - group.len());
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Standard padded base64, for building test headers.
    pub fn encode_base64(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let mut b = [0u8; 3];
            b[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    const TOKEN: &str = "0123456789abcdef";

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", encode_base64(user_pass.as_bytes()))
    }

    #[test]
    fn rfc4648_vectors_decode() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(decode_base64(enc.as_bytes()).as_deref(), Some(plain.as_bytes()), "{enc}");
            assert_eq!(encode_base64(plain.as_bytes()), enc);
            // Unpadded works too.
            let bare = enc.trim_end_matches('=');
            assert_eq!(decode_base64(bare.as_bytes()).as_deref(), Some(plain.as_bytes()), "{bare}");
        }
        // RFC 7617's example.
        assert_eq!(decode_base64(b"QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap(), b"Aladdin:open sesame");
    }

    #[test]
    fn malformed_base64_is_refused() {
        for bad in ["Z", "Zg=", "Z===", "Zg==Zg==", "Zm9v!", "Zm 9v", "=Zm9", "Zm9v===="] {
            assert_eq!(decode_base64(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn bearer_and_basic_both_carry_the_token() {
        let ok = |h: &str| authorized(Some(h.as_bytes()), TOKEN);
        assert!(ok(&format!("Bearer {TOKEN}")));
        assert!(ok(&format!("bearer  {TOKEN}")), "schemes are case-insensitive");
        assert!(ok(&basic(&format!("coffer:{TOKEN}"))));
        assert!(ok(&basic(&format!(":{TOKEN}"))), "any user name, even none");
        assert!(ok(&format!("BASIC {}", encode_base64(format!("x:{TOKEN}").as_bytes()))));
        // A token with a colon in it is still the whole password.
        assert!(authorized(Some(basic("u:a:b:cdefghijklmnop").as_bytes()), "a:b:cdefghijklmnop"));

        assert!(!authorized(None, TOKEN));
        assert!(!ok(TOKEN), "no scheme");
        assert!(!ok(&format!("Bearer {TOKEN}x")));
        assert!(!ok(&format!("Bearer {}", &TOKEN[1..])));
        assert!(!ok(&format!("Token {TOKEN}")));
        assert!(!ok(&basic(TOKEN)), "no colon: no password");
        assert!(!ok(&basic(&format!("{TOKEN}:"))), "the token as user name is not the password");
        assert!(!ok(&basic(&format!("coffer:{TOKEN}x"))));
        assert!(!ok(&format!("Basic {TOKEN}")), "not base64 of user:token");
        let long = basic(&format!("{}:{TOKEN}", "u".repeat(MAX_CREDENTIALS)));
        assert!(!ok(&long), "over the credentials limit");
    }

    #[test]
    fn equal_strings_compare_equal_and_others_do_not() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(is_token(TOKEN.as_bytes(), TOKEN));
        assert!(!is_token(b"", TOKEN));
    }

    proptest! {
        #[test]
        fn base64_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(decode_base64(encode_base64(&data).as_bytes()), Some(data));
        }

        #[test]
        fn any_bytes_decode_or_are_refused_without_panic(s in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(d) = decode_base64(&s) {
                prop_assert!(d.len() <= s.len() * 3 / 4 + 2);
            }
        }

        #[test]
        fn only_the_token_authorizes(user in "[^:]{0,12}", pass in "\\PC{0,24}") {
            let h = basic(&format!("{user}:{pass}"));
            prop_assert_eq!(authorized(Some(h.as_bytes()), TOKEN), pass == TOKEN);
            let b = format!("Bearer {pass}");
            prop_assert_eq!(authorized(Some(b.as_bytes()), TOKEN), pass.trim_ascii() == TOKEN);
        }
    }
}
