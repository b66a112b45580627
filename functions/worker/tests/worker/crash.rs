//! A worker invocation that dies in the middle of a saga (the Lambda instance is killed: its
//! future is dropped while a SaaS call is in flight): a redelivery while the dead invocation's
//! claim is still valid does nothing, and once its deadline has passed the next delivery takes
//! the saga over and finishes it with every effect applied once.

use crate::common;

use std::time::Duration;

use common::SqsPattern;
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_runtime::SagaStatus;
use sagaform_testkit::acceptance::assert_every_effect_once;
use sagaform_testkit::{Backend, QueuePair, event, post_transactions, purchase, sqs_event};
use sagaform_worker::{Failure, Outcome};

/// Long enough for the engine to start a step (its longest timeout, 5 s) plus the margin.
const SHORT_INVOCATION: Duration = Duration::from_millis(6000);

async fn die_mid_saga_then_recover(backend: Backend) {
    let pattern = SqsPattern::new(backend, 5).await;
    // The charge is slow; the invocation is killed once it is in flight.
    pattern
        .fake
        .faults()
        .add(FaultRule::new("payments", "charge", Fault::Latency { delay_ms: 1500 }).times(1))
        .unwrap();
    pattern
        .call_api(post_transactions(&purchase().to_string(), None))
        .await;
    let batch = sqs_event(&QueuePair::receive(&pattern.queues.url).await);

    let id = pattern.store.only_saga().await.transaction_id;
    let ledger = pattern.fake.ledger();
    let charge_in_flight = async {
        while ledger
            .transaction(&id)
            .service("payments")
            .calls
            .get("charge")
            .copied()
            .unwrap_or(0)
            == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = pattern.worker.handle(event(batch.clone(), SHORT_INVOCATION)) => {
            panic!("{backend:?}: the invocation was meant to die mid-saga")
        }
        () = charge_in_flight => {}
    }

    // Redelivered while the dead invocation could still be running: nothing is called.
    let calls_before = pattern.fake.ledger().transaction(&id).total_calls();
    let early = pattern
        .another_worker()
        .await
        .process(event(batch.clone(), common::INVOCATION_TIME))
        .await;
    assert_eq!(
        early[0].1,
        Outcome::Failed(Failure::InProgress),
        "{backend:?}"
    );
    assert_eq!(
        pattern.fake.ledger().transaction(&id).total_calls(),
        calls_before,
        "{backend:?}"
    );

    tokio::time::sleep(SHORT_INVOCATION).await;
    let mut later = batch;
    later.records[0]
        .attributes
        .insert("ApproximateReceiveCount".to_owned(), "3".to_owned());
    let recovered = pattern
        .another_worker()
        .await
        .process(event(later, common::INVOCATION_TIME))
        .await;
    assert_eq!(
        recovered[0].1,
        Outcome::Done(SagaStatus::Completed),
        "{backend:?}"
    );
    assert_every_effect_once(&pattern.fake, &id, backend);
}

#[tokio::test]
async fn a_worker_killed_mid_saga_is_taken_over_after_its_deadline_without_double_effects() {
    tokio::join!(
        die_mid_saga_then_recover(Backend::DynamoDb),
        die_mid_saga_then_recover(Backend::Postgres)
    );
}
