//! Shared helpers of the fake's tests: raw HTTP calls, so the tests see exactly what goes over
//! the wire (including calls a well-behaved client would never make).

use reqwest::{Client, Response};
use sagaform_fake_saas::FakeSaas;
use serde_json::{Value, json};

/// Posts a well-formed call of `service`/`action` (step `step`) for `transaction_id`.
pub async fn post_call(
    http: &Client,
    fake: &FakeSaas,
    service: &str,
    step: &str,
    action: &str,
    transaction_id: &str,
    request: Value,
) -> Response {
    http.post(format!("{}/{action}", fake.service_url(service)))
        .header("X-Correlation-Id", transaction_id)
        .header("Idempotency-Key", format!("{transaction_id}:{step}:{action}"))
        .json(&json!({"transaction_id": transaction_id, "step": step, "action": action, "request": request}))
        .send()
        .await
        .unwrap()
}
