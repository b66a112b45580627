//! Finding the checkout to work on, so every command works from any folder of it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The sagaform checkout to work on: the nearest ancestor of the current folder holding both a
/// `Cargo.toml` and `env/defaults.toml`, else the checkout this binary was built from.
///
/// Walking up first means a binary built elsewhere (a shared target dir) still acts on the
/// checkout the user is standing in.
pub fn root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    if let Some(found) = cwd.ancestors().find(|dir| is_root(dir)) {
        return Ok(found.to_path_buf());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if is_root(&built_from) {
        return Ok(built_from);
    }
    bail!(
        "no sagaform checkout found above {} (looked for Cargo.toml next to env/defaults.toml)",
        cwd.display()
    )
}

fn is_root(dir: &Path) -> bool {
    dir.join("Cargo.toml").is_file() && dir.join("env/defaults.toml").is_file()
}
