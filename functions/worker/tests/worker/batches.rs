//! Batch handling of the worker: partial batch responses, malformed bodies, duplicate
//! deliveries processed at the same time, the invocation deadline, and FIFO queues.

use crate::common;

use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use common::{SqsPattern, call, peek};
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_runtime::SagaStatus;
use sagaform_testkit::{
    Backend, QueuePair, event, post_transactions, purchase, sqs_client, sqs_event, sqs_record,
};
use sagaform_worker::{Failure, Outcome};

#[tokio::test]
async fn one_bad_record_of_three_is_the_only_id_reported() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        for _ in 0..2 {
            let (status, _, _) = pattern
                .call_api(post_transactions(&purchase().to_string(), None))
                .await;
            assert_eq!(status, 202);
        }
        let mut batch = sqs_event(&QueuePair::receive(&pattern.queues.url).await);
        assert_eq!(batch.records.len(), 2, "{backend:?}");
        batch
            .records
            .insert(1, sqs_record("bad-record", r#"{"transaction_id": 42}"#));

        let response = pattern
            .worker
            .handle(event(batch, common::INVOCATION_TIME))
            .await
            .unwrap();
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["bad-record"], "{backend:?}");
        let sagas = pattern.store.all_sagas().await;
        assert!(
            sagas.iter().all(|s| s.status == SagaStatus::Completed),
            "{backend:?}: {sagas:#?}"
        );
    }
}

#[tokio::test]
async fn a_malformed_message_reaches_the_dlq_after_max_receive_count_and_nothing_else_happens() {
    let pattern = SqsPattern::new(Backend::DynamoDb, 3).await;
    sqs_client()
        .send_message()
        .queue_url(&pattern.queues.url)
        .message_body("not json at all")
        .send()
        .await
        .unwrap();
    let drained = pattern.drain(10).await;
    assert_eq!(
        (drained.invocations, drained.deleted),
        (3, 0),
        "{drained:?}"
    );
    let dead = peek(&pattern.queues.dlq_url).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("not json at all"));
    assert!(pattern.store.all_sagas().await.is_empty());
    assert!(pattern.fake.ledger().snapshot().transactions.is_empty());
}

#[tokio::test]
async fn duplicate_deliveries_processed_at_the_same_time_run_the_saga_once() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        // A slow first step keeps the first delivery busy while the duplicate arrives.
        pattern
            .fake
            .faults()
            .add(FaultRule::new(
                "inventory",
                "reserve",
                Fault::Latency { delay_ms: 300 },
            ))
            .unwrap();
        pattern
            .call_api(post_transactions(&purchase().to_string(), None))
            .await;
        let messages = QueuePair::receive(&pattern.queues.url).await;
        let mut duplicate = sqs_event(&messages);
        duplicate.records[0].message_id = Some("duplicate-delivery".to_owned());
        let other_worker = pattern.another_worker().await;

        let (first, second) = tokio::join!(
            pattern
                .worker
                .process(event(sqs_event(&messages), common::INVOCATION_TIME)),
            other_worker.process(event(duplicate.clone(), common::INVOCATION_TIME)),
        );
        let outcomes = [&first[0].1, &second[0].1];
        assert!(
            outcomes.contains(&&Outcome::Done(SagaStatus::Completed)),
            "{backend:?}: {outcomes:?}"
        );
        assert!(
            outcomes.contains(&&Outcome::Failed(Failure::InProgress)),
            "{backend:?}: {outcomes:?}"
        );

        // The duplicate comes back later and is dropped as done.
        let again = other_worker
            .process(event(duplicate, common::INVOCATION_TIME))
            .await;
        assert_eq!(
            again[0].1,
            Outcome::Done(SagaStatus::Completed),
            "{backend:?}"
        );
        let saga = pattern.store.only_saga().await;
        assert_eq!(
            pattern
                .fake
                .ledger()
                .transaction(&saga.transaction_id)
                .total_calls(),
            3,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn records_are_not_started_when_the_deadline_is_near() {
    let pattern = SqsPattern::new(Backend::Postgres, 5).await;
    pattern
        .call_api(post_transactions(&purchase().to_string(), None))
        .await;
    let batch = sqs_event(&QueuePair::receive(&pattern.queues.url).await);
    let response = pattern
        .worker
        .handle(event(batch, Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    let saga = pattern.store.only_saga().await;
    assert_eq!(saga.status, SagaStatus::Pending, "nothing was started");
    assert!(pattern.fake.ledger().snapshot().transactions.is_empty());
}

#[tokio::test]
async fn a_failed_record_without_a_message_id_fails_the_whole_batch() {
    let pattern = SqsPattern::new(Backend::DynamoDb, 5).await;
    let mut batch = SqsEvent::default();
    batch.records.push(sqs_record("", "garbage"));
    let error = pattern
        .worker
        .handle(event(batch, common::INVOCATION_TIME))
        .await
        .unwrap_err();
    let diagnostic: lambda_runtime::Diagnostic = error.into();
    assert_eq!(diagnostic.error_type, "Retryable");
}

#[tokio::test]
async fn fifo_queues_get_the_transaction_id_as_group_and_deduplication_id() {
    let pattern = SqsPattern::new(Backend::DynamoDb, 5).await;
    let sqs = sqs_client();
    let fifo_url = sqs
        .create_queue()
        .queue_name(format!("sagaform-{}.fifo", uuid::Uuid::now_v7().simple()))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let api = sagaform_api::Api::new(
        pattern.store.store().clone(),
        sagaform_api::Dispatch::Queue {
            client: sqs,
            queue_url: fifo_url.clone(),
        },
    );
    let (status, accepted, _) = call(&api, post_transactions(&purchase().to_string(), None)).await;
    assert_eq!(status, 202);
    let id = accepted["transaction_id"].as_str().unwrap();
    let messages = QueuePair::receive(&fifo_url).await;
    let attributes = messages[0].attributes().unwrap();
    use aws_sdk_sqs::types::MessageSystemAttributeName as Name;
    assert_eq!(attributes[&Name::MessageGroupId], id);
    assert_eq!(attributes[&Name::MessageDeduplicationId], id);

    // A FIFO batch is processed in order per group: once a record fails, the later ones of its
    // group are reported failed without being processed.
    let mut batch = sqs_event(&messages);
    let mut first = sqs_record("first-of-group", "garbage");
    first
        .attributes
        .insert("MessageGroupId".to_owned(), id.to_owned());
    batch.records.insert(0, first);
    let outcomes = pattern
        .worker
        .process(event(batch, common::INVOCATION_TIME))
        .await;
    assert!(
        matches!(outcomes[0].1, Outcome::Failed(Failure::Malformed(_))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1].1, Outcome::Failed(Failure::GroupBlocked));
    assert_eq!(pattern.store.saga(id).await.status, SagaStatus::Pending);
}
