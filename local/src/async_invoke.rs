//! Lambda's asynchronous invocation (`InvocationType: Event`) for the local functions, as AWS
//! runs it: the event is accepted at once and run in the background; a run that fails (a
//! function error, a timeout, a crash) is retried up to the function's `MaximumRetryAttempts`
//! after Lambda's delays (one minute, then two); once retries are used up, or the event is older
//! than `MaximumEventAgeInSeconds`, Lambda's invocation record goes to the on-failure
//! destination. The orchestrator pattern relies on this: a saga that outlasts the API's budget
//! is finished by an asynchronous invocation, whose failures must land in its resume DLQ.
//!
//! Only SQS destinations are delivered (the only kind sagaform's templates use); another kind
//! is logged and dropped, as is a record that cannot be sent.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::logs::now_rfc3339;
use crate::runtime::{InvokeOutcome, LocalFunction, new_request_id};

/// Lambda's delays before the first and the second retry of an asynchronous invocation.
pub const AWS_RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];

/// A function's `AWS::Lambda::EventInvokeConfig`, with Lambda's defaults where it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncInvokeConfig {
    /// Retries after the first run (0..=2).
    pub max_retries: u32,
    /// Oldest event still run (60 s ..= 6 h).
    pub max_event_age: Duration,
    /// URL of the SQS queue receiving the record of an event that failed for good.
    pub on_failure_queue_url: Option<String>,
}

impl Default for AsyncInvokeConfig {
    fn default() -> Self {
        AsyncInvokeConfig {
            max_retries: 2,
            max_event_age: Duration::from_secs(6 * 3600),
            on_failure_queue_url: None,
        }
    }
}

/// Why an event went to the on-failure destination (Lambda's `condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

impl LocalFunction {
    /// Accepts an asynchronous invocation and runs it in the background under the function's
    /// [`AsyncInvokeConfig`]; returns the invocation's request id.
    pub fn invoke_async(&self, payload: Bytes) -> String {
        let request_id = new_request_id();
        let function = self.clone();
        let id = request_id.clone();
        tokio::spawn(async move { function.run_async(id, payload).await });
        request_id
    }

    async fn run_async(self, request_id: String, payload: Bytes) {
        let Some(failure) = self.run_with_retries(&request_id, &payload).await else {
            return;
        };
        let record = invocation_record(
            &self.spec().arn,
            &request_id,
            failure.condition,
            failure.runs,
            &payload,
            &failure.error,
        );
        self.send_to_destination(&request_id, failure.condition, record)
            .await;
    }

    /// Runs the invocation, retried after the configured delays while the retries and the
    /// event age allow; `None` once a run succeeded, else how it failed for good.
    async fn run_with_retries(&self, request_id: &str, payload: &Bytes) -> Option<AsyncFailure> {
        let config = &self.spec().asynchronous;
        let delays = &self.settings().async_retry_delays;
        let accepted = Instant::now();
        let mut runs = 0;
        loop {
            runs += 1;
            let error = match self.invoke(payload.clone()).await {
                Ok(InvokeOutcome::Success(_)) => return None,
                Ok(InvokeOutcome::FunctionError(error)) => error.body,
                Err(error) => Bytes::from(
                    json!({"errorType": "ServiceException", "errorMessage": error.to_string()})
                        .to_string(),
                ),
            };
            let failed = |condition| {
                Some(AsyncFailure {
                    condition,
                    runs,
                    error: error.clone(),
                })
            };
            if runs > config.max_retries {
                return failed(Condition::RetriesExhausted);
            }
            let delay = delays
                .get(runs as usize - 1)
                .or(delays.last())
                .copied()
                .unwrap_or_default();
            if accepted.elapsed() + delay > config.max_event_age {
                return failed(Condition::EventAgeExceeded);
            }
            tracing::warn!(
                function = %self.spec().name,
                request_id = %request_id,
                run = runs,
                retry_in_seconds = delay.as_secs_f64(),
                "asynchronous invocation failed; retried as Lambda does"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends the record of an invocation that failed for good to the on-failure destination,
    /// when the function has one (it is dropped otherwise, as on Lambda).
    async fn send_to_destination(&self, request_id: &str, condition: Condition, record: Value) {
        let Some(queue_url) = &self.spec().asynchronous.on_failure_queue_url else {
            tracing::warn!(function = %self.spec().name, request_id = %request_id, condition = condition.as_str(),
                           "asynchronous invocation failed for good and the function has no on-failure destination: dropped");
            return;
        };
        let Some(sqs) = &self.settings().destinations else {
            tracing::error!(function = %self.spec().name, request_id = %request_id, queue_url = %queue_url,
                            "no SQS client to deliver the on-failure record: dropped");
            return;
        };
        match sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(record.to_string())
            .send()
            .await
        {
            Ok(_) => tracing::warn!(
                function = %self.spec().name,
                request_id = %request_id,
                condition = condition.as_str(),
                queue_url = %queue_url,
                "asynchronous invocation failed for good: its record went to the on-failure destination"
            ),
            Err(e) => tracing::error!(
                function = %self.spec().name,
                request_id = %request_id,
                queue_url = %queue_url,
                error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                "could not send the on-failure record: dropped"
            ),
        }
    }
}

/// How an asynchronous invocation failed for good.
struct AsyncFailure {
    condition: Condition,
    /// How many times it ran.
    runs: u32,
    /// The last run's error document.
    error: Bytes,
}

/// Lambda's invocation record for a destination.
fn invocation_record(
    function_arn: &str,
    request_id: &str,
    condition: Condition,
    runs: u32,
    payload: &[u8],
    error: &[u8],
) -> Value {
    let as_json = |bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    };
    json!({
        "version": "1.0",
        "timestamp": now_rfc3339(),
        "requestContext": {
            "requestId": request_id,
            "functionArn": format!("{function_arn}:$LATEST"),
            "condition": condition.as_str(),
            "approximateInvokeCount": runs,
        },
        "requestPayload": as_json(payload),
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": as_json(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_has_lambdas_shape() {
        let record = invocation_record(
            "arn:aws:lambda:us-east-1:123456789012:function:api",
            "r-1",
            Condition::RetriesExhausted,
            3,
            br#"{"resume":{"transaction_id":"t"}}"#,
            br#"{"errorType":"Retryable","errorMessage":"store unavailable"}"#,
        );
        assert_eq!(
            record["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:123456789012:function:api:$LATEST"
        );
        assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(record["requestPayload"]["resume"]["transaction_id"], "t");
        assert_eq!(record["responsePayload"]["errorType"], "Retryable");
        assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    }
}
