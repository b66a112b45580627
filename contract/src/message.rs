//! The work message: what the api hands a recorded saga over with. It is the body of the SQS
//! message the worker consumes (pattern `sqs`) and the input of the Step Functions execution
//! (pattern `stepfunctions`), whose states read `$.transaction_id` and `$.request`. The
//! execution is named by the transaction id, so a second start of the same saga is refused by
//! Step Functions and `saga show` finds the execution by name.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The SQS message attribute carrying the `transaction_id`, so it is visible without parsing
/// the body (in the console, in the DLQ, in redrive tooling).
pub const TRANSACTION_ID_ATTRIBUTE: &str = "transaction_id";

/// JSONPath of the transaction id in the execution input (and so in the execution's state).
pub const TRANSACTION_ID_PATH: &str = "$.transaction_id";

/// JSONPath of the request in the execution input.
pub const REQUEST_PATH: &str = "$.request";

/// The name of the execution (and, on a FIFO queue, the deduplication id of the message) that
/// hands a saga over again after an operator reopened it at `version`: the first hand-over's
/// name, the transaction id, stays taken. At most 36 + 7 + 20 characters, within Step
/// Functions' 80.
pub fn retry_execution_name(transaction_id: &str, version: u64) -> String {
    format!("{transaction_id}-retry-{version}")
}

/// One saga handed over: `{"transaction_id": ..., "request": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkMessage {
    /// The saga, a lower-case hyphenated UUIDv7.
    pub transaction_id: String,
    /// The validated request as the saga stored it.
    pub request: Value,
}

impl WorkMessage {
    /// The message of the saga `transaction_id` started for `request`.
    pub fn new(transaction_id: impl Into<String>, request: Value) -> WorkMessage {
        WorkMessage {
            transaction_id: transaction_id.into(),
            request,
        }
    }

    /// The message as JSON: the SQS body or the execution input.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a work message is plain JSON")
    }

    /// The message as JSON text.
    pub fn to_body(&self) -> String {
        self.to_json().to_string()
    }

    /// The message of a body; the error says what is wrong with it.
    pub fn from_body(body: &str) -> Result<WorkMessage, serde_json::Error> {
        serde_json::from_str(body)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_body_reads_back_as_the_message_written() {
        let message = WorkMessage::new("0190b6c4-0000-7000-8000-000000000001", json!({"sku": "x"}));
        assert_eq!(WorkMessage::from_body(&message.to_body()).unwrap(), message);
    }

    #[test]
    fn the_execution_paths_find_the_message_fields() {
        let message = WorkMessage::new("t", json!({"sku": "x"}));
        let input = message.to_json();
        let at = |path: &str| input.pointer(&path.replacen("$.", "/", 1)).cloned();
        assert_eq!(at(TRANSACTION_ID_PATH), Some(json!("t")));
        assert_eq!(at(REQUEST_PATH), Some(json!({"sku": "x"})));
    }

    #[test]
    fn a_body_without_a_request_is_refused() {
        assert!(WorkMessage::from_body(r#"{"transaction_id":"t"}"#).is_err());
    }
}
