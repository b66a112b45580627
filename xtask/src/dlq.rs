//! `cargo xtask dlq list | redrive | purge`: the dead-letter queue of a deployed stack — the
//! work queue's DLQ (sqs) or the resume queue of failed asynchronous self-invocations
//! (orchestrator). The logic is in `sagaform-ops`.

use std::time::Duration;

use clap::Subcommand;
use sagaform_deploy::Workspace;
use sagaform_deploy::confirm::{AssumeYes, Confirm, TerminalConfirm};
use sagaform_ops::dlq::{self, PurgeGuard, RedriveMethod};
use sagaform_ops::{Deployed, Dlq, OpenOptions, OpsError, RedriveOptions};
use sagaform_stacks::Pattern;
use sagaform_stacks::config;

use crate::deploy::runtime;
use crate::workspace;

const AFTER_HELP: &str = "Queues: pattern sqs = the work queue's DLQ (redrive moves messages back to the work queue);
pattern orchestrator = the ResumeDeadLetterQueue (redrive re-sends {\"resume\":{\"transaction_id\":...}}
to the api function asynchronously); pattern stepfunctions has none (see `cargo xtask saga show`).
A message leaves the DLQ only after its destination accepted it.
Exit codes: 0 ok, 1 error (a stopped redrive included), 2 usage, 3 refused (production purge
without --force-prod, confirmation needed without a terminal, or declined).";

/// Arguments of `cargo xtask dlq`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List the messages (transaction id, receive count, age, body) and leave them in place.
    List {
        #[command(flatten)]
        target: Target,
        /// List at most this many messages.
        #[arg(long)]
        max: Option<usize>,
    },
    /// Send the messages back to where they failed, deleting each only once accepted there.
    Redrive {
        #[command(flatten)]
        target: Target,
        /// Redrive at most this many messages (moved client-side).
        #[arg(long)]
        max: Option<usize>,
        /// Move messages from this machine (receive, send, delete) even where SQS's message
        /// move task is available.
        #[arg(long)]
        client_side: bool,
        /// Stop waiting for a message move task after this many minutes (it keeps going).
        #[arg(long, default_value_t = 15)]
        wait_minutes: u64,
    },
    /// Delete every message of the DLQ for good (asks for the queue name unless --yes).
    Purge {
        #[command(flatten)]
        target: Target,
        /// Do not ask for the queue name.
        #[arg(long)]
        yes: bool,
        /// Allow purging in a production env.
        #[arg(long)]
        force_prod: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Target {
    /// Pattern of the stack (orchestrator, sqs).
    #[arg(long)]
    pattern: Pattern,
    /// Environment (a file env/<env>.toml).
    #[arg(long, default_value = "local")]
    env: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Send every AWS call to this endpoint (another emulator) instead of AWS.
    #[arg(long)]
    endpoint_url: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let target = match &args.action {
        Action::List { target, .. }
        | Action::Redrive { target, .. }
        | Action::Purge { target, .. } => target,
    };
    dlq::require_dlq(target.pattern, &target.env)?;
    let root = workspace::root()?;
    let workspace = Workspace::new(&root);
    let env = config::load_env(&root, &target.env)?;
    let open = OpenOptions {
        endpoint_url: target.endpoint_url.clone(),
    };
    let json = target.json;
    let progress = |line: &str| eprintln!("{line}");
    runtime()?.block_on(async {
        let deployed = Deployed::open(&workspace, &env, target.pattern, &open).await?;
        let dlq = Dlq::of_stack(&deployed)?;
        let text = match &args.action {
            Action::List { max, .. } => {
                let listing = dlq.list(*max).await?;
                if json {
                    serde_json::to_string_pretty(&listing)? + "\n"
                } else {
                    dlq::render_listing(&listing)
                }
            }
            Action::Redrive {
                max,
                client_side,
                wait_minutes,
                ..
            } => {
                let options = RedriveOptions {
                    max: *max,
                    method: if *client_side {
                        RedriveMethod::ClientSide
                    } else {
                        RedriveMethod::Auto
                    },
                    wait: Duration::from_secs(wait_minutes * 60),
                    ..RedriveOptions::default()
                };
                let report = dlq.redrive(&options, &progress).await?;
                if json {
                    serde_json::to_string_pretty(&report)? + "\n"
                } else {
                    dlq::render_redrive(&report)
                }
            }
            Action::Purge {
                yes, force_prod, ..
            } => {
                let confirm: Box<dyn Confirm> = if *yes {
                    Box::new(AssumeYes)
                } else {
                    Box::new(TerminalConfirm)
                };
                let guard = PurgeGuard {
                    env_name: &deployed.env_name,
                    production: deployed.production,
                    force_prod: *force_prod,
                    confirm: confirm.as_ref(),
                };
                let report = dlq.purge(&guard).await?;
                if json {
                    serde_json::to_string_pretty(&report)? + "\n"
                } else {
                    dlq::render_purge(&report)
                }
            }
        };
        print!("{text}");
        Ok::<(), anyhow::Error>(())
    })
}

/// The exit code of an operations error in `error`'s chain (3 for refusals), if there is one.
pub fn exit_code(error: &anyhow::Error) -> Option<u8> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<OpsError>())
        .map(|e| u8::try_from(e.exit_code()).unwrap_or(1))
}
