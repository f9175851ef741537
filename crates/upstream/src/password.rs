//! Where the upstream password comes from, and a wrapper that keeps it out of logs.

use std::path::PathBuf;

/// A secret string whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The upstream password's source, read again for each new backend connection.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    /// A file holding the password; one trailing newline is ignored.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A value given directly (tests, the demo).
    Value(Secret),
}

/// Why the password could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot read password file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set or not valid UTF-8")]
    Env(String),
    #[error("the password from {0} is empty")]
    Empty(String),
}

impl PasswordSource {
    /// Reads the current password.
    ///
    /// # Errors
    /// An unreadable file, an unset variable, or an empty password.
    pub async fn read(&self) -> Result<Secret, PasswordError> {
        let (value, origin) = match self {
            PasswordSource::File(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|source| {
                    PasswordError::File {
                        path: path.clone(),
                        source,
                    }
                })?;
                (text, path.display().to_string())
            }
            PasswordSource::Env(name) => {
                let text = std::env::var(name).map_err(|_| PasswordError::Env(name.clone()))?;
                (text, format!("${name}"))
            }
            PasswordSource::Value(secret) => (secret.expose().to_owned(), "the settings".into()),
        };
        let trimmed = value.strip_suffix('\n').unwrap_or(&value);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(PasswordError::Empty(origin));
        }
        Ok(Secret(trimmed.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_is_reread_and_trailing_newline_dropped() {
        let dir = std::env::temp_dir().join(format!("pgcordon-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        std::fs::write(&path, "first\n").unwrap();
        let source = PasswordSource::File(path.clone());
        assert_eq!(source.read().await.unwrap().expose(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(source.read().await.unwrap().expose(), "second");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(source.read().await, Err(PasswordError::Empty(_))));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            source.read().await,
            Err(PasswordError::File { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let src = PasswordSource::Value(s);
        assert!(!format!("{src:?}").contains("hunter2"));
    }
}
