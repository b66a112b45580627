//! The one error type of config loading. Every message names the file, the dotted key and the
//! reason, lowercase and without a trailing period, so it reads well after `error: ` and can be
//! grepped for.

use std::fmt;

/// Why an environment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The env folder or a file in it could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file or folder, relative to the workspace root.
        file: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A file is not valid TOML.
    #[error("{file}: line {line}, column {column}: invalid toml: {reason}")]
    Syntax {
        /// The file, relative to the workspace root.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's explanation.
        reason: String,
    },
    /// The requested environment has no file.
    #[error("unknown env `{given}`: expected one of {}", list(valid))]
    UnknownEnv {
        /// What was asked for.
        given: String,
        /// The environments that exist (the files in `env/` except the defaults).
        valid: Vec<String>,
    },
    /// A key is unknown, missing, of the wrong type or has a value that does not work.
    #[error("{file}: {key}: {reason}")]
    Invalid {
        /// The file that set the key (or, for a missing key, the environment's own file).
        file: String,
        /// Dotted path of the key, e.g. `queue.batch_size`.
        key: String,
        /// What is wrong, lowercase, no trailing period.
        reason: String,
    },
}

impl ConfigError {
    /// The file the error is about, when there is one.
    pub fn file(&self) -> Option<&str> {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::Invalid { file, .. } => Some(file),
            ConfigError::UnknownEnv { .. } => None,
        }
    }

    /// The dotted key the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Formats names as `a, b, c` (or `none` for an empty list, which only a broken checkout has).
fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none (no env/<name>.toml found)".to_owned()
    } else {
        names.join(", ")
    }
}

/// A list of names displayed as `a, b, c`.
pub(crate) struct Listed<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for Listed<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            item.fmt(f)?;
        }
        Ok(())
    }
}
