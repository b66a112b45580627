//! The sqs pattern end to end through its handlers, on both stores: the API records the saga
//! PENDING and enqueues it, the worker advances it on each delivery (driven like Lambda's event
//! source mapping, against a real queue and DLQ on moto), and the fake SaaS's ledger proves what
//! took effect downstream.
//!
//! The scenarios every pattern shares are the acceptance suite of `sagaform-testkit`, run here
//! through [`SqsPattern`]; below it, what only this pattern shows: the message on the queue, and
//! a saga the queue refused.

use crate::common;

use common::{Drained, SqsPattern, call, make_visible, peek};
use sagaform_api::Api;
use sagaform_contract::message::WorkMessage;
use sagaform_runtime::SagaStatus;
use sagaform_runtime::engine::reopen_in_doubt;
use sagaform_saga::PURCHASE;
use sagaform_testkit::acceptance::{
    ApiGatewayV2httpRequest, Course, KILLED_INVOCATION, Kill, PatternDriver, until_called,
};
use sagaform_testkit::{
    Backend, QueuePair, acceptance_suite, driver_fields_and_call, event, post_transactions,
    purchase, sqs_event,
};
use serde_json::{Value, json};

/// Receives before a message moves to the DLQ, in the suite's runs: the queue the stacks
/// synthesize for the default poison bound (`[queue] max_receive_count = 5`), which leaves room
/// for every retry of every step.
fn max_receive_count() -> u32 {
    PURCHASE.max_receive_count(5)
}

/// Batches a drain plays at most: every receive a message may have, and some.
fn max_rounds() -> usize {
    max_receive_count() as usize + 5
}

/// The worker's deliveries of one saga, until the queue was empty.
#[derive(Debug)]
pub struct Deliveries {
    transaction_id: String,
    /// The messages in the queue before the first delivery.
    enqueued: usize,
    drained: Drained,
}

impl PatternDriver for SqsPattern {
    type Api = Api;
    type Run = Deliveries;
    const HANDS_OVER: bool = true;
    const COUNTS_ATTEMPTS: bool = true;

    driver_fields_and_call!(invocation_time: common::INVOCATION_TIME);

    async fn start(backend: Backend) -> SqsPattern {
        SqsPattern::new(backend, max_receive_count()).await
    }

    async fn another_api(&self) -> Api {
        SqsPattern::another_api(self).await
    }

    async fn waiting_handovers(&self) -> usize {
        self.waiting().await
    }

    async fn finish(&self, transaction_id: &str) -> Deliveries {
        let enqueued = self.waiting().await;
        Deliveries {
            transaction_id: transaction_id.to_owned(),
            enqueued,
            drained: self.drain(max_rounds()).await,
        }
    }

    /// One delivery per call that failed transiently, then one that finishes the saga and
    /// deletes its messages (several when duplicate requests each enqueued it); a compensation failing for good keeps failing the message until
    /// the queue moves it to the DLQ, where it names its saga.
    async fn check_run(&self, run: &Deliveries, course: Course) {
        let drained = &run.drained;
        let dead = peek(&self.queues.dlq_url).await;
        match course {
            Course::Completed { failed_calls } | Course::Compensated { failed_calls } => {
                // Duplicates of the message in the saga's batch find it claimed by the first
                // and come back once more.
                let rounds = failed_calls + 1 + usize::from(run.enqueued > 1);
                assert_eq!(
                    (drained.invocations, drained.deleted),
                    (rounds, run.enqueued),
                    "{course:?}: {drained:?}"
                );
                assert!(dead.is_empty(), "{course:?}: {dead:?}");
            }
            Course::CompensationFailed | Course::InDoubt => {
                assert_eq!(
                    (drained.invocations, drained.deleted),
                    (max_receive_count() as usize, 0),
                    "{drained:?}"
                );
                assert_eq!(dead.len(), 1, "{dead:?}");
                let attribute = &dead[0].message_attributes().unwrap()["transaction_id"];
                assert_eq!(
                    attribute.string_value(),
                    Some(run.transaction_id.as_str()),
                    "the DLQ message names its saga"
                );
            }
        }
    }

    /// The operator's retry sends a new work message for the saga, as `saga retry` does, and
    /// the worker runs it.
    async fn retry(&self, transaction_id: &str) {
        let saga = reopen_in_doubt(self.store.store(), transaction_id)
            .await
            .expect("reopen the saga in doubt");
        sagaform_testkit::sqs_client()
            .send_message()
            .queue_url(&self.queues.url)
            .message_body(WorkMessage::new(transaction_id, saga.request).to_body())
            .send()
            .await
            .expect("send the work message");
        let drained = self.drain(max_rounds()).await;
        assert_eq!(drained.deleted, 1, "{drained:?}");
    }

    /// The API hands the saga over; the worker invocation of its message is killed, deleting
    /// nothing, so the message comes back after its visibility timeout (made immediate here),
    /// and the next delivery (after the dead invocation's deadline, until which its claim on
    /// the saga holds) finishes the saga.
    async fn run_killed(&self, request: ApiGatewayV2httpRequest, kill: Kill) -> String {
        let answer = self.call(&self.api, request).await;
        assert_eq!(answer.status, 202, "{:#}", answer.body);
        let messages = QueuePair::receive(&self.queues.url).await;
        let batch = sqs_event(&messages);
        match kill {
            Kill::WhileChargeInFlight => {
                tokio::select! {
                    _ = self.worker.handle(event(batch, KILLED_INVOCATION)) => {
                        panic!("the invocation was meant to die mid-saga")
                    }
                    () = until_called(&self.fake, "payments", "charge") => {}
                }
                tokio::time::sleep(KILLED_INVOCATION).await;
            }
            Kill::AfterTheWork => {
                let _lost = self
                    .worker
                    .handle(event(batch, common::INVOCATION_TIME))
                    .await;
            }
        }
        make_visible(&self.queues.url, &messages).await;
        let drained = self.drain(max_rounds()).await;
        assert_eq!(drained.deleted, 1, "{drained:?}");
        answer.transaction_id().to_owned()
    }
}

acceptance_suite!(SqsPattern);

fn body() -> String {
    purchase().to_string()
}

#[tokio::test]
async fn the_message_carries_the_saga_id_as_an_attribute_and_the_request_in_its_body() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, max_receive_count()).await;
        let (status, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
        assert_eq!(status, 202, "{backend:?}: {accepted:#}");
        let id = accepted["transaction_id"].as_str().unwrap();

        let messages = peek(&pattern.queues.url).await;
        assert_eq!(messages.len(), 1, "{backend:?}");
        let message_body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
        assert_eq!(
            message_body,
            json!({"transaction_id": id, "request": purchase()})
        );
        let attribute = &messages[0].message_attributes().unwrap()["transaction_id"];
        assert_eq!(
            (attribute.data_type(), attribute.string_value()),
            ("String", Some(id))
        );
    }
}

/// A saga the queue keeps refusing is not left PENDING with nothing to run it (before, without
/// an `Idempotency-Key` it was, and a client's retry made a second one): after its hand-over
/// attempts it is abandoned (COMPENSATED, nothing ran) and the client gets 503. A retry with the
/// same key starts afresh; a late copy of the abandoned saga's message runs nothing.
#[tokio::test]
async fn a_saga_the_queue_refused_is_abandoned_and_a_retry_with_the_same_key_starts_afresh() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, max_receive_count()).await;
        let missing_queue = format!("{}-missing", pattern.queues.url);
        let broken = Api::new(
            pattern.store.store().clone(),
            sagaform_api::Dispatch::Queue {
                client: sagaform_testkit::sqs_client(),
                queue_url: missing_queue,
            },
        );
        for key in [None, Some("enqueue-retry")] {
            let (status, failed, _) = call(&broken, post_transactions(&body(), key)).await;
            assert_eq!(
                (status, failed["error"].as_str()),
                (503, Some("dispatch_failed")),
                "{backend:?} {key:?}: {failed:#}"
            );
            let id = failed["transaction_id"].as_str().unwrap().to_owned();
            let abandoned = pattern.store.saga(&id).await;
            assert_eq!(abandoned.status, SagaStatus::Compensated, "{backend:?}");
            assert!(
                abandoned
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("not started")),
                "{backend:?}: {abandoned:?}"
            );
        }
        let abandoned_with_key = pattern.store.all_sagas().await;
        assert_eq!(abandoned_with_key.len(), 2, "{backend:?}");

        let (status, accepted, replayed) = pattern
            .call_api(post_transactions(&body(), Some("enqueue-retry")))
            .await;
        assert_eq!(
            (status, replayed.as_deref()),
            (202, None),
            "{backend:?}: a new saga, not a replay: {accepted:#}"
        );
        let id = accepted["transaction_id"].as_str().unwrap().to_owned();
        assert!(abandoned_with_key.iter().all(|s| s.transaction_id != id));
        // A late message of an abandoned saga (its hand-over landed after all) runs nothing.
        let late = abandoned_with_key[0].transaction_id.clone();
        sagaform_testkit::sqs_client()
            .send_message()
            .queue_url(&pattern.queues.url)
            .message_body(json!({"transaction_id": late, "request": purchase()}).to_string())
            .send()
            .await
            .unwrap();
        pattern.drain(max_rounds()).await;
        assert_eq!(
            pattern.store.saga(&id).await.status,
            SagaStatus::Completed,
            "{backend:?}"
        );
        assert_eq!(
            pattern.store.saga(&late).await.status,
            SagaStatus::Compensated,
            "{backend:?}"
        );
        assert_eq!(
            pattern.fake.ledger().transaction(&late).total_calls(),
            0,
            "{backend:?}: nothing ran for the abandoned saga"
        );
    }
}
