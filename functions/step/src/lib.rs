//! The Step Functions task function of the `stepfunctions` pattern: one handler for every Task
//! of the generated state machine. The payload (`sagaform_contract::task`) says which operation on which step:
//!
//! ```json
//! {"operation": "execute" | "compensate" | "mark_failed" | "give_up", "step": "payment",
//!  "transaction_id": "...", "request": {...}, "error": {"Error": "...", "Cause": "..."}}
//! ```
//!
//! The handler does exactly one call (or, for `mark_failed`, one state write) and leaves retries
//! and branching to the state machine: an error is returned with `errorType` `Retryable` or
//! `InDoubt` (the generated Retry matches both) or `Permanent` (only the Catch, `States.ALL`,
//! matches it). Whatever the Catch caught goes to `give_up`, which decides from it and from the
//! stored attempts whether the step failed (the state machine compensates) or is in doubt (the
//! execution ends with the saga IN_DOUBT): a timeout, a 5xx or a Lambda failure is never
//! compensated blind. The saga's
//! statuses are written by the runtime's engine (RUNNING with the first step, COMPLETED with the
//! last, COMPENSATING with the first compensation, COMPENSATED with the last, COMPENSATION_FAILED
//! by `mark_failed`), and a Task retried after its work was done (a lost answer) finds it done and
//! does not call again.

use std::time::{Duration, SystemTime};

use lambda_runtime::{Diagnostic, LambdaEvent};
use sagaform_contract::task::{Operation, TaskPayload};
use sagaform_runtime::deadline::instant_before;
use sagaform_runtime::errors::{ErrorClass, diagnostic};
use sagaform_runtime::setup::{SetupError, store_and_client_from_env};
use sagaform_runtime::{ConfiguredStore, Engine, SagaRecord};
use sagaform_saas_client::SaasClient;
use sagaform_saga::PURCHASE;
use serde_json::{Value, json};
use tracing::{Instrument, error, info, info_span, warn};

/// A payload the handler cannot act on: the state machine and the function disagree, which no
/// retry fixes.
#[derive(Debug, thiserror::Error)]
#[error("invalid step payload: {0}")]
pub struct PayloadError(String);

/// The step function.
#[derive(Debug, Clone)]
pub struct StepHandler {
    engine: Engine<ConfiguredStore, SaasClient>,
    deadline_margin: Duration,
}

impl StepHandler {
    /// A handler for [`PURCHASE`] sagas in `store`, calling `client`'s services, keeping
    /// `deadline_margin` of each invocation to record the outcome.
    pub fn new(
        store: ConfiguredStore,
        client: SaasClient,
        deadline_margin: Duration,
    ) -> StepHandler {
        StepHandler {
            engine: Engine::new(PURCHASE, store, client),
            deadline_margin,
        }
    }

    /// Reads the configuration from the process environment and opens the store and client.
    pub async fn from_env() -> Result<StepHandler, SetupError> {
        let (store, client) = store_and_client_from_env(&PURCHASE).await?;
        Ok(StepHandler::new(store, client, Duration::from_millis(500)))
    }

    /// The Lambda handler: a small JSON summary, or an error typed `Retryable` / `Permanent`.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let (payload, context) = event.into_parts();
        let payload: TaskPayload = match serde_json::from_value(payload) {
            Ok(payload) => payload,
            Err(e) => {
                let e = PayloadError(e.to_string());
                let _in_request =
                    info_span!("step_task", requestId = %context.request_id).entered();
                error!(error = %e, "refusing the task");
                return Err(diagnostic(ErrorClass::Permanent, &e));
            }
        };
        let span = info_span!(
            "step_task",
            requestId = %context.request_id,
            transaction_id = %payload.transaction_id,
            step = %payload.step,
            operation = payload.operation.as_str(),
        );
        self.run(&payload, context.deadline())
            .instrument(span)
            .await
    }

    async fn run(&self, payload: &TaskPayload, deadline: SystemTime) -> Result<Value, Diagnostic> {
        if uuid::Uuid::try_parse(&payload.transaction_id).is_err() {
            let e = PayloadError(format!(
                "transaction_id `{}` is not a UUID",
                payload.transaction_id
            ));
            error!(error = %e, "refusing the task");
            return Err(diagnostic(ErrorClass::Permanent, &e));
        }
        let run_until = instant_before(deadline, self.deadline_margin);
        let transaction_id = payload.transaction_id.as_str();
        let step = payload.step.as_str();
        let cause = payload.error.as_ref().map(describe_caught_error);
        let result = match payload.operation {
            Operation::Execute => {
                self.engine
                    .execute_step(transaction_id, step, run_until)
                    .await
            }
            Operation::Compensate => {
                self.engine
                    .compensate_step(transaction_id, step, cause, run_until)
                    .await
            }
            Operation::MarkFailed => self.engine.mark_failed(transaction_id, step, cause).await,
            Operation::GiveUp => {
                let caught = payload
                    .error
                    .as_ref()
                    .and_then(|e| e.get("Error"))
                    .and_then(Value::as_str)
                    .unwrap_or("States.ALL");
                self.engine
                    .give_up_step(transaction_id, step, caught, cause)
                    .await
            }
        };
        match result {
            Ok(record) => {
                info!(status = %record.status, "task done");
                Ok(summary(payload, &record))
            }
            Err(e) => {
                let diagnostic = Diagnostic::from(e);
                if diagnostic.error_type != ErrorClass::Permanent.error_type() {
                    warn!(error_type = %diagnostic.error_type, error = %diagnostic.error_message, "task failed; the state machine retries it");
                } else {
                    error!(error_type = %diagnostic.error_type, error = %diagnostic.error_message, "task failed for good");
                }
                Err(diagnostic)
            }
        }
    }
}

/// The Task's result: where the saga and the step are now.
fn summary(payload: &TaskPayload, record: &SagaRecord) -> Value {
    json!({
        "transaction_id": record.transaction_id,
        "operation": payload.operation.as_str(),
        "step": payload.step,
        "saga_status": record.status.as_str(),
        "step_status": record.step(&payload.step).map(|s| s.status.as_str()),
    })
}

/// A caught error (`{"Error": ..., "Cause": ...}`) as one line for the saga record. For a Lambda
/// function error the Cause is the function's error as JSON, whose `errorMessage` is the useful
/// part.
pub fn describe_caught_error(caught: &Value) -> String {
    let name = caught
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let cause = caught
        .get("Cause")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| {
            c.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| cause.to_owned());
    if message.is_empty() {
        name.to_owned()
    } else {
        format!("{name}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_follow_the_contract() {
        let payload: TaskPayload = serde_json::from_value(json!({
            "operation": "mark_failed", "step": "payment", "transaction_id": "t", "request": {},
            "error": {"Error": "Permanent", "Cause": "{\"errorType\":\"Permanent\",\"errorMessage\":\"declined\"}"}
        }))
        .unwrap();
        assert_eq!(payload.operation, Operation::MarkFailed);
        assert_eq!(
            describe_caught_error(payload.error.as_ref().unwrap()),
            "Permanent: declined"
        );
        assert!(
            serde_json::from_value::<TaskPayload>(
                json!({"operation": "undo", "step": "s", "transaction_id": "t"})
            )
            .is_err()
        );
    }

    #[test]
    fn caught_errors_without_a_json_cause_keep_their_text() {
        assert_eq!(
            describe_caught_error(&json!({"Error": "States.Timeout", "Cause": ""})),
            "States.Timeout"
        );
        assert_eq!(
            describe_caught_error(&json!({"Error": "X", "Cause": "plain"})),
            "X: plain"
        );
    }
}
