//! Service adapters: how a step's call is shaped for the service it calls, and how that
//! service's answer is read.
//!
//! An adapter is plain typed Rust with no HTTP library in it: it turns a [`CallInput`] (the
//! saga's request, the outputs recorded so far, the idempotency key) into an [`HttpRequest`],
//! and an [`HttpAnswer`] into a [`Verdict`]. The SaaS client sends the request, adds the
//! correlation and idempotency headers and the service's credential, and reads the answer; the
//! adapter decides what the answer means and which part of it the step keeps as its output. So
//! one adapter serves every pattern, and its rules are unit-tested without a server.
//!
//! [`Envelope`] is the default adapter: sagaform's own convention (`POST {url}/{action}` with a
//! JSON envelope), which the fake SaaS speaks for every service.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// What an adapter gets to shape one call: who calls, with which key, and what is known so far.
#[derive(Debug, Clone, Copy)]
pub struct CallInput<'a> {
    /// The saga's name.
    pub saga: &'a str,
    /// The step's name.
    pub step: &'a str,
    /// The name of the call: the step's action or its compensation.
    pub action: &'a str,
    /// Whether this is the step's compensation.
    pub is_compensation: bool,
    /// The saga's `transaction_id`.
    pub transaction_id: &'a str,
    /// The idempotency key of this call, `{transaction_id}:{step}:{action}`; the client sends it
    /// as `Idempotency-Key`, an adapter may also put it in the body.
    pub idempotency_key: &'a str,
    /// The request that started the saga, as the API accepted it.
    pub request: &'a Value,
    /// The outputs recorded so far, by step name: every earlier step that succeeded and, for a
    /// compensation, the step's own output when its action left one.
    pub outputs: &'a Map<String, Value>,
}

impl<'a> CallInput<'a> {
    /// The recorded output of `step`, if it left one.
    pub fn output(&self, step: &str) -> Option<&'a Value> {
        self.outputs.get(step)
    }

    /// The output of this call's own step (what a compensation undoes), if its action left one.
    pub fn own_output(&self) -> Option<&'a Value> {
        self.output(self.step)
    }

    /// A string field of the request, or an [`AdapterError`] naming it.
    pub fn request_str(&self, field: &'static str) -> Result<&'a str, AdapterError> {
        self.request
            .get(field)
            .and_then(Value::as_str)
            .ok_or(AdapterError::MissingField {
                place: "request",
                field,
            })
    }

    /// An unsigned integer field of the request, or an [`AdapterError`] naming it.
    pub fn request_u64(&self, field: &'static str) -> Result<u64, AdapterError> {
        self.request
            .get(field)
            .and_then(Value::as_u64)
            .ok_or(AdapterError::MissingField {
                place: "request",
                field,
            })
    }
}

/// HTTP methods a call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// The request an adapter asks the client to send.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The path, appended to the service's base URL; starts with `/`.
    pub path: String,
    /// Extra headers. The client adds `X-Correlation-Id`, `Idempotency-Key` and the service's
    /// credential itself; an adapter must not set those.
    pub headers: Vec<(String, String)>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl HttpRequest {
    /// A `POST` of `body` to `path`.
    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self {
            method: Method::Post,
            path: path.into(),
            headers: Vec::new(),
            body: Some(body),
        }
    }
}

/// What to do for a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Send this request.
    Send(HttpRequest),
    /// Send nothing: the call has nothing to do and counts as succeeded with this output. A
    /// compensation whose action left no output (it was refused, so it took no effect) has
    /// nothing to undo.
    Skip {
        /// The output recorded for the call.
        output: Value,
    },
}

/// A complete answer of the service, as the client read it.
#[derive(Debug, Clone, Copy)]
pub struct HttpAnswer<'a> {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` the service asked for, already read as a delay.
    pub retry_after: Option<Duration>,
    /// The body, as received.
    pub body: &'a [u8],
}

impl HttpAnswer<'_> {
    /// The body as JSON; `None` when it is empty or not JSON.
    pub fn json(&self) -> Option<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        serde_json::from_slice(self.body).ok()
    }
}

/// What an answer means for the saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The call took effect (or had already, for a replayed key); `output` is what the step
    /// keeps (`Value::Null` to keep nothing).
    Success {
        /// The step's output.
        output: Value,
    },
    /// The service definitely did not apply the call, but may if asked again later with the
    /// same key (rate limited, the same key still in progress, a lock held).
    Retryable {
        /// Why, one line, with no personal data.
        reason: String,
        /// The delay the service asked for.
        retry_after: Option<Duration>,
    },
    /// The call may or may not have taken effect (a 5xx, an answer that cannot be read): ask
    /// again with the same key to settle it, never compensate it blind.
    InDoubt {
        /// Why, one line, with no personal data.
        reason: String,
        /// The delay the service asked for.
        retry_after: Option<Duration>,
    },
    /// The service refused the call for good; repeating it cannot help.
    Permanent {
        /// Why, one line, with no personal data.
        reason: String,
    },
}

/// Why a call could not be prepared: the saga's data does not hold what the service needs.
/// Repeating the call cannot help, so it counts as a permanent failure of the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// A field the call needs is missing or of the wrong type.
    #[error("{place} has no usable `{field}`")]
    MissingField {
        /// Where the field was looked for: `request`, or `output of <step>`.
        place: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The call needs the output of a step that left none.
    #[error("step `{step}` left no output")]
    MissingOutput {
        /// The step whose output is needed.
        step: &'static str,
    },
}

/// How one service is called. One implementation per service API; a step names the adapter of
/// the service it calls.
pub trait ServiceAdapter: Sync + fmt::Debug {
    /// The adapter's name, shown in errors and `saga show` (`envelope`, `payments_api`).
    fn name(&self) -> &'static str;

    /// The request for one call (the step's action or compensation).
    fn prepare(&self, call: &CallInput<'_>) -> Result<Prepared, AdapterError>;

    /// What a complete answer means. Transport failures (timeouts, refused or broken
    /// connections) never reach the adapter: the client classifies them itself.
    fn classify(&self, call: &CallInput<'_>, answer: &HttpAnswer<'_>) -> Verdict;

    /// The steps whose outputs the call named `action` reads, checked at synthesis: each must
    /// be an earlier step of the saga, or the step itself for its compensation.
    fn reads(&self, action: &str) -> &'static [&'static str] {
        let _ = action;
        &[]
    }
}

/// sagaform's own convention, the default adapter: `POST {url}/{action}` with the body
/// `{"transaction_id", "step", "action", "request", "outputs"}`; a 2xx answer's JSON body is the
/// output. 429 is retryable; 408, 409 and 5xx in doubt; other 4xx permanent with the body's
/// `reason`, `error` or `message` as the reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct Envelope;

/// Longest reason kept from a refusal, so an error stays one readable line.
pub const REASON_MAX_CHARS: usize = 200;

impl ServiceAdapter for Envelope {
    fn name(&self) -> &'static str {
        "envelope"
    }

    fn prepare(&self, call: &CallInput<'_>) -> Result<Prepared, AdapterError> {
        Ok(Prepared::Send(HttpRequest::post(
            format!("/{}", call.action),
            json!({
                "transaction_id": call.transaction_id,
                "step": call.step,
                "action": call.action,
                "request": call.request,
                "outputs": call.outputs,
            }),
        )))
    }

    fn classify(&self, _call: &CallInput<'_>, answer: &HttpAnswer<'_>) -> Verdict {
        classify_by_status(answer, |body| {
            reason_field(body, &["reason", "error", "message"])
        })
    }
}

/// The common reading of an answer by its status: 2xx success (its JSON body the output, `null`
/// when empty; a body that is not JSON is in doubt), 429 retryable, 408/409/5xx in doubt, other
/// 4xx permanent with `reason` from the body, anything else (redirects) in doubt.
pub fn classify_by_status(answer: &HttpAnswer<'_>, reason: impl Fn(&[u8]) -> String) -> Verdict {
    let status = answer.status;
    match status {
        200..=299 => {
            if answer.body.iter().all(u8::is_ascii_whitespace) {
                return Verdict::Success {
                    output: Value::Null,
                };
            }
            match serde_json::from_slice(answer.body) {
                Ok(output) => Verdict::Success { output },
                Err(e) => Verdict::InDoubt {
                    reason: format!("status {status}, body is not JSON ({e})"),
                    retry_after: None,
                },
            }
        }
        429 => Verdict::Retryable {
            reason: "rate limited (429)".to_owned(),
            retry_after: answer.retry_after,
        },
        408 | 409 | 500..=599 => Verdict::InDoubt {
            reason: format!("temporary failure, status {status}"),
            retry_after: answer.retry_after,
        },
        400..=499 => Verdict::Permanent {
            reason: format!("status {status}: {}", reason(answer.body)),
        },
        _ => Verdict::InDoubt {
            reason: format!("unexpected status {status} (redirects are not followed)"),
            retry_after: None,
        },
    }
}

/// The first of `fields` that is a string in a JSON object body, shortened; empty when there is
/// none. The rest of the body is never kept: it may hold personal data.
pub fn reason_field(body: &[u8], fields: &[&str]) -> String {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    fields
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str))
        .map(|r| r.chars().take(REASON_MAX_CHARS).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(request: &'a Value, outputs: &'a Map<String, Value>) -> CallInput<'a> {
        CallInput {
            saga: "purchase",
            step: "stock",
            action: "release",
            is_compensation: true,
            transaction_id: "tx-9",
            idempotency_key: "tx-9:stock:release",
            request,
            outputs,
        }
    }

    fn answer(status: u16, body: &[u8]) -> HttpAnswer<'_> {
        HttpAnswer {
            status,
            retry_after: None,
            body,
        }
    }

    #[test]
    fn the_envelope_posts_to_the_action_with_request_and_outputs() {
        let request = json!({"item_id": "sword"});
        let mut outputs = Map::new();
        outputs.insert("stock".into(), json!({"reservation": "r-1"}));
        let prepared = Envelope.prepare(&input(&request, &outputs)).unwrap();
        assert_eq!(
            prepared,
            Prepared::Send(HttpRequest::post(
                "/release",
                json!({"transaction_id": "tx-9", "step": "stock", "action": "release",
                       "request": {"item_id": "sword"}, "outputs": {"stock": {"reservation": "r-1"}}})
            ))
        );
    }

    #[test]
    fn the_envelope_reads_answers_by_status() {
        let request = Value::Null;
        let outputs = Map::new();
        let call = input(&request, &outputs);
        assert_eq!(
            Envelope.classify(&call, &answer(200, br#"{"id":"r-1"}"#)),
            Verdict::Success {
                output: json!({"id": "r-1"})
            }
        );
        assert_eq!(
            Envelope.classify(&call, &answer(204, b"")),
            Verdict::Success {
                output: Value::Null
            }
        );
        assert!(matches!(
            Envelope.classify(&call, &answer(200, b"<html>")),
            Verdict::InDoubt { .. }
        ));
        assert!(matches!(
            Envelope.classify(&call, &answer(429, b"")),
            Verdict::Retryable { .. }
        ));
        assert!(matches!(
            Envelope.classify(&call, &answer(503, b"")),
            Verdict::InDoubt { .. }
        ));
        assert_eq!(
            Envelope.classify(
                &call,
                &answer(422, br#"{"reason":"card declined","card":"4111"}"#)
            ),
            Verdict::Permanent {
                reason: "status 422: card declined".to_owned()
            }
        );
    }

    #[test]
    fn only_the_named_reason_field_of_a_refusal_is_kept() {
        assert_eq!(reason_field(b"<html>oops</html>", &["reason"]), "");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(500));
        assert_eq!(
            reason_field(long.as_bytes(), &["reason", "message"]).len(),
            REASON_MAX_CHARS
        );
    }
}
