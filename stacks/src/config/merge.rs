//! Parsing env files and merging them per key: a table in a later file is merged into the same
//! table of an earlier one key by key, so `[queue] batch_size = 1` in `env/local.toml` replaces
//! that one key of `env/defaults.toml` and keeps the rest of `[queue]`. Arrays and scalars are
//! replaced whole. The merged tree remembers which file set each key, so an error can point at
//! the file a reader has to open.

use std::collections::HashMap;

use super::ConfigError;

/// One env file: its name for messages (relative to the workspace root) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// File name for messages, e.g. `env/staging.toml`.
    pub file: &'a str,
    /// The TOML text.
    pub text: &'a str,
}

/// The merged tables of several files, with the file that set each key.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) root: toml::Table,
    files: Vec<String>,
    /// Dotted key -> index in `files` of the last file that set it.
    origins: HashMap<String, usize>,
}

impl Merged {
    /// Parses every source and merges them in order; later sources win per key.
    pub(crate) fn parse(sources: &[Source<'_>]) -> Result<Merged, ConfigError> {
        let mut merged = Merged {
            root: toml::Table::new(),
            files: sources.iter().map(|s| s.file.to_owned()).collect(),
            origins: HashMap::new(),
        };
        for (index, source) in sources.iter().enumerate() {
            let table = parse_table(source)?;
            let mut root = std::mem::take(&mut merged.root);
            merged.merge_into(&mut root, table, &mut Vec::new(), index);
            merged.root = root;
        }
        Ok(merged)
    }

    fn merge_into(
        &mut self,
        base: &mut toml::Table,
        layer: toml::Table,
        path: &mut Vec<String>,
        index: usize,
    ) {
        for (key, value) in layer {
            path.push(key.clone());
            self.origins.insert(dotted(path), index);
            match (base.get_mut(&key), value) {
                (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                    self.merge_into(existing, incoming, path, index);
                }
                (_, value) => {
                    self.record_descendants(&value, path, index);
                    base.insert(key, value);
                }
            }
            path.pop();
        }
    }

    fn record_descendants(&mut self, value: &toml::Value, path: &mut Vec<String>, index: usize) {
        if let toml::Value::Table(table) = value {
            for (key, child) in table {
                path.push(key.clone());
                self.origins.insert(dotted(path), index);
                self.record_descendants(child, path, index);
                path.pop();
            }
        }
    }

    /// The file that set a key, else the file that set its closest parent, else the last file
    /// (the environment's own file, where a missing key belongs).
    pub(crate) fn origin(&self, path: &[String]) -> &str {
        (1..=path.len())
            .rev()
            .find_map(|len| self.origins.get(&dotted(&path[..len])))
            .map(|&index| self.files[index].as_str())
            .unwrap_or_else(|| self.files.last().map(String::as_str).unwrap_or("env"))
    }

    /// The environment's own file (the last source).
    pub(crate) fn env_file(&self) -> &str {
        self.files.last().map(String::as_str).unwrap_or("env")
    }
}

fn parse_table(source: &Source<'_>) -> Result<toml::Table, ConfigError> {
    source.text.parse::<toml::Table>().map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        let (line, column) = line_and_column(source.text, offset);
        ConfigError::Syntax {
            file: source.file.to_owned(),
            line,
            column,
            reason: tidy_reason(error.message()),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Makes a parser message fit the house style: one line, no trailing period.
fn tidy_reason(message: &str) -> String {
    let one_line = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    one_line.trim_end_matches('.').to_owned()
}

/// Renders a key path the way TOML writes it: bare keys joined by dots, others quoted.
pub(crate) fn dotted<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for (i, key) in path.iter().enumerate() {
        let key = key.as_ref();
        if i > 0 {
            out.push('.');
        }
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            out.push_str(key);
        } else {
            out.push('"');
            out.push_str(&key.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
        }
    }
    out
}
