//! `cargo xtask deploy`: the arguments and the printed result of the deploy workflow (build,
//! upload, change set, approval, execution, outputs and, locally, the local environment), which
//! is one call to [`sagaform_deploy::workflow::deploy_command`]. Also the pieces the other stack
//! commands share: approvals, the async runtime and exit codes.

use anyhow::Context;
use sagaform_deploy::confirm::{AssumeYes, Confirm, TerminalConfirm};
use sagaform_deploy::deploy::{DeployOptions, DeployResult};
use sagaform_deploy::workflow::{DeployReport, DeployRequest, Packages, deploy_command};
use sagaform_deploy::{DeployError, EXIT_ERROR, Progress};
use sagaform_local::LocalEnv;
use sagaform_stacks::config::EnvConfig;

use crate::build::BuildOptions;
use crate::stack_args::ChangeArgs;

/// Exit codes of the stack commands (deploy, diff, destroy), shown in their `--help`.
pub const EXIT_CODES: &str = "Exit codes:
  0  success, including \"no changes\" and \"nothing to destroy\"
  1  error (AWS error, failed stack operation, build failure)
  2  usage error
  3  refused: stale template, confirmation needed without a terminal (use --yes) or declined,
     account mismatch, concurrent deploy of the same stack, production protection (--hotswap
     in a production env)
  4  diff --base only: the review succeeded and its security table is not empty (permissions
     granted or widened, protections removed or weakened, alarms loosened): ask a second approver";

/// Arguments of `cargo xtask deploy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    change: ChangeArgs,
    /// Create the change set and print it, but leave it for review instead of executing it.
    #[arg(long)]
    no_execute: bool,
    /// Deploy the packages of the last `cargo xtask build` instead of building.
    #[arg(long)]
    no_build: bool,
    /// When only function code changed, update the functions directly (no change set); the
    /// stack's parameters then name the old code until the next full deploy. Anything else
    /// changed falls back to the change set. Refused for production envs.
    #[arg(long, conflicts_with = "no_execute")]
    hotswap: bool,
    #[command(flatten)]
    build: BuildOptions,
}

impl Args {
    /// The library's request: where the packages come from, execution and timeout.
    fn request(&self, env: &EnvConfig) -> DeployRequest {
        let mut options = DeployOptions::for_env(env);
        options.execute = !self.no_execute;
        options.hotswap = self.hotswap;
        options.timeout = self.change.timeout();
        DeployRequest {
            packages: if self.no_build {
                Packages::LastBuilt
            } else {
                Packages::Build(self.build.choice())
            },
            options,
            endpoint_url: self.change.stack.endpoint_url.clone(),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let stack = args.change.stack.load()?;
    let local = LocalEnv::new(stack.workspace.clone());
    let report = deploy_command(
        stack.pattern_env(),
        &args.request(&stack.env),
        args.change.confirm().as_ref(),
        &local,
        &Progress::stderr(),
    )?;
    if args.change.stack.json {
        // Through a JSON value, whose keys print in the order they always did.
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&report)?)?
        );
    } else {
        print_summary(&report);
    }
    Ok(())
}

/// One line of what the deploy did, and the local API to try.
fn print_summary(report: &DeployReport) {
    let outcome = &report.outcome;
    let uploaded = outcome.uploads.iter().filter(|u| u.uploaded).count();
    let summary = match outcome.result {
        DeployResult::Created => "created",
        DeployResult::Updated => "updated",
        DeployResult::NoChanges => "no changes",
        DeployResult::ChangeSetCreated => "change set created, not executed",
        DeployResult::Hotswapped => "function code hotswapped, no change set",
    };
    println!(
        "{}: {summary} ({uploaded} package(s) uploaded, {:.1} s)",
        outcome.stack_name, outcome.seconds
    );
    if let Some(hotswap) = &outcome.hotswap {
        if let Some(reason) = &hotswap.fell_back {
            println!("not hotswapped: {reason}");
        }
        if let Some(drift) = &hotswap.drift {
            println!("{drift}");
        }
    }
    if let Some(url) = &report.local_api_url {
        println!("API: {url}  (try: curl {url}/transactions/<id>)");
    }
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
