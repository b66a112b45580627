//! `cargo xtask destroy`: deletes a pattern's stack in an env after confirmation; production
//! also needs `--force-prod`.

use std::time::Duration;

use anyhow::Context;

use sagaform_deploy::Workspace;
use sagaform_deploy::confirm::{AssumeYes, Confirm, TerminalConfirm};
use sagaform_deploy::destroy::{DestroyOptions, DestroyResult, destroy_pattern};
use sagaform_deploy::{PatternEnv, Progress, local_services};
use sagaform_stacks::Pattern;
use sagaform_stacks::config;
use sagaform_stacks::config::StateStoreKind;

use crate::deploy::{EXIT_CODES, connect, runtime};
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
    let progress = Progress::stderr();
    let confirm: Box<dyn Confirm> = if args.yes {
        Box::new(AssumeYes)
    } else {
        Box::new(TerminalConfirm)
    };
    let options = DestroyOptions {
        force_prod: args.force_prod,
        timeout: Duration::from_secs(args.timeout_minutes * 60),
    };
    let outcome = runtime()?.block_on(async {
        let session = connect(&workspace, &env, args.endpoint_url.clone(), &progress).await?;
        destroy_pattern(
            &session,
            PatternEnv {
                workspace: &workspace,
                env: &env,
                pattern: args.pattern,
            },
            &options,
            confirm.as_ref(),
            &progress,
        )
        .await
    })?;
    // The functions of a destroyed local stack have nothing left to serve.
    if env.is_local()
        && args.endpoint_url.is_none()
        && let Some(pid) = local_services::stop_supervisor(&workspace, args.pattern)?
    {
        progress.line(format!(
            "local services: {} functions stopped (sagaform-local pid {pid})",
            args.pattern
        ));
    }
    // Locally the orchestrator's Aurora is a database of the local PostgreSQL server; it goes
    // with its stack, as the emulated tables do, so a new deploy starts empty.
    if env.is_local()
        && args.endpoint_url.is_none()
        && outcome.result == DestroyResult::Destroyed
        && env.store(args.pattern) == StateStoreKind::Aurora
    {
        let path = workspace.template_path(args.pattern, &env.name);
        let body = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(url) = local_services::local_database_url(&body, &path.display().to_string())?
            && runtime()?.block_on(local_services::drop_database(&url))?
        {
            progress.line(format!("local services: dropped database {url}"));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
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
    }
    Ok(())
}
