//! `cargo xtask synth`: writes `templates/<pattern>/<env>.yaml` and `.md` for every pattern x env,
//! or with `--check` only says which files are stale, missing or extra (CI and a test use it).

use anyhow::bail;
use sagaform_stacks::Pattern;
use sagaform_stacks::synth::{self, Selection};

use crate::checkout;

/// Arguments of `cargo xtask synth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this pattern (orchestrator, sqs, stepfunctions).
    #[arg(long)]
    pattern: Option<Pattern>,
    /// Only this environment (a file env/<env>.toml).
    #[arg(long)]
    env: Option<String>,
    /// Write nothing; fail naming each file that is stale, missing or extra.
    #[arg(long)]
    check: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = checkout::root()?;
    let selection = Selection {
        pattern: args.pattern,
        env: args.env,
    };
    let files = synth::generate(&root, &selection)?;
    if args.check {
        let drifts = synth::drift(&root, &files, &selection)?;
        if drifts.is_empty() {
            println!("templates are fresh ({} files)", files.len());
            return Ok(());
        }
        for drift in &drifts {
            eprintln!("{drift}");
        }
        bail!(
            "{} generated file(s) out of date: run `cargo xtask synth` and commit the result",
            drifts.len()
        );
    }
    let summary = synth::write(&root, &files, &selection)?;
    for path in &summary.written {
        println!("wrote {path}");
    }
    for path in &summary.removed {
        println!("removed {path}");
    }
    println!(
        "{} written, {} unchanged, {} removed",
        summary.written.len(),
        summary.unchanged.len(),
        summary.removed.len()
    );
    Ok(())
}
