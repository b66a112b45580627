//! Finding and reading env files: `env/defaults.toml` plus `env/<name>.toml` for every
//! environment, relative to the workspace root so messages and generated files name them the same
//! way on every machine.

use std::fs;
use std::path::Path;

use super::merge::{Merged, Source};
use super::validate::{default_saga, validate};
use super::{ConfigError, EnvConfig};

/// The folder of env files, relative to the workspace root.
pub const ENV_DIR: &str = "env";

/// The stem of the shared defaults file; it is not an environment.
pub const DEFAULTS: &str = "defaults";

/// The names of every environment: the `.toml` files in `env/` except the defaults, sorted.
pub fn env_names(root: &Path) -> Result<Vec<String>, ConfigError> {
    let dir = root.join(ENV_DIR);
    let read_error = |source| ConfigError::Read {
        file: ENV_DIR.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if stem == DEFAULTS {
            continue;
        }
        if !is_env_name(stem) {
            return Err(ConfigError::Invalid {
                file: format!("{ENV_DIR}/{stem}.toml"),
                key: "(file name)".to_owned(),
                reason: "an env name is lowercase letters, digits and dashes, starting with a letter (it becomes part of stack names)".to_owned(),
            });
        }
        names.push(stem.to_owned());
    }
    names.sort();
    Ok(names)
}

fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Loads and validates environment `name` from `<root>/env`.
pub fn load_env(root: &Path, name: &str) -> Result<EnvConfig, ConfigError> {
    let valid = env_names(root)?;
    if !valid.iter().any(|n| n == name) {
        return Err(ConfigError::UnknownEnv {
            given: name.to_owned(),
            valid,
        });
    }
    let defaults_file = format!("{ENV_DIR}/{DEFAULTS}.toml");
    let env_file = format!("{ENV_DIR}/{name}.toml");
    let defaults = read(root, &defaults_file)?;
    let env = read(root, &env_file)?;
    load_from_sources(
        name,
        Source {
            file: &defaults_file,
            text: &defaults,
        },
        Source {
            file: &env_file,
            text: &env,
        },
    )
}

/// Loads every environment of `<root>/env`, in name order.
pub fn load_all(root: &Path) -> Result<Vec<EnvConfig>, ConfigError> {
    env_names(root)?
        .iter()
        .map(|name| load_env(root, name))
        .collect()
}

/// Merges `env` over `defaults` per key and validates the result as environment `name`; no
/// filesystem access, so tests and tools can feed text directly.
pub fn load_from_sources(
    name: &str,
    defaults: Source<'_>,
    env: Source<'_>,
) -> Result<EnvConfig, ConfigError> {
    load_from_layers(name, &[defaults, env])
}

/// Merges `layers` in order (later layers win per key) and validates the result as environment
/// `name`; the last layer is the environment's own file. The example environments add a layer
/// of their own this way.
pub(crate) fn load_from_layers(
    name: &str,
    layers: &[Source<'_>],
) -> Result<EnvConfig, ConfigError> {
    let merged = Merged::parse(layers)?;
    validate(name, &merged, default_saga())
}

fn read(root: &Path, file: &str) -> Result<String, ConfigError> {
    let text = fs::read_to_string(root.join(file)).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    // Windows checkouts may carry CRLF; TOML accepts it, but normalising keeps column numbers
    // in messages identical everywhere.
    Ok(text.replace("\r\n", "\n"))
}
