//! WAL positions (log sequence numbers) in PostgreSQL's text form.
//!
//! Owns the `pg_lsn` text format as the server prints and reads it: two hexadecimal numbers of
//! at most eight digits each, the high and low 32 bits, separated by `/` (for example
//! `16/B374D848`). Positions order as the 64-bit numbers they stand for, and the distance between
//! two of them is a number of WAL bytes (PostgreSQL's `pg_wal_lsn_diff`).

use std::fmt;
use std::str::FromStr;

/// A position in the write-ahead log.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u64);

/// Longest prefix of a rejected input quoted in the error; servers send short values, and
/// anything longer is not an LSN anyway.
const QUOTED_INPUT_MAX: usize = 40;

/// The most hexadecimal digits PostgreSQL accepts in each half of an LSN.
const MAX_HALF_DIGITS: usize = 8;

impl Lsn {
    /// The position `value` bytes from the start of the log.
    pub const fn new(value: u64) -> Lsn {
        Lsn(value)
    }

    /// The position as a byte offset.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// WAL bytes from `earlier` to `self`; zero when `earlier` is not before `self`.
    pub const fn bytes_after(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// A text that is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {input:?}: expected two hexadecimal numbers of 1 to 8 digits separated by '/'"
)]
pub struct LsnParseError {
    /// The rejected text (its first characters when long).
    pub input: String,
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(text: &str) -> Result<Lsn, LsnParseError> {
        let invalid = || LsnParseError {
            input: text.chars().take(QUOTED_INPUT_MAX).collect(),
        };
        let (high, low) = text.split_once('/').ok_or_else(invalid)?;
        let high = parse_half(high).ok_or_else(invalid)?;
        let low = parse_half(low).ok_or_else(invalid)?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

/// One half of an LSN: 1 to 8 hex digits and nothing else (no sign, no spaces, no `0x`, which
/// `u32::from_str_radix` would partly accept).
fn parse_half(half: &str) -> Option<u32> {
    let digits_only = half.bytes().all(|b| b.is_ascii_hexdigit());
    if half.is_empty() || half.len() > MAX_HALF_DIGITS || !digits_only {
        return None;
    }
    u32::from_str_radix(half, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_server_text_form() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.as_u64(), 0x16_B374_D848);
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::new(0));
        assert_eq!(
            "FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(),
            Lsn::new(u64::MAX)
        );
        // Lower case and leading zeros are what pg_lsn input accepts too.
        assert_eq!("0/0000abcd".parse::<Lsn>().unwrap(), Lsn::new(0xABCD));
    }

    #[test]
    fn displays_like_postgresql() {
        assert_eq!(Lsn::new(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn::new(0).to_string(), "0/0");
        assert_eq!(Lsn::new(0x1_0000_0000).to_string(), "1/0");
        assert_eq!(format!("{:?}", Lsn::new(0x3_0000_0060)), "Lsn(3/60)");
        for text in ["3/1A", "0/16B3748", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(text.parse::<Lsn>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "",
            "/",
            "16",
            "16/",
            "/B374D848",
            "16/B374D848/1",
            "123456789/0",
            "0/123456789",
            "+1/0",
            "-1/0",
            " 1/0",
            "1/0 ",
            "0x1/0",
            "G/0",
            "1/é",
        ] {
            let err = text.parse::<Lsn>().unwrap_err();
            assert!(err.input.len() <= text.len(), "{text:?}");
        }
        let long = "1".repeat(1000);
        assert_eq!(
            long.parse::<Lsn>().unwrap_err().input.len(),
            QUOTED_INPUT_MAX
        );
    }

    #[test]
    fn orders_by_position_not_by_text() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        let c: Lsn = "A/0".parse().unwrap();
        let d: Lsn = "10/0".parse().unwrap();
        assert!(a < b && b < c && c < d);
        // As strings "10/0" < "A/0"; as positions it is the other way round.
        assert!("10/0" < "A/0");
        let mut all = vec![d, b, a, c];
        all.sort();
        assert_eq!(all, vec![a, b, c, d]);
    }

    #[test]
    fn distance_in_bytes() {
        let a: Lsn = "0/FFFFFF00".parse().unwrap();
        let b: Lsn = "1/100".parse().unwrap();
        assert_eq!(b.bytes_after(a), 0x200);
        assert_eq!(a.bytes_after(b), 0);
        assert_eq!(a.bytes_after(a), 0);
    }
}
