//! `cargo xtask destroy`: deletes a pattern's stack in an env after confirmation; production
//! also needs `--force-prod`. Locally it also stops the stack's functions and drops its
//! database ([`sagaform_deploy::workflow::destroy_command`] does it all).

use sagaform_deploy::Progress;
use sagaform_deploy::destroy::{DestroyOptions, DestroyResult};
use sagaform_deploy::workflow::destroy_command;
use sagaform_local::LocalEnv;

use crate::stack_args::ChangeArgs;

/// Arguments of `cargo xtask destroy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    change: ChangeArgs,
    /// Allow destroying a production stack (turns its termination protection off).
    #[arg(long)]
    force_prod: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let stack = args.change.stack.load()?;
    let options = DestroyOptions {
        force_prod: args.force_prod,
        timeout: args.change.timeout(),
    };
    let outcome = destroy_command(
        stack.pattern_env(),
        &options,
        args.change.stack.endpoint_url.clone(),
        args.change.confirm().as_ref(),
        &LocalEnv::new(stack.workspace.clone()),
        &Progress::stderr(),
    )?;
    if args.change.stack.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    match outcome.result {
        DestroyResult::Destroyed => println!(
            "{}: destroyed ({} resource(s) retained, {:.1} s)",
            outcome.stack_name,
            outcome.retained.len(),
            outcome.seconds
        ),
        DestroyResult::NothingToDestroy => {
            println!("{}: nothing to destroy", outcome.stack_name)
        }
    }
    Ok(())
}
