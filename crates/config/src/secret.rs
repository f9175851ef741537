//! Secrets held by the configuration, and where the upstream password comes from.
//!
//! Owns [`Secret`], a string whose `Debug` output is `[redacted]` and which has no `Display`,
//! so a password cannot reach a log line or `pgcordon check` by accident, and
//! [`PasswordSource`]. It does not zero memory on drop.

use std::fmt;
use std::path::PathBuf;

use crate::error::PasswordError;

/// A secret string. `Debug` prints `[redacted]`; read it with [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that must send it (the upstream authentication).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the upstream password comes from (`upstream.password_file` or `upstream.password_env`).
#[derive(Clone, Debug)]
pub enum PasswordSource {
    /// A file, read when a connection needs it (not at load time), so it can be rotated.
    File(PathBuf),
    /// An environment variable, read once when the configuration is loaded.
    Env {
        /// The variable's name, safe to show.
        variable: String,
        /// Its value.
        value: Secret,
    },
}

impl PasswordSource {
    /// The password: the variable's value, or the file's content without one trailing line
    /// ending (`\n` or `\r\n`), which editors and `echo` add.
    ///
    /// # Errors
    /// For a file: it cannot be read, is not UTF-8, or is empty once the line ending is removed.
    pub fn password(&self) -> Result<Secret, PasswordError> {
        let file = match self {
            PasswordSource::Env { value, .. } => return Ok(value.clone()),
            PasswordSource::File(file) => file,
        };

        let bytes = std::fs::read(file).map_err(|source| PasswordError::Read {
            file: file.clone(),
            source,
        })?;
        let text =
            String::from_utf8(bytes).map_err(|_| PasswordError::NotUtf8 { file: file.clone() })?;

        let trimmed = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if trimmed.is_empty() {
            return Err(PasswordError::Empty { file: file.clone() });
        }
        Ok(Secret::new(trimmed.to_owned()))
    }

    /// A description that names the source and never the secret, for summaries and logs.
    pub fn describe(&self) -> String {
        match self {
            PasswordSource::File(file) => format!("file {}", file.display()),
            PasswordSource::Env { variable, .. } => format!("environment variable {variable}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_secret_is_redacted() {
        let secret = Secret::new("hunter2-s3cret".to_owned());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2-s3cret");

        let source = PasswordSource::Env {
            variable: "PG_PASS".to_owned(),
            value: secret.clone(),
        };
        let shown = format!("{source:?} {source:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("PG_PASS"), "{shown}");
    }

    #[test]
    fn password_file_loses_one_line_ending_only() {
        let dir =
            std::env::temp_dir().join(format!("pgcordon-config-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("unix", "pa ss\n", Some("pa ss")),
            ("dos", "pa ss\r\n", Some("pa ss")),
            ("none", "pa ss", Some("pa ss")),
            ("two", "pa ss\n\n", Some("pa ss\n")),
            ("empty", "\n", None),
        ];
        for (name, content, expected) in cases {
            let file = dir.join(name);
            std::fs::write(&file, content).unwrap();
            let got = PasswordSource::File(file.clone()).password();
            match expected {
                Some(want) => assert_eq!(got.unwrap().expose(), want, "{name}"),
                None => assert!(matches!(got, Err(PasswordError::Empty { .. })), "{name}"),
            }
        }
        let missing = PasswordSource::File(dir.join("absent")).password();
        assert!(matches!(missing, Err(PasswordError::Read { .. })));
        std::fs::write(dir.join("binary"), [0xff, 0xfe]).unwrap();
        let binary = PasswordSource::File(dir.join("binary")).password();
        assert!(matches!(binary, Err(PasswordError::NotUtf8 { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
