//! When a failed message comes back: the step's retry backoff for this delivery (at least what
//! a `Retry-After` asked for), at once when waiting cannot help, and the visibility timeouts
//! that make SQS deliver it then.

use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
use sagaform_runtime::errors::{EngineError, ErrorClass};
use sagaform_saas_client::full_jitter;
use sagaform_saga::{PURCHASE, RetryPolicy};
use tracing::warn;

use crate::{Outcome, RecordResult, Worker};

/// Backoff of failures that are not a step's (the state store throttling, say): 1, 2, 4, ...
/// seconds per delivery, at most a minute.
const STORE_RETRY: RetryPolicy = RetryPolicy {
    max_retries: u32::MAX,
    initial_delay: Duration::from_secs(1),
    backoff_rate: 2,
    max_delay: Duration::from_secs(60),
};

/// The longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// The longest the worker waits for SQS to take the new visibility timeouts; without an answer
/// the messages come back after the queue's timeout, which is late but safe.
const VISIBILITY_CALL_LIMIT: Duration = Duration::from_secs(2);

/// When a failed message is to be delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Redelivery {
    /// After the queue's visibility timeout: the message is left as received.
    AfterVisibilityTimeout,
    /// After this long (whole seconds; zero is at once).
    After(Duration),
}

impl Redelivery {
    /// At once.
    pub(crate) const NOW: Redelivery = Redelivery::After(Duration::ZERO);

    /// The `retry`-th retry (1-based) of a call under `policy`: the policy's delay with full
    /// jitter, or what the service asked for when longer, rounded up to whole seconds, the unit
    /// of SQS.
    pub fn backoff(policy: &RetryPolicy, retry: u32, asked: Option<Duration>) -> Redelivery {
        let jittered = full_jitter(policy.delay_before(retry.max(1)));
        let delay = asked.map_or(jittered, |asked| asked.max(jittered));
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        Redelivery::After(Duration::from_secs(seconds).min(MAX_VISIBILITY))
    }
}

/// When a message whose saga failed with `error` on its `delivery`-th receive comes back: a
/// step's retryable failure after the backoff of that call's attempt (its stored attempts, not
/// the receive count, which spans every step of the saga); a saga that ran out of time, or that
/// no delivery can advance, at once (the latter reaches the DLQ in seconds).
pub(crate) fn engine_redelivery(error: &EngineError, delivery: u32) -> Redelivery {
    match error {
        EngineError::Step {
            step,
            action,
            attempt,
            source,
        } if source.is_retryable() => match PURCHASE.retry_policy(step, action) {
            Some(policy) => Redelivery::backoff(policy, *attempt, source.retry_after()),
            None => Redelivery::backoff(&STORE_RETRY, *attempt, source.retry_after()),
        },
        EngineError::DeadlineReached { .. } => Redelivery::NOW,
        EngineError::Store(e) => store_redelivery(e.class() == ErrorClass::Retryable, delivery),
        _ => Redelivery::NOW,
    }
}

/// A state store failure: backed off when it may pass, at once when it cannot.
pub(crate) fn store_redelivery(retryable: bool, delivery: u32) -> Redelivery {
    if retryable {
        Redelivery::backoff(&STORE_RETRY, delivery, None)
    } else {
        Redelivery::NOW
    }
}

impl Worker {
    /// Sets the visibility timeout of each failed message to its redelivery delay, ten messages
    /// per call. Failing here only delays the messages to the queue's own timeout, so it is
    /// logged, not returned.
    pub(crate) async fn schedule_redelivery(&self, results: &[RecordResult], deadline: SystemTime) {
        let Some(queue) = &self.inner.queue else {
            return;
        };
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = results
            .iter()
            .filter(|result| matches!(result.outcome, Outcome::Failed(_)))
            .filter_map(|result| match (result.redelivery, &result.receipt_handle) {
                (Redelivery::After(delay), Some(handle)) => {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(result.index.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(i32::MAX))
                        .build()
                        .ok()
                }
                _ => None,
            })
            .collect();
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        for chunk in entries.chunks(10) {
            let call = queue
                .client
                .change_message_visibility_batch()
                .queue_url(&queue.url)
                .set_entries(Some(chunk.to_vec()))
                .send();
            match tokio::time::timeout(left.min(VISIBILITY_CALL_LIMIT), call).await {
                Ok(Ok(answer)) => {
                    for failed in answer.failed() {
                        warn!(
                            record = failed.id(),
                            code = failed.code(),
                            reason = failed.message().unwrap_or_default(),
                            "could not schedule the message's redelivery; it comes back after the queue's visibility timeout"
                        );
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), messages = chunk.len(),
                          "could not schedule the redelivery of failed messages; they come back after the queue's visibility timeout");
                }
                Err(_) => {
                    warn!(
                        messages = chunk.len(),
                        "SQS did not answer in time to schedule the redelivery of failed messages; they come back after the queue's visibility timeout"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backoff_is_whole_seconds_at_least_what_the_service_asked_and_at_most_twelve_hours() {
        let policy = RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(200),
            backoff_rate: 2,
            max_delay: Duration::from_secs(2),
        };
        for retry in 1..=3 {
            let Redelivery::After(delay) = Redelivery::backoff(&policy, retry, None) else {
                panic!("a backoff is a delay");
            };
            assert!(delay <= Duration::from_secs(1), "{retry}: {delay:?}");
            assert_eq!(delay.subsec_nanos(), 0);
        }
        assert_eq!(
            Redelivery::backoff(&policy, 1, Some(Duration::from_millis(2_100))),
            Redelivery::After(Duration::from_secs(3))
        );
        assert_eq!(
            Redelivery::backoff(&policy, 1, Some(Duration::from_secs(86_400))),
            Redelivery::After(MAX_VISIBILITY)
        );
        let slow = RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_secs(10),
            backoff_rate: 2,
            max_delay: Duration::from_secs(60),
        };
        let spread: std::collections::HashSet<Redelivery> = (0..50)
            .map(|_| Redelivery::backoff(&slow, 4, None))
            .collect();
        assert!(spread.len() > 1, "full jitter spreads retries: {spread:?}");
        assert!(
            spread
                .iter()
                .all(|r| matches!(r, Redelivery::After(d) if *d <= Duration::from_secs(60)))
        );
    }

    #[test]
    fn a_step_failure_is_retried_on_its_call_policy_and_hopeless_ones_at_once() {
        let unavailable = |step, action| EngineError::Step {
            step,
            action,
            attempt: 1,
            source: sagaform_saas_client::SaasError::Unavailable {
                service: "payments",
                action,
                status: 503,
                retry_after: Some(Duration::from_secs(7)),
            },
        };
        assert_eq!(
            engine_redelivery(&unavailable("payment", "refund"), 2),
            Redelivery::After(Duration::from_secs(7))
        );
        assert_eq!(
            engine_redelivery(
                &EngineError::DeadlineReached {
                    step: "payment",
                    action: "charge"
                },
                1
            ),
            Redelivery::NOW
        );
        assert_eq!(
            engine_redelivery(
                &EngineError::InvalidOperation {
                    transaction_id: "t".into(),
                    reason: "r".into()
                },
                1
            ),
            Redelivery::NOW
        );
    }
}
