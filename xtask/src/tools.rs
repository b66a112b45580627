//! `cargo xtask tools`: installs the pinned tools into `.tools/venv` (and checkov into
//! `.tools/checkov-venv`) now, instead of on the first command that needs them, and prints them.
//! CI runs it in the background while it compiles, so the install is off the critical path; a
//! user can run it ahead of going offline.

use sagaform_tools::Tools;

/// Arguments of `cargo xtask tools` (none).
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let tools = Tools::ensure()?;
    let checkov = tools.checkov()?;
    for requirement in sagaform_tools::pinned() {
        println!("{requirement}");
    }
    println!("installed in {}", tools.bin_dir().display());
    println!("checkov installed as {}", checkov.display());
    Ok(())
}
