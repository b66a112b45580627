//! The errors of the operations library. Refusals (the tool chose not to act: production
//! protection, a confirmation that was not given) are told apart from failures so the command
//! line can exit with the same codes as the stack commands.

use sagaform_deploy::{DeployError, ProvideMessage, Refusal};
use sagaform_runtime::StoreError;

/// Why an operation was refused; each variant tells the user what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsRefusal {
    /// Purging a production queue without `--force-prod`.
    #[error("env {env} is production: purging queue {queue} also needs --force-prod")]
    ProductionProtected {
        /// Env name.
        env: String,
        /// Queue name.
        queue: String,
    },
    /// The operator declined, or a confirmation was needed without a terminal to ask on.
    #[error(transparent)]
    Unconfirmed(#[from] Refusal),
}

/// An error of the operations library.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The tool refused to act (exit code 3).
    #[error(transparent)]
    Refused(#[from] OpsRefusal),
    /// Reaching the env or reading its stack failed (its own exit code applies).
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// Reading the state store failed.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// An AWS call failed.
    #[error("{operation}: {message}")]
    Aws {
        /// The API operation (`SQS.ReceiveMessage`, ...).
        operation: &'static str,
        /// The service's message.
        message: String,
    },
    /// The stack is not deployed in that env.
    #[error(
        "stack {stack} does not exist in env {env}: deploy it with `cargo xtask deploy --pattern {pattern} --env {env}`"
    )]
    NotDeployed {
        /// Stack name.
        stack: String,
        /// Env name.
        env: String,
        /// Pattern name.
        pattern: String,
    },
    /// The local emulator is not running, so nothing is deployed locally.
    #[error(
        "the local emulator is not running at {endpoint}: deploy first with `cargo xtask deploy --pattern {pattern} --env local`"
    )]
    EmulatorDown {
        /// Where it was looked for.
        endpoint: String,
        /// Pattern name.
        pattern: String,
    },
    /// The stack lacks an output the operation needs.
    #[error("stack {stack} has no output {output}: {reason}")]
    MissingOutput {
        /// Stack name.
        stack: String,
        /// Output key.
        output: &'static str,
        /// Why it is needed, or what to do.
        reason: String,
    },
    /// The operation does not exist for this pattern.
    #[error("{0}")]
    NotApplicable(String),
    /// An argument is not acceptable.
    #[error("{0}")]
    InvalidInput(String),
    /// A redrive stopped part-way; what was moved stays moved and nothing was lost.
    #[error("redrive stopped after moving {moved} message(s): {reason}")]
    RedriveStopped {
        /// Messages moved (sent to the destination and deleted from the DLQ) before the stop.
        moved: usize,
        /// Why it stopped.
        reason: String,
    },
}

/// Exit code of a refusal, as the stack commands use it.
pub const EXIT_REFUSED: i32 = sagaform_deploy::EXIT_REFUSED;

impl OpsError {
    /// The process exit code for this error: 3 for refusals, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            OpsError::Refused(_) => EXIT_REFUSED,
            OpsError::Deploy(e) => e.exit_code(),
            _ => sagaform_deploy::EXIT_ERROR,
        }
    }
}

/// Turns an SDK error into an [`OpsError::Aws`] naming the operation and the service's code and
/// message (or the whole source chain for connection errors, whose cause hides deep down).
pub(crate) fn aws_error<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E, R>) -> OpsError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |error| OpsError::Aws {
        operation,
        message: error.readable_message(),
    }
}
