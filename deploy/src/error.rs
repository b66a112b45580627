//! The errors of the deploy library, grouped so the command line can map them to exit codes:
//! refusals (the tool chose not to act: stale template, missing confirmation, wrong account,
//! concurrent deploy) are told apart from failures.

use std::path::PathBuf;

/// Exit code of a successful command, including "no changes" and "nothing to destroy".
pub const EXIT_OK: i32 = 0;
/// Exit code of a failure (AWS error, failed stack operation, build error, ...).
pub const EXIT_ERROR: i32 = 1;
/// Exit code of a usage error (clap uses it for bad arguments).
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the tool refused to act: stale template, confirmation needed, account
/// mismatch, concurrent deploy, production protection.
pub const EXIT_REFUSED: i32 = 3;
/// Exit code of `diff --base` when its security table has a row (a permission granted or
/// widened, a protection removed or weakened, an alarm loosened): the review succeeded, and CI
/// can ask for a second approver.
pub const EXIT_SECURITY_CHANGES: i32 = 4;

/// Why the tool refused to act; each variant tells the user what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The committed template is not what `cargo xtask synth` produces now.
    #[error(
        "{path} is stale or missing for pattern {pattern}, env {env}: run `cargo xtask synth` and review the diff before deploying"
    )]
    StaleTemplate {
        /// Pattern name.
        pattern: String,
        /// Env name.
        env: String,
        /// The template file, relative to the workspace.
        path: String,
    },
    /// A confirmation is required and there is no terminal to ask on.
    #[error("{what} needs confirmation and stdin is not a terminal: re-run with --yes to approve")]
    NeedsConfirmation {
        /// What needed approval.
        what: String,
    },
    /// The user answered no (or typed something else than the stack name).
    #[error("not confirmed: {what} was not approved, nothing changed")]
    NotConfirmed {
        /// What was not approved.
        what: String,
    },
    /// The credentials belong to another account than the env's.
    #[error(
        "the credentials are for account {actual} but env {env} deploys to account {expected}: switch AWS_PROFILE (or credentials) to account {expected}"
    )]
    AccountMismatch {
        /// Env name.
        env: String,
        /// Account id of the env config.
        expected: String,
        /// Account id of the caller.
        actual: String,
    },
    /// Another deploy of the same stack runs on this machine.
    #[error(
        "another deploy or destroy of stack {stack} is running on this machine ({holder}; lock file {lock}): wait for it to finish"
    )]
    LockedLocally {
        /// Stack name.
        stack: String,
        /// Who holds the lock, as recorded in the lock file.
        holder: String,
        /// Lock file path.
        lock: PathBuf,
    },
    /// The stack is being changed by someone (an operation is in progress).
    #[error(
        "stack {stack} is in {status}: another operation is in progress (another deploy, a destroy or a rollback); wait until it ends, then deploy again"
    )]
    StackBusy {
        /// Stack name.
        stack: String,
        /// Its current status.
        status: String,
    },
    /// A production env still has shipped placeholder values.
    #[error(
        "env {env} is production but still has placeholder values, set the real ones before deploying: {values}"
    )]
    Placeholders {
        /// Env name.
        env: String,
        /// Each placeholder as `file: key: value ...`, joined by `; `.
        values: String,
    },
    /// The stack's reserved concurrency would leave the account less than AWS keeps unreserved.
    #[error(
        "stack {stack} would reserve {added} more concurrent executions ({functions}) but the account has {unreserved} unreserved of its limit of {limit}, and AWS keeps 100 unreserved: lower functions.<role>.reserved_concurrency in {file}, or raise the account's Lambda concurrent executions quota (Service Quotas)"
    )]
    ConcurrencyShortfall {
        /// Stack name.
        stack: String,
        /// Concurrency the deploy would reserve beyond what the stack holds.
        added: i64,
        /// The functions that reserve more: role, wanted and held.
        functions: String,
        /// The account's limit.
        limit: i64,
        /// The account's unreserved concurrency now.
        unreserved: i64,
        /// The env file setting the reservations.
        file: String,
    },
    /// `--hotswap` on a production env, where every change goes through a reviewed change set.
    #[error(
        "env {env} is production: --hotswap is refused there (it changes functions outside CloudFormation, with no change set to review); deploy without --hotswap"
    )]
    HotswapInProduction {
        /// Env name.
        env: String,
    },
    /// Destroying a production stack without `--force-prod`.
    #[error("env {env} is production: destroying stack {stack} also needs --force-prod")]
    ProductionProtected {
        /// Env name.
        env: String,
        /// Stack name.
        stack: String,
    },
}

/// An error of the deploy library.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The tool refused to act (exit code 3).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Env config or template could not be loaded.
    #[error("{0}")]
    Config(String),
    /// A template could not be parsed.
    #[error("{file}: invalid template: {reason}")]
    Template {
        /// Where the template came from.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Building the functions failed.
    #[error("build: {0}")]
    Build(String),
    /// The Rust target of the requested architecture is not installed.
    #[error(
        "the Rust target {target} is not installed (needed for --arch {arch}): run `rustup target add {target}`"
    )]
    MissingTarget {
        /// Target triple.
        target: String,
        /// Architecture name.
        arch: String,
    },
    /// A built binary would not run on Amazon Linux 2023.
    #[error("{binary}: {reason}")]
    Incompatible {
        /// The binary.
        binary: PathBuf,
        /// Why it would not run.
        reason: String,
    },
    /// No credentials for an AWS env; the message says what was looked for and what to run.
    #[error("{0}")]
    NoCredentials(String),
    /// An AWS call failed.
    #[error("{operation}: {message}")]
    Aws {
        /// The API operation (`CloudFormation.CreateChangeSet`, ...).
        operation: &'static str,
        /// The service's message.
        message: String,
    },
    /// A stack operation ended in failure.
    #[error("stack {stack} {status}: {reason}")]
    StackFailed {
        /// Stack name.
        stack: String,
        /// Final status.
        status: String,
        /// The first failing resource and its reason, or the stack's reason.
        reason: String,
    },
    /// The stack is in a state that needs a human; the message holds the recovery steps.
    #[error("stack {stack} is in {status}: it needs manual recovery\n{steps}")]
    NeedsRecovery {
        /// Stack name.
        stack: String,
        /// Current status.
        status: String,
        /// Exact commands to run.
        steps: String,
    },
    /// Waiting for a stack operation took too long.
    #[error(
        "stack {stack} still {status} after {seconds} s: it keeps going in CloudFormation; watch it with `aws cloudformation describe-stack-events --stack-name {stack}`"
    )]
    Timeout {
        /// Stack name.
        stack: String,
        /// Last status seen.
        status: String,
        /// How long was waited.
        seconds: u64,
    },
    /// The local emulator could not be started or reached.
    #[error("local emulator: {0}")]
    Emulator(String),
    /// The local environment (the [`crate::workflow::LocalRuntime`] of `--env local`) failed.
    #[error(transparent)]
    Local(Box<dyn std::error::Error + Send + Sync>),
    /// The pinned tools (cargo-lambda) could not be installed.
    #[error("installing the pinned tools: {0}")]
    Tools(sagaform_tools::ToolsError),
    /// The async runtime of a synchronous workflow could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl DeployError {
    /// The process exit code for this error (documented in `cargo xtask --help`).
    pub fn exit_code(&self) -> i32 {
        match self {
            DeployError::Refused(_) => EXIT_REFUSED,
            _ => EXIT_ERROR,
        }
    }

    /// Whether the error is a refusal.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            DeployError::Refused(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> DeployError {
        let path = path.into();
        move |source| DeployError::Io {
            action,
            path,
            source,
        }
    }
}

/// Turns an SDK error into a [`DeployError::Aws`] naming the operation and the service's message.
pub(crate) fn aws_error<E>(operation: &'static str) -> impl FnOnce(E) -> DeployError
where
    E: std::error::Error + ProvideMessage,
{
    move |e| DeployError::Aws {
        operation,
        message: e.readable_message(),
    }
}

/// The readable part of an SDK error: the service's code and message when there is one, else the
/// whole source chain (connection errors hide the cause several levels down). Every AWS SDK crate
/// shares the one `SdkError` type, so this serves the clients of other crates too.
pub trait ProvideMessage {
    /// The service's `code: message`, or the error's source chain.
    fn readable_message(&self) -> String;
}

impl<E, R> ProvideMessage for aws_sdk_cloudformation::error::SdkError<E, R>
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    fn readable_message(&self) -> String {
        use aws_sdk_cloudformation::error::ProvideErrorMetadata;
        match (self.code(), self.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (None, Some(message)) => message.to_owned(),
            (Some(code), None) => code.to_owned(),
            (None, None) => source_chain(self),
        }
    }
}

/// The error and all its sources, joined.
pub(crate) fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
