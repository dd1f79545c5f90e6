//! Hex text for digests, the way people and state files show them.
//!
//! One implementation for the whole crate: the policy check names every
//! release's artifact digest, and formatting byte by byte through
//! `format!` was a measurable share of it.

/// Lower-case hex digits, by value.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` in lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 * bytes.len());
    push(&mut text, bytes);
    text
}

/// Appends `bytes` in lower-case hex to `text`.
pub fn push(text: &mut String, bytes: &[u8]) {
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// The bytes `text` spells in hex, either case; `None` when it has an odd
/// length or any other character.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// A 32-byte digest in hex, either case.
pub fn decode_digest(text: &str) -> Option<[u8; 32]> {
    decode(text).and_then(|bytes| bytes.try_into().ok())
}

fn digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lower_case_and_decodes_either_case() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(encode(&bytes), "000fa5ff");
        assert_eq!(decode("000fa5ff").unwrap(), bytes);
        assert_eq!(decode("000FA5FF").unwrap(), bytes);
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn refuses_odd_lengths_and_other_characters() {
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("0g"), None);
        assert_eq!(decode("+1"), None);
        assert_eq!(decode(" 1"), None);
    }

    #[test]
    fn a_digest_is_exactly_32_bytes() {
        let digest = [7u8; 32];
        assert_eq!(decode_digest(&encode(&digest)), Some(digest));
        assert_eq!(decode_digest(&encode(&[7u8; 31])), None);
        assert_eq!(decode_digest(&encode(&[7u8; 33])), None);
    }
}
