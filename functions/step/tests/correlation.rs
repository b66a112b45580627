//! Correlation in the step function: every log line of every Task of an execution carries the
//! Lambda request id of its invocation and the saga's `transaction_id`.

mod common;

use std::time::Duration;

use common::StepFunctionsPattern;
use lambda_runtime::LambdaEvent;
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_testkit::{Backend, LogCapture, context, post_transactions, purchase};
use serde_json::json;

#[tokio::test]
async fn every_log_line_of_a_task_carries_the_request_id_and_the_transaction_id() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
        pattern
            .fake
            .faults()
            .add(FaultRule::new(
                "payments",
                "charge",
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

        let (logs, _guard) = LogCapture::start();
        let tasks = [
            ("execute", "stock"),
            ("execute", "payment"),
            ("compensate", "payment"),
            ("compensate", "stock"),
        ];
        for (index, (operation, step)) in tasks.into_iter().enumerate() {
            let mut payload = json!({"operation": operation, "step": step, "transaction_id": transaction_id, "request": purchase()});
            if operation == "compensate" {
                payload["error"] =
                    json!({"Error": "Permanent", "Cause": "{\"errorMessage\":\"declined\"}"});
            }
            let request_id = format!("req-step-{backend:?}-{index}");
            let _ = pattern
                .handler
                .handle(LambdaEvent::new(
                    payload,
                    context(&request_id, Duration::from_secs(30)),
                ))
                .await;
            let lines = logs.function_lines();
            assert!(
                !lines.is_empty(),
                "{backend:?} {operation} {step}: no log line"
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
            logs.clear();
        }
    }
}
