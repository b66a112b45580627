//! Rendering every pattern x environment into the files committed under `templates/`:
//! `templates/<pattern>/<env>.yaml` (the CloudFormation template) and `templates/<pattern>/<env>.md`
//! (its runbook), each with a first line saying it is generated.
//!
//! Everything is computed in memory before anything touches the disk, so a bad env file or a
//! failed policy check writes nothing; files are then replaced through a temporary file and a
//! rename, so a reader never sees half a template. The output depends only on the env files and
//! the saga definition: no absolute paths, no timestamps, `\n` line endings.
//!
//! Stale files: a full run (no filter) owns `templates/*/*.yaml` and `templates/*/*.md` and
//! deletes those that no pattern x env produces any more (a removed env leaves no orphan
//! template behind, and `check` reports such files as extra); a filtered run only touches the
//! files it selected.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use crate::Pattern;
use crate::config::{self, ConfigError, EnvConfig};

/// The folder of generated files, relative to the workspace root.
pub const TEMPLATES_DIR: &str = "templates";

/// Which patterns and environments to render; `None` means all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only this pattern.
    pub pattern: Option<Pattern>,
    /// Only this environment.
    pub env: Option<String>,
}

impl Selection {
    /// Every pattern and every environment.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// Whether nothing is filtered out (only then are stale files removed or reported).
    pub fn is_all(&self) -> bool {
        self.pattern.is_none() && self.env.is_none()
    }

    fn patterns(&self) -> Vec<Pattern> {
        match self.pattern {
            Some(pattern) => vec![pattern],
            None => Pattern::ALL.to_vec(),
        }
    }
}

/// One generated file: where it goes (relative to the workspace root, `/`-separated) and what it
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// E.g. `templates/sqs/prod.yaml`.
    pub path: String,
    /// The full contents, header line included.
    pub contents: String,
}

/// How a file on disk differs from what `synth` would write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DriftKind {
    /// Not on disk.
    Missing,
    /// On disk with other contents.
    Stale,
    /// On disk but produced by no pattern x env.
    Extra,
}

/// A file that `synth` would create, change or delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Drift {
    /// Path relative to the workspace root.
    pub path: String,
    /// What is wrong with it.
    pub kind: DriftKind,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DriftKind::Missing => "missing",
            DriftKind::Stale => "stale",
            DriftKind::Extra => "extra (no pattern x env produces it)",
        };
        write!(f, "{}: {what}", self.path)
    }
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Files created or replaced.
    pub written: Vec<String>,
    /// Files already up to date (left alone, so their modification time does not change).
    pub unchanged: Vec<String>,
    /// Stale generated files deleted (full runs only).
    pub removed: Vec<String>,
}

/// Why generating or writing the templates failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// An env file is missing, malformed or invalid, or the env does not exist.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Building one pattern for one environment failed (a policy check, or a bug in a builder:
    /// every config rule was checked when the env loaded). The source already names the pattern
    /// and the env.
    #[error("{source}")]
    Synth {
        /// The pattern being built.
        pattern: Pattern,
        /// The environment being built.
        env: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading or writing under `templates/` failed; nothing or only whole files were written.
    #[error("{path}: cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path, relative to the workspace root.
        path: String,
        /// What the operating system said.
        source: io::Error,
    },
}

/// What one pattern x env synthesizes to, before headers are added.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The CloudFormation template as YAML, without a header.
    pub template_yaml: String,
    /// The runbook as Markdown, without a header.
    pub runbook_markdown: String,
}

/// The header line of a generated template.
pub fn yaml_header(env: &str) -> String {
    format!("# {}", header_text(env))
}

/// The header line of a generated runbook (an HTML comment, invisible when rendered).
pub fn markdown_header(env: &str) -> String {
    format!("<!-- {} -->", header_text(env))
}

fn header_text(env: &str) -> String {
    format!(
        "Generated by `cargo xtask synth` from env/{}.toml, env/{env}.toml and the saga definition. Do not edit.",
        config::DEFAULTS
    )
}

/// The path of a generated file for a pattern, an env and an extension (`yaml` or `md`).
pub fn generated_path(pattern: Pattern, env: &str, extension: &str) -> String {
    format!("{TEMPLATES_DIR}/{pattern}/{env}.{extension}")
}

/// Loads the selected environments and synthesizes every selected pattern for each: the files
/// `cargo xtask synth` writes, in memory.
pub fn generate(root: &Path, selection: &Selection) -> Result<Vec<GeneratedFile>, GenerateError> {
    generate_with(root, selection, |pattern, env| {
        crate::synthesize(pattern, env).map(|synthesized| Rendered {
            template_yaml: synthesized.template_yaml,
            runbook_markdown: synthesized.runbook_markdown,
        })
    })
}

/// Loads the selected environments and renders every selected pattern for each with `render`,
/// returning the files in a stable order (pattern, then env, template before runbook).
pub fn generate_with<F, E>(
    root: &Path,
    selection: &Selection,
    mut render: F,
) -> Result<Vec<GeneratedFile>, GenerateError>
where
    F: FnMut(Pattern, &EnvConfig) -> Result<Rendered, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let envs = match &selection.env {
        Some(name) => vec![config::load_env(root, name)?],
        None => config::load_all(root)?,
    };
    let mut files = Vec::with_capacity(envs.len() * Pattern::ALL.len() * 2);
    for pattern in selection.patterns() {
        for env in &envs {
            let rendered = render(pattern, env).map_err(|source| GenerateError::Synth {
                pattern,
                env: env.name.clone(),
                source: source.into(),
            })?;
            files.push(GeneratedFile {
                path: generated_path(pattern, &env.name, "yaml"),
                contents: with_header(&yaml_header(&env.name), &rendered.template_yaml),
            });
            files.push(GeneratedFile {
                path: generated_path(pattern, &env.name, "md"),
                contents: with_header(&markdown_header(&env.name), &rendered.runbook_markdown),
            });
        }
    }
    Ok(files)
}

/// Prepends the header and normalises line endings so the bytes are the same on every machine.
fn with_header(header: &str, body: &str) -> String {
    // Most bodies have no carriage return: copying them only to look for one cost a copy of
    // every template.
    let normalised;
    let body = if body.contains('\r') {
        normalised = body.replace("\r\n", "\n");
        normalised.as_str()
    } else {
        body
    };
    let body = body.trim_end_matches('\n');
    let mut out = String::with_capacity(header.len() + body.len() + 2);
    out.push_str(header);
    out.push('\n');
    out.push_str(body);
    out.push('\n');
    out
}

/// Compares generated files with the disk: missing and stale files, plus extra generated files
/// when the selection is everything. Writes nothing.
pub fn drift(
    root: &Path,
    files: &[GeneratedFile],
    selection: &Selection,
) -> Result<Vec<Drift>, GenerateError> {
    let mut drifts = Vec::new();
    for file in files {
        match fs::read(root.join(&file.path)) {
            Ok(bytes) if bytes == file.contents.as_bytes() => {}
            Ok(_) => drifts.push(Drift {
                path: file.path.clone(),
                kind: DriftKind::Stale,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => drifts.push(Drift {
                path: file.path.clone(),
                kind: DriftKind::Missing,
            }),
            Err(source) => {
                return Err(GenerateError::Io {
                    action: "read",
                    path: file.path.clone(),
                    source,
                });
            }
        }
    }
    if selection.is_all() {
        let expected: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        for path in generated_on_disk(root)? {
            if !expected.contains(path.as_str()) {
                drifts.push(Drift {
                    path,
                    kind: DriftKind::Extra,
                });
            }
        }
    }
    drifts.sort();
    Ok(drifts)
}

/// Every `templates/*/*.yaml` and `templates/*/*.md` on disk, sorted.
fn generated_on_disk(root: &Path) -> Result<Vec<String>, GenerateError> {
    let mut found = Vec::new();
    let templates = root.join(TEMPLATES_DIR);
    let entries = match fs::read_dir(&templates) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(source) => return Err(io_error("list", TEMPLATES_DIR.to_owned(), source)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", TEMPLATES_DIR.to_owned(), e))?;
        let Some(dir_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        let dir_path = format!("{TEMPLATES_DIR}/{dir_name}");
        for file in fs::read_dir(entry.path()).map_err(|e| io_error("list", dir_path.clone(), e))? {
            let file = file.map_err(|e| io_error("list", dir_path.clone(), e))?;
            let Some(name) = file.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if (name.ends_with(".yaml") || name.ends_with(".md")) && !name.starts_with('.') {
                found.push(format!("{dir_path}/{name}"));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn io_error(action: &'static str, path: String, source: io::Error) -> GenerateError {
    GenerateError::Io {
        action,
        path,
        source,
    }
}

/// Writes the files that differ from the disk (each through a temporary file and a rename) and,
/// for a full selection, deletes generated files nothing produces any more.
///
/// Every changed file is first written next to its target; only when all of them are written are
/// they renamed into place, so a full disk or a permission error leaves the old templates as
/// they were.
pub fn write(
    root: &Path,
    files: &[GeneratedFile],
    selection: &Selection,
) -> Result<WriteSummary, GenerateError> {
    let drifts = drift(root, files, selection)?;
    let mut summary = WriteSummary::default();
    let changed: BTreeSet<&str> = drifts
        .iter()
        .filter(|d| d.kind != DriftKind::Extra)
        .map(|d| d.path.as_str())
        .collect();

    let mut staged: Vec<(String, &GeneratedFile)> = Vec::new();
    for file in files {
        if !changed.contains(file.path.as_str()) {
            summary.unchanged.push(file.path.clone());
            continue;
        }
        match stage(root, file) {
            Ok(temp) => staged.push((temp, file)),
            Err(error) => {
                discard(root, &staged);
                return Err(error);
            }
        }
    }
    for (index, (temp, file)) in staged.iter().enumerate() {
        if let Err(source) = fs::rename(root.join(temp), root.join(&file.path)) {
            discard(root, &staged[index..]);
            return Err(io_error("replace", file.path.clone(), source));
        }
        summary.written.push(file.path.clone());
    }

    for drift in drifts.iter().filter(|d| d.kind == DriftKind::Extra) {
        fs::remove_file(root.join(&drift.path))
            .map_err(|e| io_error("remove", drift.path.clone(), e))?;
        summary.removed.push(drift.path.clone());
        // A pattern folder left empty goes too; a folder with anything else in it stays.
        if let Some(parent) = Path::new(&drift.path).parent() {
            let _ = fs::remove_dir(root.join(parent));
        }
    }
    Ok(summary)
}

/// Writes a file's contents to a hidden temporary file next to its target.
fn stage(root: &Path, file: &GeneratedFile) -> Result<String, GenerateError> {
    let target = Path::new(&file.path);
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(io_error(
            "write",
            file.path.clone(),
            io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        ));
    };
    let parent_display = parent.to_string_lossy().into_owned();
    fs::create_dir_all(root.join(parent)).map_err(|e| io_error("create", parent_display, e))?;
    let temp = format!(
        "{}/.{}.tmp-{}",
        parent.to_string_lossy(),
        name.to_string_lossy(),
        std::process::id()
    );
    fs::write(root.join(&temp), &file.contents).map_err(|e| io_error("write", temp.clone(), e))?;
    Ok(temp)
}

fn discard(root: &Path, staged: &[(String, &GeneratedFile)]) {
    for (temp, _) in staged {
        let _ = fs::remove_file(root.join(temp));
    }
}
