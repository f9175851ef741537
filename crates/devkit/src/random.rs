//! Random bytes from the operating system, for certificate serials and generated passwords.
//!
//! Owns nothing else; it only wraps ring's system generator with the crate's error type.

use ring::rand::{SecureRandom, SystemRandom};

use crate::DevkitError;

/// Fills a fresh buffer of `len` random bytes; `purpose` names the caller in the error.
pub(crate) fn bytes(len: usize, purpose: &'static str) -> Result<Vec<u8>, DevkitError> {
    let mut buf = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| DevkitError::Random(purpose))?;
    Ok(buf)
}

/// A random lowercase hex string made of `len` random bytes (so `2 * len` characters).
pub(crate) fn hex(len: usize, purpose: &'static str) -> Result<String, DevkitError> {
    let raw = bytes(len, purpose)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}
