//! `cargo xtask destroy`: deletes a pattern's stack in an env after confirmation; production
//! also needs `--force-prod`. Locally it also stops the stack's functions and drops its
//! database ([`sagaform_deploy::workflow::destroy_command`] does it all).

use std::time::Duration;

use sagaform_deploy::destroy::{DestroyOptions, DestroyResult};
use sagaform_deploy::workflow::destroy_command;
use sagaform_deploy::{PatternEnv, Progress, Workspace};
use sagaform_local::LocalEnv;
use sagaform_stacks::Pattern;
use sagaform_stacks::config;

use crate::deploy::{EXIT_CODES, confirm};
use crate::workspace;

/// Arguments of `cargo xtask destroy`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// Pattern (orchestrator, sqs, stepfunctions).
    #[arg(long)]
    pattern: Pattern,
    /// Environment (a file env/<env>.toml).
    #[arg(long, default_value = "local")]
    env: String,
    /// Do not ask to type the stack name.
    #[arg(long)]
    yes: bool,
    /// Allow destroying a production stack (turns its termination protection off).
    #[arg(long)]
    force_prod: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Send every AWS call to this endpoint (another emulator) instead of AWS.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Give up waiting for the deletion after this many minutes.
    #[arg(long, default_value_t = 60)]
    timeout_minutes: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace::root()?;
    let workspace = Workspace::new(&root);
    let env = config::load_env(&root, &args.env)?;
    let options = DestroyOptions {
        force_prod: args.force_prod,
        timeout: Duration::from_secs(args.timeout_minutes * 60),
    };
    let outcome = destroy_command(
        PatternEnv {
            workspace: &workspace,
            env: &env,
            pattern: args.pattern,
        },
        &options,
        args.endpoint_url.clone(),
        confirm(args.yes).as_ref(),
        &LocalEnv::new(workspace.clone()),
        &Progress::stderr(),
    )?;
    if args.json {
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
