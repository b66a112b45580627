//! `cargo xtask dlq list | redrive | purge`: the dead-letter queue of a deployed stack — the
//! work queue's DLQ (sqs) or the resume queue of failed asynchronous self-invocations
//! (orchestrator). The logic is in `sagaform-ops`.

use std::time::Duration;

use clap::Subcommand;
use sagaform_ops::dlq::{self, PurgeGuard, RedriveMethod, WindowGuard};
use sagaform_ops::{Deployed, Dlq, OpenOptions, OpsError, RedriveOptions};

use crate::deploy::{confirm, runtime};
use crate::stack_args::StackArgs;

const AFTER_HELP: &str = "Queues: pattern sqs = the work queue's DLQ (redrive moves messages back to the work queue);
pattern orchestrator = the ResumeDeadLetterQueue (redrive re-sends {\"resume\":{\"transaction_id\":...}}
to the api function asynchronously); pattern stepfunctions has none (see `cargo xtask saga show`).
A message leaves the DLQ only after its destination accepted it. Redrive lists the sagas older
than the smallest [saas.<service>] idempotency_window_hours and asks before resending them
(--yes: do not ask): the provider may have forgotten their idempotency keys.
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
        stack: StackArgs,
        /// List at most this many messages.
        #[arg(long)]
        max: Option<usize>,
    },
    /// Send the messages back to where they failed, deleting each only once accepted there.
    Redrive {
        #[command(flatten)]
        stack: StackArgs,
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
        /// Do not ask before resending sagas older than the providers' idempotency window
        /// (`[saas.<service>] idempotency_window_hours`; they are still listed).
        #[arg(long)]
        yes: bool,
    },
    /// Delete every message of the DLQ for good (asks for the queue name unless --yes).
    Purge {
        #[command(flatten)]
        stack: StackArgs,
        /// Do not ask for the queue name.
        #[arg(long)]
        yes: bool,
        /// Allow purging in a production env.
        #[arg(long)]
        force_prod: bool,
    },
}

impl Action {
    /// The stack every action names.
    fn stack(&self) -> &StackArgs {
        match self {
            Action::List { stack, .. }
            | Action::Redrive { stack, .. }
            | Action::Purge { stack, .. } => stack,
        }
    }

    /// Runs the action on the stack's DLQ and returns what to print.
    async fn perform(
        &self,
        deployed: &Deployed,
        dlq: &Dlq,
        window: Option<Duration>,
        json: bool,
    ) -> anyhow::Result<String> {
        match self {
            Action::List { max, .. } => {
                report_text(&dlq.list(*max).await?, json, dlq::render_listing)
            }
            Action::Redrive {
                max,
                client_side,
                wait_minutes,
                yes,
                ..
            } => {
                let progress = |line: &str| eprintln!("{line}");
                if let Some(window) = window {
                    let confirm = confirm(*yes);
                    let guard = WindowGuard {
                        env_name: &deployed.env_name,
                        window,
                        confirm: confirm.as_ref(),
                    };
                    dlq.confirm_idempotency_window(&guard, &progress).await?;
                }
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
                report_text(&report, json, dlq::render_redrive)
            }
            Action::Purge {
                yes, force_prod, ..
            } => {
                let confirm = confirm(*yes);
                let guard = PurgeGuard {
                    env_name: &deployed.env_name,
                    production: deployed.production,
                    force_prod: *force_prod,
                    confirm: confirm.as_ref(),
                };
                report_text(&dlq.purge(&guard).await?, json, dlq::render_purge)
            }
        }
    }
}

/// A report as pretty JSON or as its text rendering.
fn report_text<R: serde::Serialize>(
    report: &R,
    json: bool,
    render: fn(&R) -> String,
) -> anyhow::Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(report)? + "\n"
    } else {
        render(report)
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let stack_args = args.action.stack();
    dlq::require_dlq(stack_args.pattern, &stack_args.env)?;
    let stack = stack_args.load()?;
    let open = OpenOptions {
        endpoint_url: stack_args.endpoint_url.clone(),
    };
    runtime()?.block_on(async {
        let deployed = Deployed::open(&stack.workspace, &stack.env, stack.pattern, &open).await?;
        let dlq = Dlq::of_stack(&deployed)?;
        let text = args
            .action
            .perform(
                &deployed,
                &dlq,
                dlq::smallest_window(&stack.env),
                stack_args.json,
            )
            .await?;
        print!("{text}");
        Ok(())
    })
}

/// The exit code of an operations error in `error`'s chain (3 for refusals), if there is one.
pub fn exit_code(error: &anyhow::Error) -> Option<u8> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<OpsError>())
        .map(|e| u8::try_from(e.exit_code()).unwrap_or(1))
}
