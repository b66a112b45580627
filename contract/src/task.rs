//! The Step Functions task payload: what each Task of the generated state machine sends the step
//! function. The stacks crate writes it as the Task's `Parameters.Payload` (a
//! [`TaskPayloadTemplate`], whose `.$` fields are JSONPaths into the execution's state); Step
//! Functions resolves the paths; the step function reads the result as a [`TaskPayload`]:
//!
//! ```json
//! {"operation": "execute" | "compensate" | "mark_failed" | "give_up", "step": "payment",
//!  "transaction_id": "...", "request": {...}, "error": {"Error": "...", "Cause": "..."}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::{REQUEST_PATH, TRANSACTION_ID_PATH};

/// Where a Catch puts the error that led to a compensation or to `mark_failed` in the state.
pub const ERROR_PATH: &str = "$.error";

/// Where the `give_up` Task leaves its result; the Choice after it reads the saga's status there.
pub const GIVEN_UP_PATH: &str = "$.given_up";

/// The `errorType`s the step function returns, which the state machine's Retry and Catch match.
pub mod error_types {
    /// A failure that retrying may cure, with nothing done at the provider (a refused
    /// connection, a 429, a lost state-store race).
    pub const RETRYABLE: &str = "Retryable";
    /// A failure whose effect is unknown (a timeout, a broken connection, a 5xx): asked again
    /// with the same idempotency key like a retryable one, but never compensated blind when the
    /// retries end.
    pub const IN_DOUBT: &str = "InDoubt";
    /// A definite refusal that no retry can cure.
    pub const PERMANENT: &str = "Permanent";
}

/// What a Task asks of the step function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Run the step's action.
    Execute,
    /// Run the step's compensation.
    Compensate,
    /// Record that the step's compensation failed for good (status COMPENSATION_FAILED).
    MarkFailed,
    /// The step's action failed past its retries: decide from the caught error and the stored
    /// attempts whether it failed (the saga compensates) or is in doubt (the saga parks
    /// IN_DOUBT), or finds it succeeded after all.
    GiveUp,
}

impl Operation {
    /// The payload's name of the operation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Execute => "execute",
            Self::Compensate => "compensate",
            Self::MarkFailed => "mark_failed",
            Self::GiveUp => "give_up",
        }
    }
}

/// The payload as the step function receives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskPayload {
    /// What to do.
    pub operation: Operation,
    /// Which step of the saga.
    pub step: String,
    /// The saga.
    pub transaction_id: String,
    /// The request, as in the execution input (the engine reads the stored one).
    #[serde(default)]
    pub request: Value,
    /// The error a Catch put at [`ERROR_PATH`]: what led to a compensation or to `mark_failed`.
    #[serde(default)]
    pub error: Option<Value>,
}

/// The payload as the state machine definition writes it: the operation and step are fixed per
/// Task, the rest are JSONPaths into the execution's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskPayloadTemplate {
    /// What to do.
    pub operation: Operation,
    /// Which step.
    pub step: String,
    /// Path of the transaction id in the state.
    #[serde(rename = "transaction_id.$")]
    pub transaction_id_path: String,
    /// Path of the request in the state.
    #[serde(rename = "request.$")]
    pub request_path: String,
    /// Path of the error that led here (compensations and `mark_failed`).
    #[serde(rename = "error.$", skip_serializing_if = "Option::is_none")]
    pub error_path: Option<String>,
}

impl TaskPayloadTemplate {
    /// The payload of the Task doing `operation` on `step`: the execution input's transaction id
    /// and request and, after a Catch, the error it caught.
    pub fn new(operation: Operation, step: &str) -> TaskPayloadTemplate {
        TaskPayloadTemplate {
            operation,
            step: step.to_owned(),
            transaction_id_path: TRANSACTION_ID_PATH.to_owned(),
            request_path: REQUEST_PATH.to_owned(),
            error_path: match operation {
                Operation::Execute => None,
                Operation::Compensate | Operation::MarkFailed | Operation::GiveUp => {
                    Some(ERROR_PATH.to_owned())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::message::WorkMessage;

    /// Resolves a template's `.$` fields against `state` as Step Functions does for the simple
    /// `$.a.b` paths the definitions use.
    fn resolve(template: &TaskPayloadTemplate, state: &Value) -> Value {
        let written = serde_json::to_value(template).unwrap();
        let mut resolved = Map::new();
        for (key, value) in written.as_object().unwrap() {
            match key.strip_suffix(".$") {
                Some(field) => {
                    let pointer = value
                        .as_str()
                        .unwrap()
                        .replacen("$.", "/", 1)
                        .replace('.', "/");
                    let found = state.pointer(&pointer).cloned().unwrap_or(Value::Null);
                    resolved.insert(field.to_owned(), found);
                }
                None => {
                    resolved.insert(key.clone(), value.clone());
                }
            }
        }
        Value::Object(resolved)
    }

    #[test]
    fn an_execute_task_reads_the_execution_input() {
        let input = WorkMessage::new("tx-1", json!({"sku": "sword"})).to_json();
        let template = TaskPayloadTemplate::new(Operation::Execute, "payment");
        let payload: TaskPayload = serde_json::from_value(resolve(&template, &input)).unwrap();
        assert_eq!(
            payload,
            TaskPayload {
                operation: Operation::Execute,
                step: "payment".to_owned(),
                transaction_id: "tx-1".to_owned(),
                request: json!({"sku": "sword"}),
                error: None,
            }
        );
    }

    #[test]
    fn a_compensation_task_also_reads_the_caught_error() {
        let mut state = WorkMessage::new("tx-2", json!({})).to_json();
        state["error"] = json!({"Error": "Permanent", "Cause": "card declined"});
        for operation in [Operation::Compensate, Operation::MarkFailed] {
            let template = TaskPayloadTemplate::new(operation, "stock");
            let payload: TaskPayload = serde_json::from_value(resolve(&template, &state)).unwrap();
            assert_eq!(payload.operation, operation);
            assert_eq!(payload.transaction_id, "tx-2");
            assert_eq!(
                payload.error,
                Some(json!({"Error": "Permanent", "Cause": "card declined"}))
            );
        }
    }

    #[test]
    fn operations_are_written_by_the_names_the_step_function_reads() {
        for operation in [
            Operation::Execute,
            Operation::Compensate,
            Operation::MarkFailed,
        ] {
            let written = serde_json::to_value(operation).unwrap();
            assert_eq!(written, json!(operation.as_str()));
            assert_eq!(
                serde_json::from_value::<Operation>(written).unwrap(),
                operation
            );
        }
    }
}
