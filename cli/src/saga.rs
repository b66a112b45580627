//! `cargo xtask saga show`: one saga of a deployed stack from its transaction id — state and
//! steps from the state store, where its logs are, and for stepfunctions the execution and its
//! history. The logic is in `sagaform-ops`.

use clap::Subcommand;
use sagaform_ops::saga::{self, ShowOptions};
use sagaform_ops::{Deployed, OpenOptions};

use crate::deploy::runtime;
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
    let Action::Show(args) = args.action;
    let stack = args.stack.load()?;
    let options = ShowOptions {
        database_url: args.database_url.clone(),
        without_history: args.no_history,
    };
    let report = runtime()?.block_on(async {
        let deployed = Deployed::open(
            &stack.workspace,
            &stack.env,
            stack.pattern,
            &OpenOptions {
                endpoint_url: args.stack.endpoint_url.clone(),
            },
        )
        .await?;
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
