//! Where the tooling reads and writes inside a checkout: committed templates, the git-ignored
//! `.local/` folder (emulator state, locks, stack outputs) and cargo-lambda's build output.
//!
//! Every path goes through [`Workspace`] so tests can point the whole library at a temporary
//! copy of the parts they need.

use std::path::{Path, PathBuf};

use sagaform_stacks::Pattern;
use sagaform_stacks::config::EnvConfig;

/// A sagaform checkout (or a test's stand-in for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// A workspace rooted at `root` (the folder holding `Cargo.toml`, `env/` and `templates/`).
    pub fn new(root: impl Into<PathBuf>) -> Workspace {
        Workspace { root: root.into() }
    }

    /// The checkout this crate was compiled from.
    pub fn current() -> Workspace {
        Workspace::new(sagaform_tools::workspace_root())
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The committed template of a pattern and env, relative to the root (for messages).
    pub fn template_relative(pattern: Pattern, env: &str) -> String {
        format!("templates/{}/{env}.yaml", pattern.name())
    }

    /// The committed template of a pattern and env.
    pub fn template_path(&self, pattern: Pattern, env: &str) -> PathBuf {
        self.root.join(Self::template_relative(pattern, env))
    }

    /// The git-ignored folder of machine-local state.
    pub fn local_dir(&self) -> PathBuf {
        self.root.join(".local")
    }

    /// The stack outputs written by the last deploy of a pattern to an env; later commands
    /// (tests, the load generator, `cargo xtask` helpers) read it.
    pub fn outputs_path(&self, pattern: Pattern, env: &str) -> PathBuf {
        self.local_dir()
            .join("outputs")
            .join(format!("{}-{env}.json", pattern.name()))
    }

    /// The lock file of a stack, held while a deploy or destroy of it runs on this machine.
    pub fn lock_path(&self, stack_name: &str) -> PathBuf {
        self.local_dir()
            .join("locks")
            .join(format!("{stack_name}.lock"))
    }

    /// Where cargo-lambda puts the bootstrap binary of a function.
    pub fn lambda_binary(&self, function: &str) -> PathBuf {
        self.root
            .join("target")
            .join("lambda")
            .join(function)
            .join("bootstrap")
    }

    /// Where `cargo xtask build` writes the deterministic zip of a function: next to
    /// cargo-lambda's binary for AWS envs, in a folder of its own for the local env's host builds
    /// (`local`), so that a debug build is never deployed to AWS by `deploy --no-build`.
    pub fn package_zip(&self, function: &str, local: bool) -> PathBuf {
        let folder = if local { "local-packages" } else { "lambda" };
        self.root
            .join("target")
            .join(folder)
            .join(function)
            .join("bootstrap.zip")
    }

    /// Cargo's target folder for this workspace (`CARGO_TARGET_DIR` when set, as cargo itself
    /// reads it).
    pub fn cargo_target_dir(&self) -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("target"))
    }
}

impl Workspace {
    /// Copies the inputs of a deploy (`env/` and `templates/`) into `dir` and returns a
    /// workspace rooted there: tests and benchmarks deploy from such a scratch copy so their
    /// locks, outputs and config edits never touch the checkout.
    pub fn copy_inputs_to(&self, dir: &Path) -> Result<Workspace, crate::DeployError> {
        for folder in ["env", "templates"] {
            copy_tree(&self.root.join(folder), &dir.join(folder))?;
        }
        Ok(Workspace::new(dir))
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), crate::DeployError> {
    use crate::DeployError;
    std::fs::create_dir_all(to).map_err(DeployError::io("create", to))?;
    for entry in std::fs::read_dir(from).map_err(DeployError::io("list", from))? {
        let entry = entry.map_err(DeployError::io("list", from))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        if source.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(DeployError::io("copy", &source))?;
        }
    }
    Ok(())
}

/// The CloudFormation stack name of a pattern in an env.
pub fn stack_name(pattern: Pattern, env: &str) -> String {
    format!("sagaform-{}-{env}", pattern.name())
}

/// One pattern in one env of a checkout: what the stack commands act on.
#[derive(Debug, Clone, Copy)]
pub struct PatternEnv<'a> {
    /// The checkout (templates, `.local/`).
    pub workspace: &'a Workspace,
    /// The validated env config.
    pub env: &'a EnvConfig,
    /// The pattern.
    pub pattern: Pattern,
}

impl PatternEnv<'_> {
    /// The stack name, `sagaform-<pattern>-<env>`.
    pub fn stack_name(&self) -> String {
        stack_name(self.pattern, &self.env.name)
    }

    /// The committed template, relative to the checkout (for messages).
    pub fn template_file(&self) -> String {
        Workspace::template_relative(self.pattern, &self.env.name)
    }

    /// The committed template.
    pub fn template_path(&self) -> PathBuf {
        self.workspace.template_path(self.pattern, &self.env.name)
    }

    /// The outputs file the last deploy of this stack wrote.
    pub fn outputs_path(&self) -> PathBuf {
        self.workspace.outputs_path(self.pattern, &self.env.name)
    }
}
