//! Human-written durations and byte sizes.
//!
//! Owns the two small grammars of the configuration file: durations such as `250ms`, `5s` or
//! `1h30m`, and byte sizes such as `65536`, `64KiB` or `16MiB`. It also owns the serde types
//! that read them from YAML. It does not decide which values a key accepts (that is
//! `validate`); the one exception is whether a duration may be zero (only a few keys allow it),
//! which is checked here so that the error names the key being read.

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};
use std::fmt;
use std::time::Duration;

/// Why a duration or byte size could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Nothing was written.
    #[error("it is empty")]
    Empty,
    /// A number had no unit after it (for durations), or text had no number before it.
    #[error("a number must be followed by a unit")]
    MissingUnit,
    /// A unit this grammar does not know.
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
    /// A decimal unit (KB, MB) where only binary units are accepted, to avoid a factor of 1.024.
    #[error("{0:?} is ambiguous; use the binary units KiB, MiB or GiB")]
    DecimalUnit(String),
    /// A unit appeared twice or after a smaller one, as in `30m1h`.
    #[error("units must appear once each, largest first (as in 1h30m)")]
    UnitOrder,
    /// A fraction such as `1.5s`.
    #[error("fractions are not accepted; use a smaller unit (1500ms, not 1.5s)")]
    Fraction,
    /// The value does not fit.
    #[error("the value is too large")]
    Overflow,
}

// ---- durations ----

/// Duration units, largest first, with their length in milliseconds.
const DURATION_UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration such as `250ms`, `5s`, `1m`, `1h` or `1h30m`.
///
/// Each part is a whole number and one of the units `h`, `m`, `s`, `ms`; units appear at most
/// once and largest first. Zero (`0s`) parses; callers that need a positive value check it.
///
/// # Errors
/// [`UnitError`] says which rule the text breaks.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    if text.is_empty() {
        return Err(UnitError::Empty);
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the last unit used; the next one must come later.
    let mut next_allowed = 0;
    while !rest.is_empty() {
        let (number, after) = split_number(rest)?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.starts_with('.') {
            return Err(UnitError::Fraction);
        }
        if unit.is_empty() {
            return Err(UnitError::MissingUnit);
        }
        let Some(index) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(UnitError::UnknownUnit(unit.to_owned()));
        };
        if index < next_allowed {
            return Err(UnitError::UnitOrder);
        }
        next_allowed = index + 1;
        let part = number
            .checked_mul(DURATION_UNITS[index].1)
            .ok_or(UnitError::Overflow)?;
        total_ms = total_ms.checked_add(part).ok_or(UnitError::Overflow)?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Writes a duration in the form [`parse_duration`] reads (`1h30m`, `250ms`, `0s`).
///
/// Durations with sub-millisecond parts, which the grammar cannot express, are written in
/// Rust's debug form (`1.5µs`).
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return format!("{duration:?}");
    }
    let Ok(mut ms) = u64::try_from(duration.as_millis()) else {
        return format!("{duration:?}");
    };
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, size) in DURATION_UNITS {
        if ms >= size {
            out.push_str(&format!("{}{name}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Splits the leading whole number off `text`.
fn split_number(text: &str) -> Result<(u64, &str), UnitError> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(UnitError::MissingUnit);
    }
    let (number, rest) = text.split_at(digits);
    let value = number.parse().map_err(|_| UnitError::Overflow)?;
    Ok((value, rest))
}

// ---- byte sizes ----

/// Byte size units and their factors; binary only (see [`UnitError::DecimalUnit`]).
const BYTE_UNITS: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// Parses a byte size written as a string: `65536`, `512B`, `64KiB`, `16MiB` or `1GiB`.
///
/// Unit names are matched without regard to case; decimal units (`KB`, `MB`, `k`) are refused
/// because readers disagree on whether they mean 1000 or 1024.
///
/// # Errors
/// [`UnitError`] says which rule the text breaks.
pub fn parse_byte_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UnitError::Empty);
    }
    let (number, unit) = split_number(text)?;
    let unit = unit.trim_start();
    if unit.starts_with('.') {
        return Err(UnitError::Fraction);
    }
    if unit.is_empty() {
        return Ok(number);
    }
    let Some((_, factor)) = BYTE_UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
    else {
        let decimal = ["k", "kb", "m", "mb", "g", "gb"];
        if decimal.iter().any(|d| d.eq_ignore_ascii_case(unit)) {
            return Err(UnitError::DecimalUnit(unit.to_owned()));
        }
        return Err(UnitError::UnknownUnit(unit.to_owned()));
    };
    number.checked_mul(*factor).ok_or(UnitError::Overflow)
}

/// Writes a byte size with the largest binary unit that divides it (`16MiB`, `100B`).
pub fn format_byte_size(bytes: u64) -> String {
    for (name, factor) in BYTE_UNITS {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{name}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

// ---- serde types for the raw structs ----

const EXPECT_DURATION: &str = "a duration above zero such as 5s, 250ms or 1h30m";
const EXPECT_DURATION_OR_ZERO: &str = "a duration such as 0s, 250ms or 5s";
const EXPECT_SIZE: &str = "a byte size such as 65536, 64KiB or 16MiB";

/// A duration read from YAML: a string in the [`parse_duration`] grammar, above zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PositiveDuration(pub(crate) Duration);

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = DurationVisitor { allow_zero: false };
        deserializer.deserialize_str(visitor).map(PositiveDuration)
    }
}

/// A duration read from YAML where zero has a meaning of its own (such as "do not wait").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AnyDuration(pub(crate) Duration);

impl<'de> Deserialize<'de> for AnyDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = DurationVisitor { allow_zero: true };
        deserializer.deserialize_str(visitor).map(AnyDuration)
    }
}

struct DurationVisitor {
    allow_zero: bool,
}

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_zero {
            f.write_str(EXPECT_DURATION_OR_ZERO)
        } else {
            f.write_str(EXPECT_DURATION)
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        match parse_duration(text) {
            Ok(d) if d.is_zero() && !self.allow_zero => {
                Err(E::invalid_value(Unexpected::Other(text), &self))
            }
            Ok(d) => Ok(d),
            Err(why) => {
                let found = format!("the string {text:?} ({why})");
                Err(E::invalid_value(Unexpected::Other(&found), &self))
            }
        }
    }
}

/// A byte size read from YAML: a non-negative integer or a string for [`parse_byte_size`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ByteSize(pub(crate) u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECT_SIZE)
    }

    fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(bytes))
    }

    fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
        u64::try_from(bytes)
            .map(ByteSize)
            .map_err(|_| E::invalid_value(Unexpected::Signed(bytes), &self))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
        parse_byte_size(text).map(ByteSize).map_err(|why| {
            let found = format!("the string {text:?} ({why})");
            E::invalid_value(Unexpected::Other(&found), &self)
        })
    }
}

/// A whole number read from YAML, kept wide so that range errors can say the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Int(pub(crate) i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntVisitor)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Int, E> {
        Ok(Int(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Int, E> {
        i64::try_from(n)
            .map(Int)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(n), &self))
    }
}

#[cfg(test)]
#[path = "units_tests.rs"]
mod tests;
