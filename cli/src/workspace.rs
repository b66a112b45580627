//! The checkout a command works on (found as `cargo xtask synth` finds it) and its env config.

use sagaform_deploy::Workspace;
use sagaform_stacks::config::{self, EnvConfig};

pub use xtask::checkout::root;

/// The checkout this command runs in ([`root`]) and the validated config of env `name` in it.
pub fn load_env(name: &str) -> anyhow::Result<(Workspace, EnvConfig)> {
    let root = root()?;
    let env = config::load_env(&root, name)?;
    Ok((Workspace::new(root), env))
}
