//! Correlation in the worker: every log line written while advancing a saga carries the Lambda
//! request id and the saga's `transaction_id`.

mod common;

use std::time::Duration;

use common::SqsPattern;
use lambda_runtime::LambdaEvent;
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_testkit::{
    Backend, LogCapture, QueuePair, context, post_transactions, purchase, sqs_event,
};

#[tokio::test]
async fn every_log_line_of_a_delivery_carries_the_request_id_and_the_transaction_id() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        pattern
            .fake
            .faults()
            .add(FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 422,
                    reason: "no".into(),
                },
            ))
            .unwrap();
        let (_, accepted, _) = pattern
            .call_api(post_transactions(&purchase().to_string(), None))
            .await;
        let transaction_id = accepted["transaction_id"].as_str().unwrap().to_owned();
        let batch = sqs_event(&QueuePair::receive(&pattern.queues.url).await);

        let (logs, _guard) = LogCapture::start();
        let request_id = format!("req-worker-{backend:?}");
        let response = pattern
            .worker
            .handle(LambdaEvent::new(
                batch,
                context(&request_id, Duration::from_secs(60)),
            ))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());

        let lines = logs.function_lines();
        assert!(lines.len() >= 6, "{backend:?}: {lines:#?}");
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
    }
}
