//! The arguments every stack command takes (pattern, env, JSON output, endpoint; approval and
//! timeout for the commands that change a stack) and loading the checkout and env they name, so
//! each command declares only its own options.

use std::time::Duration;

use sagaform_deploy::confirm::Confirm;
use sagaform_deploy::{PatternEnv, Workspace};
use sagaform_ops::{Deployed, OpenOptions, OpsError};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::EnvConfig;

use crate::deploy::confirm;
use crate::workspace;

/// Which stack a command acts on and how it reports.
#[derive(Debug, clap::Args)]
pub struct StackArgs {
    /// Pattern of the stack (orchestrator, sqs, stepfunctions).
    #[arg(long)]
    pub pattern: Pattern,
    /// Environment (a file env/<env>.toml); `local` is the local emulator.
    #[arg(long, default_value = "local")]
    pub env: String,
    /// Print the result as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Send every AWS call to this endpoint (another emulator) instead of AWS.
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

impl StackArgs {
    /// The checkout and the validated config of the named env.
    pub fn load(&self) -> anyhow::Result<LoadedStack> {
        let (workspace, env) = workspace::load_env(&self.env)?;
        Ok(LoadedStack {
            workspace,
            env,
            pattern: self.pattern,
        })
    }

    /// The deployed stack: the env's AWS, or the emulator after the account check.
    pub async fn open(&self, stack: &LoadedStack) -> Result<Deployed, OpsError> {
        Deployed::open(
            &stack.workspace,
            &stack.env,
            stack.pattern,
            &OpenOptions {
                endpoint_url: self.endpoint_url.clone(),
            },
        )
        .await
    }
}

/// The arguments of the commands that change a stack (deploy, destroy): the stack, approval
/// and how long to wait.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Approve without asking (a deploy asks for production and IAM-broadening changes, a
    /// destroy for the stack name).
    #[arg(long)]
    pub yes: bool,
    /// Give up waiting for the stack after this many minutes.
    #[arg(long, default_value_t = 60)]
    pub timeout_minutes: u64,
}

impl ChangeArgs {
    /// How long to wait for the stack operation.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_minutes * 60)
    }

    /// Who approves: nobody needs to with `--yes`, else the terminal.
    pub fn confirm(&self) -> Box<dyn Confirm> {
        confirm(self.yes)
    }
}

/// A pattern in a loaded env: owns what [`PatternEnv`] borrows.
pub struct LoadedStack {
    pub workspace: Workspace,
    pub env: EnvConfig,
    pub pattern: Pattern,
}

impl LoadedStack {
    /// The library's view of this stack.
    pub fn pattern_env(&self) -> PatternEnv<'_> {
        PatternEnv {
            workspace: &self.workspace,
            env: &self.env,
            pattern: self.pattern,
        }
    }
}
