//! Typed access to the merged env tables: every getter knows the dotted key it reads and the file
//! that set it, so type, range and unknown-key errors come out already naming both.

use std::ops::RangeInclusive;

use super::ConfigError;
use super::error::Listed;
use super::merge::{Merged, dotted};

/// A table of the merged config at a known key path.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    merged: &'a Merged,
    path: &'a [String],
    table: &'a toml::Table,
}

/// A table reached from a [`Node`], owning its (longer) path.
pub(crate) struct Child<'a> {
    merged: &'a Merged,
    path: Vec<String>,
    table: &'a toml::Table,
}

impl<'a> Child<'a> {
    /// The child as a node to read from.
    pub(crate) fn node(&self) -> Node<'_> {
        Node {
            merged: self.merged,
            path: &self.path,
            table: self.table,
        }
    }
}

impl<'a> Node<'a> {
    /// The top-level table.
    pub(crate) fn root(merged: &'a Merged) -> Node<'a> {
        Node {
            merged,
            path: &[],
            table: &merged.root,
        }
    }

    /// Dotted path of a key in this table.
    pub(crate) fn key_path(&self, key: &str) -> String {
        let mut path = self.path.to_vec();
        path.push(key.to_owned());
        dotted(&path)
    }

    /// An error about a key of this table, attributed to the file that set it.
    pub(crate) fn error(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        let mut path = self.path.to_vec();
        path.push(key.to_owned());
        ConfigError::Invalid {
            file: self.merged.origin(&path).to_owned(),
            key: dotted(&path),
            reason: reason.into(),
        }
    }

    /// An error whose fix belongs in the environment's own file whichever file set the key: a
    /// missing key, or a rule that only this environment breaks (production without alarm
    /// emails must not send anyone to edit the shared defaults).
    pub(crate) fn error_in_env_file(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.merged.env_file().to_owned(),
            key: self.key_path(key),
            reason: reason.into(),
        }
    }

    fn missing(&self, key: &str, what: &str) -> ConfigError {
        self.error_in_env_file(key, format!("missing {what}"))
    }

    /// Rejects any key not in `allowed`, suggesting the closest allowed key for a typo.
    pub(crate) fn only_keys(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        for key in self.table.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let suggestion = allowed
                .iter()
                .map(|candidate| (edit_distance(key, candidate), candidate))
                .filter(|(distance, _)| *distance <= 2)
                .min()
                .map(|(_, candidate)| format!(" (did you mean `{candidate}`?)"))
                .unwrap_or_default();
            return Err(self.error(
                key,
                format!(
                    "unknown key{suggestion}, expected one of {}",
                    Listed(allowed)
                ),
            ));
        }
        Ok(())
    }

    /// The keys of this table, in file order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &'a String> + 'a {
        self.table.keys()
    }

    /// Whether a key is present.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn value(&self, key: &str, what: &str) -> Result<&'a toml::Value, ConfigError> {
        self.table.get(key).ok_or_else(|| self.missing(key, what))
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &toml::Value) -> ConfigError {
        let shown = match found {
            toml::Value::Table(_) | toml::Value::Array(_) => String::new(),
            other => format!(" {other}"),
        };
        self.error(
            key,
            format!("expected {expected}, found {}{shown}", found.type_str()),
        )
    }

    /// A required sub-table whose keys must all be in `allowed`.
    pub(crate) fn table(&self, key: &str, allowed: &[&str]) -> Result<Child<'a>, ConfigError> {
        let value = self.value(key, "table")?;
        self.as_table(key, value, allowed)
    }

    /// An optional sub-table whose keys must all be in `allowed`.
    pub(crate) fn opt_table(
        &self,
        key: &str,
        allowed: &[&str],
    ) -> Result<Option<Child<'a>>, ConfigError> {
        self.table
            .get(key)
            .map(|value| self.as_table(key, value, allowed))
            .transpose()
    }

    fn as_table(
        &self,
        key: &str,
        value: &'a toml::Value,
        allowed: &[&str],
    ) -> Result<Child<'a>, ConfigError> {
        let toml::Value::Table(table) = value else {
            return Err(self.wrong_type(key, "a table", value));
        };
        let mut path = self.path.to_vec();
        path.push(key.to_owned());
        let child = Child {
            merged: self.merged,
            path,
            table,
        };
        if !allowed.is_empty() {
            child.node().only_keys(allowed)?;
        }
        Ok(child)
    }

    /// A required string.
    pub(crate) fn string(&self, key: &str) -> Result<&'a str, ConfigError> {
        let value = self.value(key, "string")?;
        value
            .as_str()
            .ok_or_else(|| self.wrong_type(key, "a string", value))
    }

    /// One of a fixed set of strings, mapped to its value.
    pub(crate) fn choice<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let given = self.string(key)?;
        options
            .iter()
            .find(|(name, _)| *name == given)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
                self.error(key, format!("`{given}` is not one of {}", Listed(&names)))
            })
    }

    /// A required boolean.
    pub(crate) fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        let value = self.value(key, "boolean")?;
        value
            .as_bool()
            .ok_or_else(|| self.wrong_type(key, "a boolean", value))
    }

    /// A required integer within `range`; `limit` says whose limit the range is.
    pub(crate) fn int(
        &self,
        key: &str,
        range: RangeInclusive<u32>,
        limit: &str,
    ) -> Result<u32, ConfigError> {
        let value = self.value(key, "integer")?;
        let number = value
            .as_integer()
            .ok_or_else(|| self.wrong_type(key, "an integer", value))?;
        u32::try_from(number)
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                self.error(
                    key,
                    format!(
                        "{number} is outside {}..={} ({limit})",
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    /// An optional integer within `range`.
    pub(crate) fn opt_int(
        &self,
        key: &str,
        range: RangeInclusive<u32>,
        limit: &str,
    ) -> Result<Option<u32>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(_) => self.int(key, range, limit).map(Some),
        }
    }

    /// A required number (integers are accepted where a float is expected).
    pub(crate) fn number(&self, key: &str) -> Result<f64, ConfigError> {
        let value = self.value(key, "number")?;
        match value {
            toml::Value::Float(f) if f.is_finite() => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            other => Err(self.wrong_type(key, "a number", other)),
        }
    }

    /// A required array of strings.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<&'a str>, ConfigError> {
        let value = self.value(key, "array of strings")?;
        let toml::Value::Array(items) = value else {
            return Err(self.wrong_type(key, "an array of strings", value));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    self.error(
                        key,
                        format!("item {i}: expected a string, found {}", item.type_str()),
                    )
                })
            })
            .collect()
    }
}

/// Levenshtein distance, for "did you mean" hints on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
