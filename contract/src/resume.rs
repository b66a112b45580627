//! The orchestrator's resume event: `{"resume": {"transaction_id": ...}}`, which the api function
//! sends itself with an asynchronous Invoke when a saga outlives the HTTP API's 30 s limit, and
//! which `cargo xtask dlq redrive` sends again for the invocation records Lambda put in the
//! resume dead-letter queue (their `requestPayload` is the event).

use serde_json::{Value, json};

/// The top-level key of a resume event; an API Gateway event never has it.
pub const RESUME_KEY: &str = "resume";

/// JSON pointers at which the saga of a resume event is found: in the event itself, and in the
/// invocation record Lambda sends to the on-failure destination.
pub const TRANSACTION_ID_POINTERS: [&str; 2] = [
    "/resume/transaction_id",
    "/requestPayload/resume/transaction_id",
];

/// The event that makes an invocation resume the saga `transaction_id`.
pub fn resume_event(transaction_id: &str) -> Value {
    json!({RESUME_KEY: {"transaction_id": transaction_id}})
}

/// The `transaction_id` of a resume event: `None` when `event` is not a resume event,
/// `Some(None)` when it is one without a string `transaction_id`.
pub fn resumed_transaction(event: &Value) -> Option<Option<&str>> {
    let resume = event.get(RESUME_KEY)?;
    Some(resume.get("transaction_id").and_then(Value::as_str))
}

/// The saga named by a resume event or by Lambda's invocation record of one.
pub fn transaction_of_event_or_record(value: &Value) -> Option<&str> {
    TRANSACTION_ID_POINTERS
        .iter()
        .find_map(|pointer| value.pointer(pointer).and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_events_are_told_apart_from_http_events() {
        let event = resume_event("tx-1");
        assert_eq!(resumed_transaction(&event), Some(Some("tx-1")));
        assert_eq!(resumed_transaction(&json!({"resume": {}})), Some(None));
        assert_eq!(
            resumed_transaction(&json!({"version": "2.0", "rawPath": "/transactions"})),
            None
        );
    }

    #[test]
    fn the_saga_is_found_in_lambdas_invocation_record_of_a_resume_event() {
        let record = json!({
            "version": "1.0",
            "requestContext": {"condition": "RetriesExhausted"},
            "requestPayload": resume_event("tx-2"),
        });
        assert_eq!(transaction_of_event_or_record(&record), Some("tx-2"));
        assert_eq!(
            transaction_of_event_or_record(&resume_event("tx-3")),
            Some("tx-3")
        );
        assert_eq!(transaction_of_event_or_record(&json!({"other": 1})), None);
    }
}
