//! The step handler's errors carry the `errorType` the generated Retry and Catch match:
//! `InDoubt` for a call whose effect is unknown (a 5xx, a timeout), `Retryable` for a definite
//! "not now" (a 429), `Permanent` for the rest, including payloads the handler cannot act on.

use crate::common;

use common::{INVOCATION_TIME, StepFunctionsPattern};
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_testkit::{Backend, event, post_transactions, purchase};
use serde_json::json;

#[tokio::test]
async fn errors_are_typed_retryable_or_permanent() {
    let pattern = StepFunctionsPattern::new(Backend::DynamoDb).await;
    let (_, accepted, _) = pattern
        .call_api(post_transactions(&purchase().to_string(), None))
        .await;
    let id = accepted["transaction_id"].as_str().unwrap();
    let task = |operation: &str, step: &str| json!({"operation": operation, "step": step, "transaction_id": id, "request": purchase()});
    let invoke = |payload| pattern.handler.handle(event(payload, INVOCATION_TIME));

    let faults = pattern.fake.faults();
    let unavailable_once = FaultRule::new("inventory", "reserve", Fault::Unavailable).times(1);
    faults.add(unavailable_once).unwrap();
    let in_doubt = invoke(task("execute", "stock")).await.unwrap_err();
    assert_eq!(in_doubt.error_type, "InDoubt", "{in_doubt:?}");
    let busy = Fault::RateLimited {
        retry_after_secs: 0,
    };
    faults
        .add(FaultRule::new("inventory", "reserve", busy).times(1))
        .unwrap();
    let transient = invoke(task("execute", "stock")).await.unwrap_err();
    assert_eq!(transient.error_type, "Retryable", "{transient:?}");

    let sold_out = Fault::Reject {
        status: 422,
        reason: "sold out".into(),
    };
    faults
        .add(FaultRule::new("inventory", "reserve", sold_out))
        .unwrap();
    let rejected = invoke(task("execute", "stock")).await.unwrap_err();
    assert_eq!(rejected.error_type, "Permanent");
    assert!(rejected.error_message.contains("sold out"), "{rejected:?}");

    let unknown_step = invoke(task("execute", "shipping")).await.unwrap_err();
    assert_eq!(unknown_step.error_type, "Permanent", "{unknown_step:?}");
    let unknown_operation = invoke(task("refund", "stock")).await.unwrap_err();
    assert_eq!(unknown_operation.error_type, "Permanent");
    let bad_id = invoke(json!({"operation": "execute", "step": "stock", "transaction_id": "x"}))
        .await
        .unwrap_err();
    assert_eq!(bad_id.error_type, "Permanent");
    let missing_saga = invoke(json!({"operation": "execute", "step": "stock", "transaction_id": "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"}))
        .await
        .unwrap_err();
    assert_eq!(missing_saga.error_type, "Permanent", "{missing_saga:?}");
}
