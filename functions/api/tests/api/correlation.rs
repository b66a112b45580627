//! Correlation of a resume event: every line of its invocation carries the Lambda request id and
//! the saga's `transaction_id`. (The lines of a purchase are checked for every pattern by the
//! acceptance suite, in `orchestrator.rs`.)

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use sagaform_api::Api;
use sagaform_runtime::model::new_transaction_id;
use sagaform_runtime::{SagaRecord, SagaStore};
use sagaform_saga::PURCHASE;
use sagaform_testkit::{Backend, LogCapture, TestStore, context, fake_saas, purchase};

#[tokio::test]
async fn every_log_line_of_a_resume_event_carries_the_request_id_and_the_transaction_id() {
    for backend in Backend::ALL {
        let store = TestStore::new(backend).await;
        let (_fake, client) = fake_saas().await;
        let api = Api::orchestrator(store.store().clone(), client);
        // A saga recorded by a request that answered 202 before any step ran.
        let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
        store.store().create(&record).await.unwrap();
        let transaction_id = record.transaction_id.clone();

        let (logs, _guard) = LogCapture::start();
        let request_id = format!("req-resume-{backend:?}");
        let event = LambdaEvent::new(
            sagaform_api::resume::resume_event(&transaction_id),
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
