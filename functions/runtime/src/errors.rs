//! The runtime's errors and the one classification every pattern acts on: a [`Retryable`]
//! failure may succeed if the same work is tried again (SQS redelivers, Step Functions `Retry`s,
//! the API answers 503), a [`Permanent`] one cannot (compensate, fail the execution, answer 4xx).
//!
//! [`Retryable`]: ErrorClass::Retryable
//! [`Permanent`]: ErrorClass::Permanent

use std::fmt;

use sagaform_saas_client::SaasError;

/// Whether repeating the same work may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later with the same input.
    Retryable,
    /// Trying again cannot help.
    Permanent,
}

impl ErrorClass {
    /// The Lambda `errorType` the Step Functions Retry and Catch match: `Retryable` or
    /// `Permanent`.
    pub fn error_type(self) -> &'static str {
        use sagaform_contract::task::error_types::{PERMANENT, RETRYABLE};
        match self {
            Self::Retryable => RETRYABLE,
            Self::Permanent => PERMANENT,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.error_type())
    }
}

/// A state store operation that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found a saga with this id.
    #[error("saga {0} already exists")]
    AlreadyExists(String),
    /// No saga with this id.
    #[error("saga {0} not found")]
    NotFound(String),
    /// The stored version is not the one the writer read: another writer got there first and
    /// this write changed nothing.
    #[error("saga {transaction_id} was changed by another writer (expected version {expected})")]
    Conflict {
        /// The saga.
        transaction_id: String,
        /// The version the losing writer expected.
        expected: u64,
    },
    /// Completing an idempotency record found it missing or not in progress (it expired and
    /// was taken over, or was completed by another invocation); nothing was written.
    #[error("idempotency record {0} is not in progress any more")]
    IdempotencyNotInProgress(String),
    /// The database or table could not be reached or refused the request; may pass.
    #[error("{backend}: {message}")]
    Backend {
        /// `dynamodb` or `postgres`.
        backend: &'static str,
        /// What it reported.
        message: String,
    },
    /// A stored record cannot be read back: a bug, a manual edit or a newer schema.
    #[error("stored record {id} is invalid: {reason}")]
    Corrupt {
        /// The record's key.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store is misconfigured (environment, secret, schema migration).
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Retryable for races and outages, permanent for what retrying cannot fix.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Conflict { .. } | Self::Backend { .. } | Self::IdempotencyNotInProgress(_) => {
                ErrorClass::Retryable
            }
            Self::AlreadyExists(_) | Self::NotFound(_) | Self::Corrupt { .. } | Self::Config(_) => {
                ErrorClass::Permanent
            }
        }
    }

    pub(crate) fn corrupt(id: &str, reason: impl fmt::Display) -> StoreError {
        StoreError::Corrupt {
            id: id.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// An idempotent operation that was not (or not yet) run.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// Another invocation holds the key and its in-progress window has not expired: answer 409
    /// on the API, let SQS redeliver; never run the work a second time.
    #[error("a request with idempotency key {0} is already in progress")]
    InProgress(String),
    /// The key was used with another payload: answer 422.
    #[error("idempotency key {0} was already used with a different payload")]
    PayloadMismatch(String),
    /// The idempotency store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IdempotencyError {
    /// In progress and store outages are retryable; a payload mismatch is not.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InProgress(_) => ErrorClass::Retryable,
            Self::PayloadMismatch(_) => ErrorClass::Permanent,
            Self::Store(e) => e.class(),
        }
    }
}

/// A saga operation that did not reach its end.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading or writing the saga state failed (including a lost version race).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A step's action or compensation failed; `class` says whether the same call may succeed
    /// later. Returned only where the caller owns the retries (SQS, Step Functions); the
    /// orchestrator turns exhausted retries into compensation instead.
    #[error("step {step} {action}: {source}")]
    Step {
        /// The step.
        step: &'static str,
        /// The action or compensation.
        action: &'static str,
        /// Which attempt of this call failed (1 for the first), counted over every invocation
        /// where the engine records them (sqs); 1 where the caller counts (Step Functions).
        attempt: u32,
        /// What the downstream client reported.
        source: SaasError,
    },
    /// The time left is too short to start the next call; the saga is left where it is, and
    /// resumes from there on the next invocation.
    #[error("deadline reached before step {step} {action} could run; the saga resumes later")]
    DeadlineReached {
        /// The step that was not called.
        step: &'static str,
        /// The action or compensation not called.
        action: &'static str,
    },
    /// The operation does not apply to the saga as stored (a step the saga does not have, an
    /// execute after compensation started, ...).
    #[error("saga {transaction_id}: {reason}")]
    InvalidOperation {
        /// The saga.
        transaction_id: String,
        /// Why the operation does not apply.
        reason: String,
    },
}

impl EngineError {
    /// How the caller should react.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Store(e) => e.class(),
            Self::Step { source, .. } => {
                if source.is_retryable() {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                }
            }
            Self::DeadlineReached { .. } => ErrorClass::Retryable,
            Self::InvalidOperation { .. } => ErrorClass::Permanent,
        }
    }

    /// The Lambda `errorType` the state machine matches: `InDoubt` for a call whose effect is
    /// unknown (retried like a retryable one, never compensated blind), else the class's.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Step { source, .. } if source.is_in_doubt() => {
                sagaform_contract::task::error_types::IN_DOUBT
            }
            _ => self.class().error_type(),
        }
    }
}

/// The Lambda error a handler returns: `errorType` is the classification (`Retryable` or
/// `Permanent`), which is what the Step Functions Retry and Catch match on, and the message is
/// the error's text (which never holds a secret: the errors above carry ids and reasons only).
pub fn diagnostic(class: ErrorClass, error: &dyn std::error::Error) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: class.error_type().to_owned(),
        error_message: error.to_string(),
    }
}

impl From<EngineError> for lambda_runtime::Diagnostic {
    fn from(error: EngineError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

impl From<StoreError> for lambda_runtime::Diagnostic {
    fn from(error: StoreError) -> Self {
        diagnostic(error.class(), &error)
    }
}

impl From<IdempotencyError> for lambda_runtime::Diagnostic {
    fn from(error: IdempotencyError) -> Self {
        diagnostic(error.class(), &error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_races_and_outages_are_retryable_and_missing_sagas_permanent() {
        let conflict = StoreError::Conflict {
            transaction_id: "t".into(),
            expected: 1,
        };
        assert_eq!(conflict.class(), ErrorClass::Retryable);
        assert_eq!(
            StoreError::NotFound("t".into()).class(),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn diagnostics_carry_the_classification_as_error_type() {
        let retryable: lambda_runtime::Diagnostic = EngineError::DeadlineReached {
            step: "payment",
            action: "charge",
        }
        .into();
        assert_eq!(retryable.error_type, "Retryable");
        let permanent: lambda_runtime::Diagnostic = EngineError::Step {
            step: "payment",
            action: "charge",
            attempt: 1,
            source: SaasError::Rejected {
                service: "payments",
                action: "charge",
                status: 402,
                reason: "declined".into(),
            },
        }
        .into();
        assert_eq!(permanent.error_type, "Permanent");
        assert!(
            permanent.error_message.contains("declined"),
            "{}",
            permanent.error_message
        );
        let in_progress: lambda_runtime::Diagnostic =
            IdempotencyError::InProgress("k".into()).into();
        assert_eq!(in_progress.error_type, "Retryable");
    }
}
