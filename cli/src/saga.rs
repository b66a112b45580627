//! `cargo xtask saga show`: one saga of a deployed stack from its transaction id — state and
//! steps from the state store, where its logs are, and for stepfunctions the execution and its
//! history. `cargo xtask saga retry`: asks the call of a saga IN_DOUBT again through its
//! pattern (asking for confirmation in production). The logic is in `sagaform-ops`.

use clap::Subcommand;
use sagaform_deploy::confirm::Expect;
use sagaform_ops::saga::{self, ShowOptions};

use crate::deploy::{confirm, runtime};
use crate::stack_args::StackArgs;

/// Arguments of `cargo xtask saga`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Show a saga: status, steps (status, attempts, time, error), log pointers and, for
    /// stepfunctions, the execution named by the transaction id with its history.
    #[command(after_help = "Exit codes: 0 shown, 1 error or no such saga, 2 usage, 3 refused.")]
    Show(ShowArgs),
    /// Ask the call of a saga IN_DOUBT again: its in-doubt step goes back to PENDING and the
    /// saga is handed to its pattern (resume event, work message or a new execution), which
    /// repeats the call with the same idempotency key.
    #[command(
        after_help = "Exit codes: 0 handed over, 1 error or a saga not IN_DOUBT, 2 usage, 3 refused (production without confirmation)."
    )]
    Retry(RetryArgs),
}

#[derive(Debug, clap::Args)]
struct RetryArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The transaction id of the saga IN_DOUBT.
    transaction_id: String,
    /// Use PostgreSQL at this URL instead of the stack's database (see `saga show`).
    #[arg(long)]
    database_url: Option<String>,
    /// Do not ask for confirmation in a production env.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The transaction id the API returned.
    transaction_id: String,
    /// Read PostgreSQL at this URL instead of the stack's database (e.g. a tunnel to RDS
    /// Proxy: `postgres://USER:PASSWORD@127.0.0.1:15432/sagaform?sslmode=require`).
    #[arg(long)]
    database_url: Option<String>,
    /// Leave out the Step Functions execution history (its status is still shown).
    #[arg(long)]
    no_history: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Show(args) => show(args),
        Action::Retry(args) => retry(args),
    }
}

fn retry(args: RetryArgs) -> anyhow::Result<()> {
    let stack = args.stack.load()?;
    let options = ShowOptions {
        database_url: args.database_url.clone(),
        without_history: true,
    };
    let report = runtime()?.block_on(async {
        let deployed = args.stack.open(&stack).await?;
        if deployed.production {
            let question = format!(
                "Ask the in-doubt call of saga {} in production env {} again?",
                args.transaction_id, deployed.env_name
            );
            confirm(args.yes)
                .ask(&question, &Expect::YesNo)
                .require(format!(
                    "saga retry in production env {}",
                    deployed.env_name
                ))
                .map_err(|refusal| sagaform_ops::OpsError::Refused(refusal.into()))?;
        }
        sagaform_ops::retry::retry(&deployed, &args.transaction_id, &options).await
    })?;
    if args.stack.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let stack = args.stack.load()?;
    let options = ShowOptions {
        database_url: args.database_url.clone(),
        without_history: args.no_history,
    };
    let report = runtime()?.block_on(async {
        let deployed = args.stack.open(&stack).await?;
        saga::show(&deployed, &args.transaction_id, &options).await
    })?;
    if args.stack.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", saga::render(&report));
    }
    if report.saga.is_none() && report.execution.is_none() {
        anyhow::bail!(
            "no saga {} in {} of stack {}",
            report.transaction_id,
            report.store,
            report.stack
        );
    }
    Ok(())
}
