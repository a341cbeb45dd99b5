//! Meeting codes: the human-friendly name of a room, like `abc-defg-hij`.
//!
//! This module owns the format only: generating a code from a CSPRNG and parsing what a person
//! typed. It must not resolve codes to rooms (storage does) and a code is never used as a file
//! path. A code is a handle, not a secret: guests still need an invitation
//! ([`crate::access_token::ApiKeys::admit_guest`]), and callers should rate-limit lookups.
//!
//! Codes are 10 letters grouped 3-4-3, drawn from the 23 lowercase letters without `i`, `l`
//! and `o` (confusable with `1`, `I` and `0` when read aloud or from a screen): 23¹⁰ ≈ 4·10¹³
//! codes, about 45 bits.
//!
//! ```
//! use signaling::meeting_code::MeetingCode;
//! let code = MeetingCode::generate();
//! let typed = format!("  {}  ", code.as_str().to_uppercase().replace('-', ""));
//! assert_eq!(typed.parse::<MeetingCode>().unwrap(), code);
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::fmt;
use std::str::FromStr;

use rand::{CryptoRng, Rng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The letters a code is made of.
pub const ALPHABET: &[u8; 23] = b"abcdefghjkmnpqrstuvwxyz";
/// Letters in a code.
pub const LETTERS: usize = 10;
/// Longest input [`MeetingCode::parse`] looks at, in bytes; longer input is refused unread.
pub const MAX_INPUT: usize = 64;

/// A well-formed meeting code, always stored in its canonical form `abc-defg-hij`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeetingCode(String);

/// Why a typed meeting code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MeetingCodeError {
    /// Nothing but spaces.
    #[error("the meeting code is empty")]
    Empty,
    /// More than [`MAX_INPUT`] bytes.
    #[error("the meeting code is too long")]
    TooLong,
    /// A character other than a code letter or a dash (0-based character index, after
    /// trimming).
    #[error("the meeting code has an invalid character at position {0}")]
    InvalidCharacter(usize),
    /// A dash elsewhere than after the 3rd and 7th letters, or two in a row.
    #[error("the meeting code has a dash in the wrong place")]
    MisplacedDash,
    /// Not exactly 10 letters.
    #[error("a meeting code has 10 letters, not {0}")]
    WrongLength(usize),
}

impl MeetingCode {
    /// A fresh code from the thread's CSPRNG.
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::rng())
    }

    /// A fresh code from `rng` (tests may pass a seeded CSPRNG).
    pub fn generate_with(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut code = String::with_capacity(LETTERS + 2);
        for i in 0..LETTERS {
            if i == 3 || i == 7 {
                code.push('-');
            }
            let letter = ALPHABET
                .get(rng.random_range(0..ALPHABET.len()))
                .copied()
                .unwrap_or(b'a');
            code.push(char::from(letter));
        }
        Self(code)
    }

    /// Parses what a person typed: surrounding whitespace, upper case and missing dashes are
    /// accepted (`" ABC-DEFG-HIJ "`, `"abcdefghij"`, `"abc-defghij"`); anything else is a
    /// [`MeetingCodeError`].
    pub fn parse(input: &str) -> Result<Self, MeetingCodeError> {
        if input.len() > MAX_INPUT {
            return Err(MeetingCodeError::TooLong);
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(MeetingCodeError::Empty);
        }
        let mut letters = String::with_capacity(LETTERS);
        let mut last_was_dash = false;
        for (position, c) in trimmed.chars().enumerate() {
            if c == '-' {
                let count = letters.len();
                if last_was_dash || !(count == 3 || count == 7) {
                    return Err(MeetingCodeError::MisplacedDash);
                }
                last_was_dash = true;
                continue;
            }
            let lower = c.to_ascii_lowercase();
            if !lower.is_ascii() || !ALPHABET.contains(&(lower as u8)) {
                return Err(MeetingCodeError::InvalidCharacter(position));
            }
            letters.push(lower);
            last_was_dash = false;
        }
        if letters.len() != LETTERS {
            return Err(MeetingCodeError::WrongLength(letters.len()));
        }
        if last_was_dash {
            return Err(MeetingCodeError::MisplacedDash);
        }
        let (a, rest) = letters.split_at(3);
        let (b, c) = rest.split_at(4);
        Ok(Self(format!("{a}-{b}-{c}")))
    }

    /// The canonical form, `abc-defg-hij`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MeetingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MeetingCode {
    type Err = MeetingCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for MeetingCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MeetingCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_codes_are_canonical_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let code = MeetingCode::generate();
            let s = code.as_str();
            assert_eq!(s.len(), 12, "{s}");
            assert_eq!((s.as_bytes()[3], s.as_bytes()[8]), (b'-', b'-'), "{s}");
            assert!(
                s.bytes()
                    .filter(|&b| b != b'-')
                    .all(|b| ALPHABET.contains(&b)),
                "{s}"
            );
            assert_eq!(MeetingCode::parse(s), Ok(code.clone()));
            assert!(seen.insert(code), "a repeated code in 2000 draws");
        }
        // Every letter of the alphabet shows up: the draw covers it.
        let letters: HashSet<u8> = seen
            .iter()
            .flat_map(|c| c.as_str().bytes().collect::<Vec<_>>())
            .collect();
        assert_eq!(letters.len(), ALPHABET.len() + 1);
    }

    #[test]
    fn typed_variants_normalise() {
        let want = MeetingCode::parse("abc-defg-hjk").unwrap();
        for typed in [
            "abc-defg-hjk",
            "ABC-DEFG-HJK",
            "  abcdefghjk\n",
            "abc-defghjk",
            "abcdefg-hjk",
            "\tAbC-dEfG-hJk ",
        ] {
            assert_eq!(MeetingCode::parse(typed), Ok(want.clone()), "{typed:?}");
        }
        assert_eq!(want.to_string(), "abc-defg-hjk");
        let json = serde_json::to_string(&want).unwrap();
        assert_eq!(json, r#""abc-defg-hjk""#);
        assert_eq!(
            serde_json::from_str::<MeetingCode>(r#"" ABCDEFGHJK""#).unwrap(),
            want
        );
        assert!(serde_json::from_str::<MeetingCode>(r#""../etc/passwd""#).is_err());
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        use MeetingCodeError::*;
        for (typed, err) in [
            ("", Empty),
            ("   ", Empty),
            ("abc-defg-hj", WrongLength(9)),
            ("abc-defg-hjkm", WrongLength(11)),
            ("abc--defg-hjk", MisplacedDash),
            ("ab-cdefg-hjk", MisplacedDash),
            ("-abc-defg-hjk", MisplacedDash),
            ("abc-defg-hjk-", MisplacedDash),
            ("abc defg hjk", InvalidCharacter(3)),
            ("abc-defg-hij", InvalidCharacter(10)),
            ("abc-defg-hj1", InvalidCharacter(11)),
            ("../defg-hjk", InvalidCharacter(0)),
            ("abc%2edefghj", InvalidCharacter(3)),
            ("abc\0defghjk", InvalidCharacter(3)),
            ("äbc-defg-hjk", InvalidCharacter(0)),
        ] {
            assert_eq!(MeetingCode::parse(typed), Err(err), "{typed:?}");
        }
        assert_eq!(MeetingCode::parse(&"a".repeat(10_000)), Err(TooLong));
    }
}
