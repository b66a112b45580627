//! Project-local, pinned tools: a Python virtual environment under `.tools/venv` (git-ignored)
//! holding moto, cfn-lint, cargo-lambda, actionlint and shellcheck at the versions of
//! `tools/requirements.txt`, a second
//! one under `.tools/checkov-venv` holding checkov at the version of
//! `tools/checkov-requirements.txt`, and the moto server process used by tests and by the local
//! environment.
//!
//! checkov has a venv of its own because it pins `boto3` exactly (3.3.30 wants 1.35.49): in the
//! shared venv pip resolves, but holds moto's boto3 and botocore back from 1.44 to 1.35 and
//! cfn-lint's networkx from 3.6 to 2.6, changing the emulator under the local env and the tests
//! for a linter's sake. Only the template check needs checkov, so only it (and `cargo xtask
//! tools`) installs it, through [`Tools::checkov`]; a deploy never waits for it.
//!
//! Nothing here is installed globally: a fresh clone gets the same versions on first use, and
//! concurrent test binaries share one installation per venv through a file lock.

pub mod http;
pub mod moto;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned requirements, embedded so the stamp changes whenever the pins do.
const REQUIREMENTS: &str = include_str!("../requirements.txt");

/// The pinned checkov, embedded for the same reason, installed into a venv of its own.
const CHECKOV_REQUIREMENTS: &str = include_str!("../checkov-requirements.txt");

/// Errors while installing or locating a tool.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A command could not be started or failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line, for the user to re-run.
        command: String,
        /// Exit status and the tail of its output.
        detail: String,
    },
    /// No usable Python interpreter.
    #[error("python 3.9 or newer is needed to install the pinned tools: {0}")]
    NoPython(String),
    /// The emulator did not come up or answer.
    #[error("moto server: {0}")]
    Moto(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ToolsError {
    let path = path.to_path_buf();
    move |source| ToolsError::Io {
        action,
        path,
        source,
    }
}

/// The workspace root (the folder holding the virtual workspace `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // This crate sits one level below the root; the path is fixed at compile time so tests and
    // xtask agree whatever their working directory.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tools crate has a parent folder")
        .to_path_buf()
}

/// The installed, pinned tools.
#[derive(Debug, Clone)]
pub struct Tools {
    dir: PathBuf,
    venv: PathBuf,
}

impl Tools {
    /// Makes sure the pinned tools are installed under `<workspace>/.tools` and returns them.
    ///
    /// Idempotent and safe to call from many processes at once: the first caller installs while
    /// the others wait on a lock; later calls only compare a stamp file.
    pub fn ensure() -> Result<Tools, ToolsError> {
        Self::ensure_in(&workspace_root().join(".tools"))
    }

    /// [`Tools::ensure`] with an explicit tools folder.
    pub fn ensure_in(dir: &Path) -> Result<Tools, ToolsError> {
        let tools = Tools {
            dir: dir.to_path_buf(),
            venv: dir.join("venv"),
        };
        let install = Install {
            requirements_file: "requirements.txt",
            requirements: REQUIREMENTS,
            lock_file: "install.lock",
            what: "moto, cfn-lint, cargo-lambda, actionlint, shellcheck",
        };
        install.ensure(dir, &tools.venv)?;
        Ok(tools)
    }

    /// The pinned checkov executable, installed into `<tools>/checkov-venv` first if needed.
    ///
    /// Idempotent and safe to call from many processes at once, like [`Tools::ensure`], with a
    /// lock of its own, so that it never waits for an install of the other venv.
    pub fn checkov(&self) -> Result<PathBuf, ToolsError> {
        let venv = self.dir.join("checkov-venv");
        let install = Install {
            requirements_file: "checkov-requirements.txt",
            requirements: CHECKOV_REQUIREMENTS,
            lock_file: "checkov-install.lock",
            what: "checkov",
        };
        install.ensure(&self.dir, &venv)?;
        Ok(venv.join("bin").join("checkov"))
    }

    /// The path of an executable installed in the venv (`cfn-lint`, `moto_server`,
    /// `cargo-lambda`, `python`, ...).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.venv.join("bin").join(name)
    }

    /// The venv's `bin` folder, to put first on `PATH` (cargo-lambda finds zig there).
    pub fn bin_dir(&self) -> PathBuf {
        self.venv.join("bin")
    }

    /// The tools folder (`<workspace>/.tools`), for state files of tools started from here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The pinned requirements (`name==version` lines of `tools/requirements.txt`, then of
/// `tools/checkov-requirements.txt`).
pub fn pinned() -> impl Iterator<Item = &'static str> {
    REQUIREMENTS
        .lines()
        .chain(CHECKOV_REQUIREMENTS.lines())
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// What one venv holds, and the files its install uses in the tools folder.
struct Install {
    /// Where pip reads the requirements from.
    requirements_file: &'static str,
    /// The pinned requirements, also the venv's stamp.
    requirements: &'static str,
    /// The lock that serialises installs of this venv.
    lock_file: &'static str,
    /// The tools, named in the message shown while installing.
    what: &'static str,
}

impl Install {
    /// Makes sure `venv` holds the requirements: compares the stamp in the venv, and otherwise
    /// installs them while holding the lock in `dir`.
    fn ensure(&self, dir: &Path, venv: &Path) -> Result<(), ToolsError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let stamp = venv.join("sagaform-requirements.txt");
        if fs::read_to_string(&stamp).is_ok_and(|s| s == self.requirements) {
            return Ok(());
        }
        let lock_path = dir.join(self.lock_file);
        let lock = File::create(&lock_path).map_err(io_err("create", &lock_path))?;
        lock.lock().map_err(io_err("lock", &lock_path))?;
        // Another process may have finished the install while this one waited for the lock.
        if fs::read_to_string(&stamp).is_ok_and(|s| s == self.requirements) {
            return Ok(());
        }
        let python = find_python()?;
        eprintln!(
            "sagaform: installing pinned tools into {} ({}; once per checkout)",
            venv.display(),
            self.what
        );
        if !venv.join("bin/python").exists() {
            run(Command::new(&python).args(["-m", "venv"]).arg(venv))?;
        }
        let requirements = dir.join(self.requirements_file);
        fs::write(&requirements, self.requirements).map_err(io_err("write", &requirements))?;
        run(Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements))?;
        fs::write(&stamp, self.requirements).map_err(io_err("write", &stamp))?;
        Ok(())
    }
}

fn find_python() -> Result<PathBuf, ToolsError> {
    let mut last_error = String::from("no python3 on PATH");
    for candidate in ["python3", "python"] {
        match Command::new(candidate)
            .args([
                "-c",
                "import sys; assert sys.version_info >= (3, 9); print(sys.executable)",
            ])
            .output()
        {
            Ok(out) if out.status.success() => {
                let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                return Ok(PathBuf::from(path));
            }
            Ok(out) => last_error = format!("{candidate}: {}", tail(&out.stderr)),
            Err(e) => last_error = format!("{candidate}: {e}"),
        }
    }
    Err(ToolsError::NoPython(last_error))
}

fn run(command: &mut Command) -> Result<(), ToolsError> {
    let line = format!("{command:?}");
    let out = command.output().map_err(|e| ToolsError::Command {
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ToolsError::Command {
            command: line,
            detail: format!("{}: {}", out.status, tail(&out.stderr)),
        })
    }
}

/// The last lines of a command's output, enough to see why it failed.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_pinned_tool_names_an_exact_version() {
        let pinned: Vec<&str> = super::pinned().collect();
        assert_eq!(pinned.len(), 6, "{pinned:?}");
        for requirement in pinned {
            let (name, version) = requirement
                .split_once("==")
                .unwrap_or_else(|| panic!("{requirement} is not pinned with =="));
            assert!(!name.is_empty() && version.chars().next().is_some_and(|c| c.is_ascii_digit()));
        }
    }
}
