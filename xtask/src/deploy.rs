//! `cargo xtask deploy`: the arguments and the printed result of the deploy workflow (build,
//! upload, change set, approval, execution, outputs and, locally, the local environment), which
//! is one call to [`sagaform_deploy::workflow::deploy_command`]. Also the pieces the other stack
//! commands share: approvals, the async runtime and exit codes.

use std::time::Duration;

use anyhow::Context;
use sagaform_deploy::confirm::{AssumeYes, Confirm, TerminalConfirm};
use sagaform_deploy::deploy::{DeployOptions, DeployResult};
use sagaform_deploy::workflow::{DeployRequest, Packages, deploy_command};
use sagaform_deploy::{DeployError, EXIT_ERROR, PatternEnv, Progress, Workspace};
use sagaform_local::LocalEnv;
use sagaform_stacks::Pattern;
use sagaform_stacks::config;

use crate::build::BuildOptions;
use crate::workspace;

/// Exit codes of the stack commands, shown in their `--help`.
pub const EXIT_CODES: &str = "Exit codes:
  0  success, including \"no changes\" and \"nothing to destroy\"
  1  error (AWS error, failed stack operation, build failure)
  2  usage error
  3  refused: stale template, confirmation needed without a terminal (use --yes) or declined,
     account mismatch, concurrent deploy of the same stack, production protection";

/// Arguments of `cargo xtask deploy`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// Pattern to deploy (orchestrator, sqs, stepfunctions).
    #[arg(long)]
    pattern: Pattern,
    /// Environment (a file env/<env>.toml); `local` deploys to the local emulator.
    #[arg(long, default_value = "local")]
    env: String,
    /// Approve without asking (production and IAM-broadening changes ask otherwise).
    #[arg(long)]
    yes: bool,
    /// Create the change set and print it, but leave it for review instead of executing it.
    #[arg(long)]
    no_execute: bool,
    /// Print the result as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// Send every AWS call to this endpoint (another emulator) instead of AWS.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Deploy the packages of the last `cargo xtask build` instead of building.
    #[arg(long)]
    no_build: bool,
    /// Give up waiting for the stack after this many minutes.
    #[arg(long, default_value_t = 60)]
    timeout_minutes: u64,
    #[command(flatten)]
    build: BuildOptions,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace::root()?;
    let workspace = Workspace::new(&root);
    let env = config::load_env(&root, &args.env)?;
    let local = LocalEnv::new(workspace.clone());
    let mut options = DeployOptions::for_env(&env);
    options.execute = !args.no_execute;
    options.timeout = Duration::from_secs(args.timeout_minutes * 60);
    let request = DeployRequest {
        packages: if args.no_build {
            Packages::LastBuilt
        } else {
            Packages::Build(args.build.choice())
        },
        options,
        endpoint_url: args.endpoint_url.clone(),
    };
    let report = deploy_command(
        PatternEnv {
            workspace: &workspace,
            env: &env,
            pattern: args.pattern,
        },
        &request,
        confirm(args.yes).as_ref(),
        &local,
        &Progress::stderr(),
    )?;
    if args.json {
        // Through a JSON value, whose keys print in the order they always did.
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&report)?)?
        );
        return Ok(());
    }
    let outcome = &report.outcome;
    let uploaded = outcome.uploads.iter().filter(|u| u.uploaded).count();
    let summary = match outcome.result {
        DeployResult::Created => "created",
        DeployResult::Updated => "updated",
        DeployResult::NoChanges => "no changes",
        DeployResult::ChangeSetCreated => "change set created, not executed",
    };
    println!(
        "{}: {summary} ({uploaded} package(s) uploaded, {:.1} s)",
        outcome.stack_name, outcome.seconds
    );
    if let Some(url) = &report.local_api_url {
        println!("API: {url}  (try: curl {url}/transactions/<id>)");
    }
    Ok(())
}

/// Approves without asking with `--yes`, else asks on the terminal.
pub fn confirm(yes: bool) -> Box<dyn Confirm> {
    if yes {
        Box::new(AssumeYes)
    } else {
        Box::new(TerminalConfirm)
    }
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The process exit code of an error: the library's codes for its errors (3 for refusals), 1
/// for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let code = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<DeployError>())
        .map_or(EXIT_ERROR, DeployError::exit_code);
    u8::try_from(code).unwrap_or(1)
}
