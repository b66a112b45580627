//! Correlation: every log line the API writes while handling a purchase carries the Lambda
//! request id and the saga's `transaction_id`, and the downstream services see the
//! `transaction_id` as `X-Correlation-Id` (the fake's ledger is keyed by that header); so does
//! every line of a resume event's invocation.

mod common;

use std::time::Duration;

use api::Api;
use lambda_runtime::LambdaEvent;
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_runtime::model::new_transaction_id;
use sagaform_runtime::{SagaRecord, SagaStore};
use sagaform_saga::PURCHASE;
use sagaform_testkit::{
    Backend, LogCapture, TestStore, context, fake_saas, post_transactions, purchase, response_json,
};

#[tokio::test]
async fn every_log_line_of_a_purchase_carries_the_request_id_and_the_transaction_id() {
    for backend in Backend::ALL {
        let store = TestStore::new(backend).await;
        let (fake, client) = fake_saas().await;
        // A retried call and a compensation make the saga log more than the happy path does.
        fake.faults()
            .add(FaultRule::new("payments", "charge", Fault::Unavailable).times(1))
            .unwrap();
        fake.faults()
            .add(FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 422,
                    reason: "no".into(),
                },
            ))
            .unwrap();
        let api = Api::orchestrator(store.store(), client);

        let (logs, _guard) = LogCapture::start();
        let request_id = format!("req-correlation-{backend:?}");
        let event = LambdaEvent::new(
            post_transactions(&purchase().to_string(), Some("corr")),
            context(&request_id, Duration::from_secs(60)),
        );
        let response = api.handle(event).await;
        let body = response_json(&response);
        let transaction_id = body["transaction_id"].as_str().unwrap().to_owned();

        let lines = logs.function_lines();
        assert!(
            lines.len() >= 8,
            "{backend:?}: expected the saga's lines, got {lines:#?}"
        );
        for line in &lines {
            assert_eq!(
                line["transaction_id"],
                transaction_id.as_str(),
                "{backend:?}: {line}"
            );
            assert_eq!(
                line["requestId"],
                request_id.as_str(),
                "{backend:?}: {line}"
            );
        }
        let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
        assert!(
            messages.contains(&"saga recorded"),
            "{backend:?}: {messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("compensat")),
            "{backend:?}: {messages:?}"
        );

        // Every call reached the fake under the saga's id, none under another.
        let ledger = fake.ledger().snapshot();
        assert_eq!(
            ledger.transactions.keys().collect::<Vec<_>>(),
            [&transaction_id],
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn every_log_line_of_a_resume_event_carries_the_request_id_and_the_transaction_id() {
    for backend in Backend::ALL {
        let store = TestStore::new(backend).await;
        let (_fake, client) = fake_saas().await;
        let api = Api::orchestrator(store.store(), client);
        // A saga recorded by a request that answered 202 before any step ran.
        let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
        store.store().create(&record).await.unwrap();
        let transaction_id = record.transaction_id.clone();

        let (logs, _guard) = LogCapture::start();
        let request_id = format!("req-resume-{backend:?}");
        let event = LambdaEvent::new(
            api::resume::resume_event(&transaction_id),
            context(&request_id, Duration::from_secs(60)),
        );
        let finished = api.handle_event(event).await.unwrap();
        assert_eq!(finished["status"], "COMPLETED", "{backend:?}");

        let lines = logs.function_lines();
        assert!(
            lines.len() >= 4,
            "{backend:?}: expected the saga's lines, got {lines:#?}"
        );
        for line in &lines {
            assert_eq!(
                (line["transaction_id"].as_str(), line["requestId"].as_str()),
                (Some(transaction_id.as_str()), Some(request_id.as_str())),
                "{backend:?}: {line}"
            );
        }
    }
}
