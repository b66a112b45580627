//! `cargo xtask deploy`: build, upload, change set, approval, execution and outputs for one
//! pattern in one env. Also the pieces the other stack commands share: reaching the env
//! (starting the local emulator when needed), approvals and exit codes.

use std::time::Duration;

use anyhow::Context;
use sagaform_deploy::confirm::{AssumeYes, Confirm, TerminalConfirm};
use sagaform_deploy::deploy::{DeployOptions, DeployResult, committed_template, deploy_pattern};
use sagaform_deploy::{
    ConnectOptions, DeployError, EXIT_ERROR, PatternEnv, Progress, Session, Workspace, build,
    local, local_services,
};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::{self, EnvConfig};

use crate::build::{BuildOptions, build_for, last_built};
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
    let progress = Progress::stderr();
    // Refuse a stale template before minutes of building; the deploy checks again under its
    // lock.
    committed_template(&workspace, args.pattern, &env.name)?;

    let artifacts = if args.no_build {
        last_built(
            &workspace,
            &build::functions_for(&workspace, args.pattern, &env.name)?,
        )?
    } else {
        build_for(&workspace, &env, Some(args.pattern), &args.build, &progress)?
    };
    let confirm: Box<dyn Confirm> = if args.yes {
        Box::new(AssumeYes)
    } else {
        Box::new(TerminalConfirm)
    };
    let mut options = DeployOptions::for_env(&env);
    options.execute = !args.no_execute;
    options.timeout = Duration::from_secs(args.timeout_minutes * 60);

    let (outcome, endpoint_url) = runtime()?.block_on(async {
        let session = connect(&workspace, &env, args.endpoint_url.clone(), &progress).await?;
        deploy_pattern(
            &session,
            PatternEnv {
                workspace: &workspace,
                env: &env,
                pattern: args.pattern,
            },
            &artifacts,
            &options,
            confirm.as_ref(),
            &progress,
        )
        .await
        .map(|outcome| (outcome, session.endpoint_url.clone()))
    })?;
    // The emulator never runs function code: locally the deployed functions, the HTTP API and
    // the fake SaaS they call run on this machine, started now so the printed URL answers.
    let local_api_url = match (&endpoint_url, outcome.result) {
        (Some(endpoint), result) if env.is_local() && result != DeployResult::ChangeSetCreated => {
            let binaries = local_services::build_binaries(&workspace, &progress)?;
            Some(crate::local::bring_up(
                &workspace,
                &env,
                args.pattern,
                endpoint,
                &binaries,
                result == DeployResult::Created,
                &progress,
            )?)
        }
        _ => None,
    };
    if args.json {
        let mut json = serde_json::to_value(&outcome)?;
        if let Some(url) = &local_api_url {
            json["local_api_url"] = url.as_str().into();
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
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
        if let Some(url) = &local_api_url {
            println!("API: {url}  (try: curl {url}/transactions/<id>)");
        }
    }
    Ok(())
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Reaches the env: the local emulator (started if needed) for `local` unless an endpoint is
/// given, AWS otherwise; refuses when the credentials are for another account.
pub async fn connect(
    workspace: &Workspace,
    env: &EnvConfig,
    endpoint_url: Option<String>,
    progress: &Progress,
) -> Result<Session, DeployError> {
    let endpoint_url = match endpoint_url {
        Some(url) => Some(url),
        None if env.is_local() => Some(local::ensure_running(workspace, progress)?.endpoint),
        None => None,
    };
    let target = endpoint_url
        .clone()
        .unwrap_or_else(|| format!("AWS {}", env.region()));
    progress.status(format!("connecting to {target}"));
    let session = Session::connect(env, &ConnectOptions { endpoint_url }).await?;
    progress.clear_status();
    progress.line(format!(
        "env {}: account {} in {} via {target}",
        env.name, session.account_id, session.region
    ));
    Ok(session)
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
