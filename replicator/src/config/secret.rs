//! Secrets in the configuration: a password or a URI with credentials in it.
//!
//! **Contract.** A [`Secret`] never shows its value: `Debug` and `Display` print `<redacted>`, and
//! the only way to the text is [`Secret::expose`], called where the value is handed to the
//! PostgreSQL or Kafka client. Secrets come from the environment or from a file
//! ([`Secret::from_file`]: the whole file, without its trailing line break, as container
//! secrets and `echo pw > file` leave it); the configuration file itself only names those files,
//! so it can be shared, printed and checked into configuration management.

use std::fmt;
use std::path::Path;

use crate::error::Error;

/// A value that must never be printed or logged (module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads the secret in `path`; an error names `key` (the setting that named the file) and
    /// never quotes the file.
    pub fn from_file(key: &str, path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::Setting {
            key: key.to_owned(),
            problem: format!("cannot read {}: {error}", path.display()),
            fix: "make the file readable by the sidecar's user (a mounted secret), or give the secret through the environment instead".into(),
        })?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if value.is_empty() {
            return Err(Error::Setting {
                key: key.to_owned(),
                problem: format!("{} is empty", path.display()),
                fix: "write the secret into the file".into(),
            });
        }
        Ok(Secret(value.to_owned()))
    }

    /// The value, for the client that needs it. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn a_file_loses_its_line_break_and_errors_do_not_quote_it() -> Result<(), Error> {
        let dir = std::env::temp_dir().join(format!("replicator-secret-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("pg");
        let _ = std::fs::write(&path, "s3cr3t\n");
        assert_eq!(
            Secret::from_file("database.password_file", &path)?.expose(),
            "s3cr3t"
        );
        let missing = Secret::from_file("database.password_file", &dir.join("nope"));
        let shown = format!("{:?}", missing.err());
        assert!(shown.contains("database.password_file"), "{shown}");
        let _ = std::fs::write(&path, "\n");
        assert!(Secret::from_file("k", &path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
