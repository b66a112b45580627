//! The worker brings a failed message back when its retry is due, not after the queue's
//! visibility timeout: the queues here keep the deployed env's 15 minutes, so a message seen
//! again within seconds was rescheduled by the worker, and one the worker was not allowed to
//! reschedule stays away.

use crate::common;

use std::time::{Duration, Instant};

use common::{INVOCATION_TIME, SqsPattern, peek};
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_runtime::SagaStatus;
use sagaform_testkit::{
    Backend, QueuePair, event, post_transactions, purchase, sqs_client, sqs_event,
};
use sagaform_worker::Worker;

/// The work queue's visibility timeout in the local env (six worker timeouts).
const DEPLOYED_VISIBILITY_SECONDS: &str = "900";

async fn pattern(backend: Backend, max_receive_count: u32) -> SqsPattern {
    let pattern = SqsPattern::new(backend, max_receive_count).await;
    sqs_client()
        .set_queue_attributes()
        .queue_url(&pattern.queues.url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            DEPLOYED_VISIBILITY_SECONDS,
        )
        .send()
        .await
        .expect("set the work queue's visibility timeout");
    pattern
}

/// The messages of `queue_url` that become visible within `within` (none: empty).
async fn receive_within(queue_url: &str, within: Duration) -> Vec<aws_sdk_sqs::types::Message> {
    let started = Instant::now();
    loop {
        let messages = QueuePair::receive(queue_url).await;
        if !messages.is_empty() || started.elapsed() >= within {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Hands `messages` to `worker` as one batch; the ids it reported failed.
async fn invoke(worker: &Worker, messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
    worker
        .handle(event(sqs_event(messages), INVOCATION_TIME))
        .await
        .expect("the batch is answered")
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

fn receive_count(message: &aws_sdk_sqs::types::Message) -> u32 {
    message
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_transient_failure_comes_back_after_the_step_backoff_not_the_visibility_timeout() {
    for backend in Backend::ALL {
        let pattern = pattern(backend, 5).await;
        let scheduling = pattern.scheduling_worker().await;
        pattern
            .fake
            .faults()
            .add(FaultRule::new("payments", "charge", Fault::Unavailable).times(2))
            .unwrap();

        // The same failure, once under a worker that may not reschedule: that message stays
        // away, which shows the queue would not bring the other one back by itself.
        let (_, held, _) = pattern
            .call_api(post_transactions(&purchase().to_string(), None))
            .await;
        let messages = receive_within(&pattern.queues.url, Duration::from_secs(5)).await;
        assert_eq!(messages.len(), 1, "{backend:?}");
        assert_eq!(
            invoke(&pattern.worker, &messages).await.len(),
            1,
            "{backend:?}"
        );

        let (_, accepted, _) = pattern
            .call_api(post_transactions(&purchase().to_string(), None))
            .await;
        let id = accepted["transaction_id"].as_str().unwrap().to_owned();
        let messages = receive_within(&pattern.queues.url, Duration::from_secs(5)).await;
        assert_eq!(messages.len(), 1, "{backend:?}");
        assert_eq!(
            invoke(&scheduling, &messages).await.len(),
            1,
            "{backend:?}: the charge failed"
        );

        // While it waits, the saga's status shows the failed attempt and why.
        let waiting = pattern.store.saga(&id).await;
        assert_eq!(waiting.steps[1].attempts, 1, "{backend:?}: {waiting:?}");
        assert!(
            waiting.steps[1]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("503")),
            "{backend:?}: {waiting:?}"
        );

        // The charge's first retry waits 200 ms before jitter, one second in SQS's unit.
        let again = receive_within(&pattern.queues.url, Duration::from_secs(10)).await;
        assert_eq!(
            again.len(),
            1,
            "{backend:?}: the rescheduled message came back alone"
        );
        assert!(again[0].body().unwrap().contains(&id), "{backend:?}");
        assert_eq!(receive_count(&again[0]), 2, "{backend:?}");
        assert!(invoke(&scheduling, &again).await.is_empty(), "{backend:?}");
        let finished = pattern.store.saga(&id).await;
        assert_eq!(finished.status, SagaStatus::Completed, "{backend:?}");
        assert_eq!(
            (
                finished.steps[1].attempts,
                finished.steps[1].error.as_deref()
            ),
            (2, None),
            "{backend:?}: the second attempt succeeded"
        );
        let payments = pattern.fake.ledger().transaction(&id).service("payments");
        assert_eq!(payments.calls["charge"], 2, "{backend:?}: {payments:?}");
        assert_eq!(
            payments.actions_applied,
            ["charge"],
            "{backend:?}: {payments:?}"
        );

        let held_id = held["transaction_id"].as_str().unwrap();
        assert_eq!(
            pattern.store.saga(held_id).await.status,
            SagaStatus::Running,
            "{backend:?}: the unscheduled message is still waiting out the visibility timeout"
        );
    }
}

#[tokio::test]
async fn a_rate_limited_call_is_not_retried_before_its_retry_after() {
    let pattern = pattern(Backend::ALL[0], 5).await;
    let worker = pattern.scheduling_worker().await;
    pattern
        .fake
        .faults()
        .add(
            FaultRule::new(
                "payments",
                "charge",
                Fault::RateLimited {
                    retry_after_secs: 3,
                },
            )
            .times(1),
        )
        .unwrap();
    let (_, accepted, _) = pattern
        .call_api(post_transactions(&purchase().to_string(), None))
        .await;
    let id = accepted["transaction_id"].as_str().unwrap().to_owned();
    let messages = receive_within(&pattern.queues.url, Duration::from_secs(5)).await;
    assert_eq!(invoke(&worker, &messages).await.len(), 1);
    let failed_at = Instant::now();

    let again = receive_within(&pattern.queues.url, Duration::from_secs(10)).await;
    assert_eq!(again.len(), 1, "the message came back");
    assert!(
        failed_at.elapsed() >= Duration::from_millis(2_500),
        "the message came back {:?} after a 429 asking for 3 s",
        failed_at.elapsed()
    );
    assert!(invoke(&worker, &again).await.is_empty());
    assert_eq!(pattern.store.saga(&id).await.status, SagaStatus::Completed);
}

#[tokio::test]
async fn a_message_no_delivery_can_process_reaches_the_dead_letter_queue_in_seconds() {
    let pattern = pattern(Backend::ALL[0], 3).await;
    let worker = pattern.scheduling_worker().await;
    sqs_client()
        .send_message()
        .queue_url(&pattern.queues.url)
        .message_body(r#"{"transaction_id": "not-a-uuid", "request": {}}"#)
        .send()
        .await
        .expect("send a malformed message");

    let started = Instant::now();
    let mut invocations = 0;
    while peek(&pattern.queues.dlq_url).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the malformed message is not in the DLQ after {invocations} deliveries"
        );
        let messages = receive_within(&pattern.queues.url, Duration::from_secs(1)).await;
        if !messages.is_empty() {
            assert_eq!(invoke(&worker, &messages).await.len(), messages.len());
            invocations += 1;
        }
    }
    assert_eq!(
        invocations, 3,
        "one delivery per receive up to maxReceiveCount"
    );
}
