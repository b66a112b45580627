//! In-process retries for the orchestrator pattern, which runs a whole saga inside one Lambda
//! invocation: back off with full jitter, wait at least what the service asked for
//! (`Retry-After`), and never sleep or call past the invocation deadline (a retry that cannot
//! finish in time is left to the next invocation instead of being killed half-way).
//!
//! The other patterns do not use this: SQS redelivers the message, Step Functions applies the
//! state machine's `Retry`.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use sagaform_saga::RetryPolicy;
use tracing::{info, warn};

use crate::error::SaasError;

/// Runs `attempt` until it succeeds, fails permanently, has been retried
/// `policy.max_retries` times, or the next retry could not start before `deadline`; returns the
/// last result.
///
/// Retry `n` waits a random time in `[0, policy.delay_before(n)]` (full jitter, so callers that
/// failed together do not come back together), or the error's `Retry-After` if that is longer.
/// `attempt` is expected to bound itself by the same deadline (as
/// [`crate::SaasClient::call_before`] does).
pub async fn retry_until<T, F, Fut>(
    policy: &RetryPolicy,
    deadline: Instant,
    mut attempt: F,
) -> Result<T, SaasError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SaasError>>,
{
    let mut retries = 0;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => e,
        };
        if retries >= policy.max_retries {
            warn!(
                retries,
                error_kind = error.kind(),
                "giving up: retries exhausted"
            );
            return Err(error);
        }
        retries += 1;
        let backoff = full_jitter(policy.delay_before(retries));
        let delay = error
            .retry_after()
            .map_or(backoff, |asked| asked.max(backoff));
        if Instant::now() + delay >= deadline {
            warn!(
                retries = retries - 1,
                delay_ms = delay.as_millis() as u64,
                error_kind = error.kind(),
                "giving up: the next retry would start after the deadline"
            );
            return Err(error);
        }
        info!(
            retry = retries,
            delay_ms = delay.as_millis() as u64,
            error_kind = error.kind(),
            "retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// A random duration in `[0, max]`.
///
/// Jitter needs spread, not cryptographic quality: std's `RandomState` is seeded randomly per
/// process and every new instance hashes differently, which saves a dependency on `rand`.
pub fn full_jitter(max: Duration) -> Duration {
    let random = RandomState::new().hash_one(0u8);
    // The top 53 bits make a uniform f64 in [0, 1).
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const QUICK: RetryPolicy = RetryPolicy {
        max_retries: 3,
        initial_delay: Duration::from_millis(1),
        backoff_rate: 2,
        max_delay: Duration::from_millis(4),
    };

    fn unavailable() -> SaasError {
        SaasError::Unavailable {
            service: "payments",
            action: "charge",
            status: 503,
            retry_after: None,
        }
    }

    #[test]
    fn full_jitter_stays_within_the_bound_and_spreads() {
        let max = Duration::from_millis(100);
        let samples: Vec<Duration> = (0..200).map(|_| full_jitter(max)).collect();
        assert!(samples.iter().all(|d| *d <= max));
        assert!(samples.iter().any(|d| *d < max / 4));
        assert!(samples.iter().any(|d| *d > max * 3 / 4));
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_max_retries_times_then_returned() {
        let calls = Cell::new(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let result: Result<(), _> = retry_until(&QUICK, deadline, || {
            calls.set(calls.get() + 1);
            async { Err(unavailable()) }
        })
        .await;
        assert!(matches!(
            result,
            Err(SaasError::Unavailable { status: 503, .. })
        ));
        assert_eq!(calls.get(), 1 + QUICK.max_retries);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = Cell::new(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let result: Result<(), _> = retry_until(&QUICK, deadline, || {
            calls.set(calls.get() + 1);
            async {
                Err(SaasError::Rejected {
                    service: "payments",
                    action: "charge",
                    status: 422,
                    reason: String::new(),
                })
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn a_success_after_failures_is_returned() {
        let calls = Cell::new(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let result = retry_until(&QUICK, deadline, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n < 3 { Err(unavailable()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }
}
