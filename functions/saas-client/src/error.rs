//! The failures of a downstream call, classified once as retryable or permanent so every pattern
//! (in-process retries, SQS redelivery, Step Functions `Retry`) takes the same decision.

use std::time::Duration;

/// Why a downstream call did not produce an answer.
///
/// Retryable: the call may succeed if repeated with the same idempotency key (timeouts,
/// connection failures, 5xx, 429, 408, 409). Permanent: repeating it cannot help (other 4xx, an
/// answer that is not the JSON the contract promises, a configuration mistake); the saga has to
/// compensate.
#[derive(Debug, thiserror::Error)]
pub enum SaasError {
    /// No complete answer within the request timeout (or before the caller's deadline). The
    /// effect may or may not have been applied; a retry with the same key settles it.
    #[error("{service} {action}: no answer within {timeout:?}")]
    Timeout {
        /// Service called.
        service: &'static str,
        /// Action or compensation called.
        action: &'static str,
        /// The time limit that ran out.
        timeout: Duration,
    },
    /// The connection could not be established (refused, reset, DNS, TLS handshake).
    #[error("{service} {action}: cannot connect: {reason}")]
    Connect {
        /// Service called.
        service: &'static str,
        /// Action or compensation called.
        action: &'static str,
        /// What the transport reported.
        reason: String,
    },
    /// The connection broke while the request was sent or the answer read.
    #[error("{service} {action}: connection broken: {reason}")]
    Transport {
        /// Service called.
        service: &'static str,
        /// Action or compensation called.
        action: &'static str,
        /// What the transport reported.
        reason: String,
    },
    /// The service answered with a status that says "try again later": 5xx, 408 or 409.
    #[error("{service} {action}: temporary failure, status {status}")]
    Unavailable {
        /// Service called.
        service: &'static str,
        /// Action or compensation called.
        action: &'static str,
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` the service asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The service answered 429 Too Many Requests.
    #[error("{service} {action}: rate limited (429), retry after {retry_after:?}")]
    RateLimited {
        /// Service called.
        service: &'static str,
        /// Action or compensation called.
        action: &'static str,
        /// The `Retry-After` the service asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The service refused the call for good (a 4xx other than 408, 409 and 429).
    #[error("{service} {action}: rejected with status {status}: {reason}")]
    Rejected {
        /// Service called.
        service: &'static str,
        /// Action or compensation called.
        action: &'static str,
        /// The HTTP status.
        status: u16,
        /// The `reason` (or `error`, `message`) field of the JSON answer, shortened; empty when
        /// there is none. The rest of the body is never kept, it may hold personal data.
        reason: String,
    },
    /// The service answered, but not with what the contract promises (a body that is not JSON,
    /// a redirect, an unexpected status).
    #[error("{service} {action}: invalid answer (status {status}): {reason}")]
    InvalidResponse {
        /// Service called.
        service: &'static str,
        /// Action or compensation called.
        action: &'static str,
        /// The HTTP status.
        status: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be built (a transaction id that is not a valid header value, a
    /// request that cannot be serialized); repeating it would fail the same way.
    #[error("{service} {action}: invalid request: {reason}")]
    InvalidRequest {
        /// Service not called.
        service: &'static str,
        /// Action or compensation not called.
        action: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The caller's deadline had passed before the call could start; nothing was sent.
    #[error("{service} {action}: no time left before the deadline, not called")]
    DeadlineReached {
        /// Service not called.
        service: &'static str,
        /// Action or compensation not called.
        action: &'static str,
    },
    /// The step names a service that has no configuration: a deployment mistake.
    #[error("{service} {action}: service not configured")]
    NotConfigured {
        /// Service not configured.
        service: &'static str,
        /// Action or compensation called.
        action: &'static str,
    },
}

impl SaasError {
    /// Whether repeating the call with the same idempotency key may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::Connect { .. }
            | Self::Transport { .. }
            | Self::Unavailable { .. }
            | Self::RateLimited { .. }
            | Self::DeadlineReached { .. } => true,
            Self::Rejected { .. }
            | Self::InvalidResponse { .. }
            | Self::InvalidRequest { .. }
            | Self::NotConfigured { .. } => false,
        }
    }

    /// The delay the service asked for before the next attempt (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } | Self::RateLimited { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether the call may have taken effect although no success came back: the request may
    /// have reached the provider and been applied while the answer was lost (a timeout, a
    /// connection broken mid-call, a 5xx, 408 or 409, a 2xx or 5xx whose body is not what the
    /// contract promises). Such an outcome is in doubt: asked again with the same idempotency
    /// key it settles, but it must never be compensated blind, since the effect could land
    /// after its compensation.
    pub fn is_in_doubt(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Transport { .. } | Self::Unavailable { .. } => true,
            Self::InvalidResponse { status, .. } => !(400..500).contains(status),
            Self::Connect { .. }
            | Self::RateLimited { .. }
            | Self::Rejected { .. }
            | Self::InvalidRequest { .. }
            | Self::DeadlineReached { .. }
            | Self::NotConfigured { .. } => false,
        }
    }

    /// Whether the provider answered for the idempotency key with a definite refusal: its
    /// answer stands for every earlier attempt with the same key, so it ends an earlier doubt.
    /// A refused connection, a 429 or a call never sent say nothing about earlier attempts.
    pub fn settles_the_key(&self) -> bool {
        match self {
            Self::Rejected { .. } => true,
            Self::InvalidResponse { status, .. } => (400..500).contains(status),
            _ => false,
        }
    }

    /// Whether the effect of the calls made so far with one idempotency key is still unknown
    /// after this failure, given whether it was before (`was_in_doubt`).
    pub fn leaves_in_doubt(&self, was_in_doubt: bool) -> bool {
        self.is_in_doubt() || (was_in_doubt && !self.settles_the_key())
    }

    /// The error type that Step Functions' `Retry` and `Catch` match on: `InDoubt`,
    /// `Retryable` or `Permanent` (see `sagaform_contract::task::error_types`).
    pub fn error_type(&self) -> &'static str {
        use sagaform_contract::task::error_types::{IN_DOUBT, PERMANENT, RETRYABLE};
        if self.is_in_doubt() {
            IN_DOUBT
        } else if self.is_retryable() {
            RETRYABLE
        } else {
            PERMANENT
        }
    }

    /// A short, stable name of the failure kind for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::Transport { .. } => "transport",
            Self::Unavailable { .. } => "unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::Rejected { .. } => "rejected",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::DeadlineReached { .. } => "deadline_reached",
            Self::NotConfigured { .. } => "not_configured",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_matches_the_error_type_step_functions_retries() {
        let timeout = SaasError::Timeout {
            service: "payments",
            action: "charge",
            timeout: Duration::from_secs(5),
        };
        assert!(timeout.is_retryable() && timeout.is_in_doubt());
        assert_eq!(timeout.error_type(), "InDoubt");
        let garbled = SaasError::InvalidResponse {
            service: "payments",
            action: "charge",
            status: 200,
            reason: "not JSON".into(),
        };
        assert!(!garbled.is_retryable() && garbled.is_in_doubt());

        let limited = SaasError::RateLimited {
            service: "payments",
            action: "charge",
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(limited.is_retryable());
        assert_eq!(limited.error_type(), "Retryable");
        assert!(!limited.is_in_doubt());
        assert!(
            limited.leaves_in_doubt(true),
            "a 429 says nothing of earlier attempts"
        );
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));

        let rejected = SaasError::Rejected {
            service: "payments",
            action: "charge",
            status: 422,
            reason: "card declined".into(),
        };
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.error_type(), "Permanent");
        assert!(
            !rejected.leaves_in_doubt(true),
            "a refusal answers for the key"
        );
        assert_eq!(rejected.retry_after(), None);
        assert_eq!(
            rejected.to_string(),
            "payments charge: rejected with status 422: card declined"
        );
    }
}
