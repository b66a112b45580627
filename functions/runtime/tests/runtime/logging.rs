//! The JSON logs of a saga, captured from the formatter the Lambda functions install: every line
//! the runtime (and the SaaS client it drives) writes for a saga carries its `transaction_id`.

use crate::common;

use common::generous_deadline;
use sagaform_contract::log;
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_runtime::engine::Engine;
use sagaform_runtime::model::SagaStatus;
use sagaform_runtime::telemetry::json_subscriber;
use sagaform_saga::PURCHASE;
use sagaform_testkit::logs::LogCapture;
use sagaform_testkit::{Backend, TestStore, fake_saas, purchase};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

// A current-thread runtime, so the subscriber installed for this thread sees every event of the
// saga (the fake SaaS server runs on the same thread; its lines are the downstream's, not the
// saga's, and are left out of the check).
#[tokio::test(flavor = "current_thread")]
async fn every_log_line_of_a_saga_carries_its_transaction_id() {
    let capture = LogCapture::default();
    let store = TestStore::new(Backend::Postgres).await;
    let (fake, client) = fake_saas().await;
    // Installed after the set-up, whose lines (schema migrations) belong to no saga.
    let _subscriber =
        tracing::subscriber::set_default(json_subscriber(EnvFilter::new("debug"), capture.clone()));
    let engine = Engine::new(PURCHASE, store.store(), &client);

    let record = engine.start(purchase()).await.unwrap();
    let tx = record.transaction_id.clone();
    // A retry, a permanent failure and compensations, so warnings and retries are logged too.
    fake.faults()
        .add(
            FaultRule::new("payments", "charge", Fault::Unavailable)
                .for_transaction(&tx)
                .times(1),
        )
        .unwrap();
    fake.faults()
        .add(
            FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 422,
                    reason: "no".into(),
                },
            )
            .for_transaction(&tx),
        )
        .unwrap();
    let finished = engine.run(&tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::Compensated);

    let saga_lines: Vec<Value> = capture
        .lines()
        .into_iter()
        .filter(|line| {
            !line["target"]
                .as_str()
                .unwrap_or_default()
                .starts_with("sagaform_fake_saas")
        })
        .collect();
    let messages: Vec<&str> = saga_lines
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    for expected in [
        "saga recorded",
        "step succeeded",
        "compensating",
        "step compensated",
        "saga finished",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "no `{expected}` line in {messages:?}"
        );
    }
    assert!(
        saga_lines.iter().any(|l| l["target"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sagaform_saas_client")),
        "the SaaS client's lines are part of the saga's log"
    );
    for line in &saga_lines {
        assert_eq!(
            line["transaction_id"],
            tx.as_str(),
            "line without the saga's transaction_id: {line}"
        );
        assert!(
            line.get(log::OUTCOME_FIELD).is_none(),
            "a compensated saga is not counted as in doubt: {line}"
        );
    }
}

// The in-doubt alarm counts the lines its metric filter matches: a saga parked IN_DOUBT must
// write exactly one line with the contract's outcome field and value.
#[tokio::test(flavor = "current_thread")]
async fn a_saga_parked_in_doubt_writes_the_one_line_its_alarm_counts() {
    let capture = LogCapture::default();
    let store = TestStore::new(Backend::Postgres).await;
    let (fake, client) = fake_saas().await;
    let _subscriber = capture.install();
    let engine = Engine::new(PURCHASE, store.store(), &client);

    let record = engine.start(purchase()).await.unwrap();
    let tx = record.transaction_id.clone();
    // Every attempt of the charge ends in a 5xx: its effect is unknown.
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::Unavailable).for_transaction(&tx))
        .unwrap();
    let finished = engine.run(&tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::InDoubt);

    let counted = capture.the_one_counted(log::SAGA_IN_DOUBT, tx.as_str());
    assert_eq!(counted["step"], "payment");
}

// The compensation-failed alarm counts the lines its metric filter matches: a saga the engine
// runs to COMPENSATION_FAILED (the orchestrator, its asynchronous resume, the sqs worker) writes
// exactly one, after the write that settles it.
#[tokio::test(flavor = "current_thread")]
async fn a_saga_ending_compensation_failed_writes_the_one_line_its_alarm_counts() {
    let capture = LogCapture::default();
    let store = TestStore::new(Backend::Postgres).await;
    let (fake, client) = fake_saas().await;
    let _subscriber = capture.install();
    let engine = Engine::new(PURCHASE, store.store(), &client);

    let record = engine.start(purchase()).await.unwrap();
    let tx = record.transaction_id.clone();
    // The grant is declined, so the saga compensates; the refund is refused for good.
    let rejected = || Fault::Reject {
        status: 422,
        reason: "declined on purpose".to_owned(),
    };
    for (service, action) in [("entitlements", "grant"), ("payments", "refund")] {
        fake.faults()
            .add(FaultRule::new(service, action, rejected()).for_transaction(&tx))
            .unwrap();
    }
    let finished = engine.run(&tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::CompensationFailed);

    let counted = capture.the_one_counted(log::SAGA_COMPENSATION_FAILED, tx.as_str());
    assert!(
        counted["error"].as_str().unwrap().contains("refund"),
        "the line names the compensation: {}",
        counted
    );
}

// In Step Functions the saga ends COMPENSATION_FAILED in a `mark_failed` Task; only the Task
// that settles the saga writes the counted line, and a retried Task writes no second one.
#[tokio::test(flavor = "current_thread")]
async fn marking_the_last_compensation_failed_writes_the_counted_line_once() {
    let capture = LogCapture::default();
    let store = TestStore::new(Backend::DynamoDb).await;
    let (_fake, client) = fake_saas().await;
    let _subscriber = capture.install();
    let engine = Engine::new(PURCHASE, store.store(), &client);

    let record = engine.start(purchase()).await.unwrap();
    let tx = record.transaction_id.clone();
    let deadline = generous_deadline();
    engine.execute_step(&tx, "stock", deadline).await.unwrap();
    engine
        .compensate_step(&tx, "payment", Some("declined".to_owned()), deadline)
        .await
        .unwrap();
    assert!(capture.counted().is_empty(), "still compensating");
    for _ in 0..2 {
        let settled = engine
            .mark_failed(&tx, "stock", Some("release refused".to_owned()))
            .await
            .unwrap();
        assert_eq!(settled.status, SagaStatus::CompensationFailed);
    }

    capture.the_one_counted(log::SAGA_COMPENSATION_FAILED, tx.as_str());
}
