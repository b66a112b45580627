//! The error type of the library: every failure names what was being done and with what.

use std::path::PathBuf;

/// Errors of the local runtime, the emulated front doors, the supervisor and the local
/// environment around them.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The local emulator could not be started, reached or stopped.
    #[error("local emulator: {0}")]
    Emulator(String),
    /// A local service (fake SaaS, supervisor, local database) could not be started or stopped.
    #[error("local environment: {0}")]
    Services(String),
    /// `local up` found no stack deployed locally.
    #[error(
        "nothing is deployed locally: run `cargo xtask deploy --pattern <pattern> --env local` first"
    )]
    NothingDeployed,
    /// A step of the deploy library (build, workspace files, templates) failed.
    #[error(transparent)]
    Deploy(#[from] sagaform_deploy::DeployError),
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A loopback listener could not be opened.
    #[error("cannot listen on 127.0.0.1:{port} for {purpose}: {source}")]
    Listen {
        /// What the listener was for.
        purpose: String,
        /// The requested port (0 for any).
        port: u16,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A function's bootstrap process could not be started.
    #[error("function {function}: cannot start {path}: {source}")]
    Spawn {
        /// The function.
        function: String,
        /// The executable.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An invocation could not be delivered (the runtime is stopping).
    #[error("function {function}: {reason}")]
    Unavailable {
        /// The function.
        function: String,
        /// Why.
        reason: String,
    },
    /// A call to the emulator (or AWS) failed.
    #[error("{operation}: {detail}")]
    Aws {
        /// The API operation and its subject, e.g. `GetFunction api-fn`.
        operation: String,
        /// The error, with its cause chain.
        detail: String,
    },
    /// The deployed stack or its template does not have the expected shape.
    #[error("{source_name}: {key}: {reason}")]
    Template {
        /// The template file or stack it was read from.
        source_name: String,
        /// The resource or property.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A function code zip could not be read.
    #[error("zip {name}: {reason}")]
    Zip {
        /// Where the zip came from (bucket/key or path).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The state file of a running local environment is unreadable.
    #[error("state file {path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The moto server's control API refused or did not answer.
    #[error("moto at {endpoint}: {reason}")]
    Moto {
        /// The emulator's endpoint.
        endpoint: String,
        /// What happened.
        reason: String,
    },
}

impl LocalError {
    /// A closure turning an I/O error into [`LocalError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> LocalError {
        let path = path.into();
        move |source| LocalError::Io {
            action,
            path,
            source,
        }
    }

    /// An AWS SDK error with its whole cause chain (the SDK's Display alone says "service error").
    pub(crate) fn aws(
        operation: impl Into<String>,
        error: &(dyn std::error::Error + 'static),
    ) -> LocalError {
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        LocalError::Aws {
            operation: operation.into(),
            detail,
        }
    }
}

/// The deploy workflow reports the local environment's failures as its own (exit code 1).
impl From<LocalError> for sagaform_deploy::DeployError {
    fn from(error: LocalError) -> Self {
        match error {
            LocalError::Deploy(error) => error,
            other => sagaform_deploy::DeployError::Local(Box::new(other)),
        }
    }
}
