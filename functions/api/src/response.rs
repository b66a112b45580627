//! The answers of the API: JSON bodies, the status codes they go with, and the JSON shape in
//! which an answer is kept in an idempotency record to be replayed byte for byte.
//!
//! Status codes of `POST /transactions`:
//!
//! | code | when |
//! |---|---|
//! | 200 | orchestrator: the saga COMPLETED |
//! | 202 | sqs / stepfunctions: the saga is recorded PENDING and handed over; orchestrator: the saga was still running at `SAGAFORM_RESPONSE_BUDGET_MS` and an asynchronous invocation of the function continues it (`status` is where it stood); `Location` is its status URL |
//! | 400 | the body or the `Idempotency-Key` header is invalid (`field`, `reason`); nothing was written |
//! | 409 | a request with the same `Idempotency-Key` is still being processed; retry later |
//! | 422 | the `Idempotency-Key` was used with another body (`error: idempotency_key_reused`), or (orchestrator) a step failed for good and every step done was undone: the saga is COMPENSATED and the purchase did not happen (`error: saga_compensated`) |
//! | 500 | orchestrator: a compensation failed for good, the saga is COMPENSATION_FAILED and needs a human; or a stored record is unreadable |
//! | 503 | a store, the queue or Step Functions is unavailable, or (orchestrator) the saga was still running at the response budget and could not be handed to an asynchronous invocation: retry with the same `Idempotency-Key` to resume the same saga |
//!
//! Every answer about a saga carries its `transaction_id` and `status_url`.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue};
use sagaform_runtime::{SagaRecord, SagaStatus};
use serde_json::{Map, Value, json};

use crate::request::FieldError;

/// Header telling the client the answer is a replay of an earlier request's answer (the name
/// Stripe and the fake SaaS use).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// An HTTP response before it becomes an API Gateway response.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Headers besides `content-type`, lower-case names.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Value,
}

impl HttpResponse {
    /// An answer with a JSON body and no extra header.
    pub fn json(status: u16, body: Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> HttpResponse {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// A value of a header, for tests and replays.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON kept in an idempotency record to replay this answer.
    pub fn to_stored(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect();
        json!({"status": self.status, "headers": headers, "body": self.body})
    }

    /// An answer kept by [`HttpResponse::to_stored`]; `None` when the JSON is not one.
    pub fn from_stored(stored: &Value) -> Option<HttpResponse> {
        let status = u16::try_from(stored.get("status")?.as_u64()?).ok()?;
        let headers = stored
            .get("headers")?
            .as_object()?
            .iter()
            .map(|(n, v)| Some((n.clone(), v.as_str()?.to_owned())))
            .collect::<Option<Vec<_>>>()?;
        Some(HttpResponse {
            status,
            headers,
            body: stored.get("body")?.clone(),
        })
    }

    /// The API Gateway (payload format 2.0) response.
    pub fn into_response(self) -> ApiGatewayV2httpResponse {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        for (name, value) in &self.headers {
            // Header names and values are built by this crate from ids and numbers; one that is
            // not a valid header is a bug, dropped rather than failing the answer.
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = i64::from(self.status);
        response.headers = headers;
        response.body = Some(Body::Text(self.body.to_string()));
        response.is_base64_encoded = false;
        response
    }
}

/// 400 for invalid input: the first problem as `field` and `reason`, all of them in `errors`.
pub fn invalid_request(errors: &[FieldError]) -> HttpResponse {
    let first = errors.first();
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    HttpResponse::json(
        400,
        json!({
            "error": "invalid_request",
            "message": message,
            "field": first.map(|e| e.field.as_str()),
            "reason": first.map(|e| e.reason.as_str()),
            "errors": errors,
        }),
    )
}

/// An error answer: a machine-readable `error` code and a sentence for humans.
pub fn error(status: u16, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::json(status, json!({"error": code, "message": message.into()}))
}

/// The status URL of a saga, under the stage's path prefix (empty for `$default`).
pub fn status_url(path_prefix: &str, transaction_id: &str) -> String {
    format!("{path_prefix}/transactions/{transaction_id}")
}

/// A saga as `GET /transactions/{id}` shows it: status, error, and each step's status, attempts
/// of its action and of its compensation, and time of its last change. The request itself is not echoed.
pub fn saga_view(record: &SagaRecord, status_url: &str) -> Value {
    let steps: Vec<Value> = record
        .steps
        .iter()
        .map(|step| {
            json!({
                "name": step.name,
                "status": step.status.as_str(),
                "attempts": step.attempts,
                "compensation_attempts": step.compensation_attempts,
                "error": step.error,
                "updated_at": step.updated_at,
            })
        })
        .collect();
    json!({
        "transaction_id": record.transaction_id,
        "status": record.status.as_str(),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "error": record.error,
        "steps": steps,
        "status_url": status_url,
    })
}

/// The answer of the orchestrator once the saga is finished (see the module's table).
pub fn finished_saga(record: &SagaRecord, status_url: &str) -> HttpResponse {
    let mut body = saga_view(record, status_url);
    let status = match record.status {
        SagaStatus::Completed => 200,
        SagaStatus::Compensated => {
            body["error_code"] = json!("saga_compensated");
            422
        }
        SagaStatus::CompensationFailed => {
            body["error_code"] = json!("saga_compensation_failed");
            500
        }
        // Accepted and not finished: a step's outcome is unknown and an operator settles it.
        // Not an error to retry with a new key, which would start a second saga.
        SagaStatus::InDoubt => {
            body["error_code"] = json!("saga_in_doubt");
            202
        }
        SagaStatus::Pending | SagaStatus::Running | SagaStatus::Compensating => {
            body["error_code"] = json!("saga_not_finished");
            503
        }
    };
    let answer = HttpResponse::json(status, body).with_header("location", status_url);
    if status == 503 {
        answer.with_header("retry-after", "1")
    } else {
        answer
    }
}

/// 202 Accepted: the saga is recorded and handed to the queue or the state machine.
pub fn accepted(transaction_id: &str, status_url: &str) -> HttpResponse {
    HttpResponse::json(
        202,
        json!({"transaction_id": transaction_id, "status": SagaStatus::Pending.as_str(), "status_url": status_url}),
    )
    .with_header("location", status_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_answers_replay_identically() {
        let answer = accepted("tx-1", "/transactions/tx-1");
        assert_eq!(HttpResponse::from_stored(&answer.to_stored()), Some(answer));
        assert_eq!(HttpResponse::from_stored(&json!({"status": "x"})), None);
    }

    #[test]
    fn finished_sagas_map_to_the_documented_codes() {
        let mut record = SagaRecord::new(&sagaform_saga::PURCHASE, "tx", json!({}));
        record.status = SagaStatus::Completed;
        assert_eq!(finished_saga(&record, "/t").status, 200);
        record.status = SagaStatus::Compensated;
        let compensated = finished_saga(&record, "/t");
        assert_eq!(
            (compensated.status, compensated.body["error_code"].as_str()),
            (422, Some("saga_compensated"))
        );
        record.status = SagaStatus::CompensationFailed;
        assert_eq!(finished_saga(&record, "/t").status, 500);
        record.status = SagaStatus::InDoubt;
        let in_doubt = finished_saga(&record, "/t");
        assert_eq!(
            (in_doubt.status, in_doubt.body["error_code"].as_str()),
            (202, Some("saga_in_doubt"))
        );
        record.status = SagaStatus::Running;
        assert_eq!(
            finished_saga(&record, "/t").header("retry-after"),
            Some("1")
        );
    }

    #[test]
    fn responses_are_json_with_their_headers() {
        let response = accepted("tx-1", "/transactions/tx-1").into_response();
        assert_eq!(response.status_code, 202);
        assert_eq!(response.headers["location"], "/transactions/tx-1");
        assert_eq!(response.headers["content-type"], "application/json");
    }
}
