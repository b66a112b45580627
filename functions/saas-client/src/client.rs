//! The call itself: one `POST` per action or compensation, with the correlation and idempotency
//! headers, a time limit, a span carrying the `transaction_id`, and the classification of what
//! came back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, redirect};
use sagaform_saga::{Action, RetryPolicy, Saga, Step};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

use crate::config::{ConfigError, SaasConfig, ServiceConfig};
use crate::error::SaasError;
use crate::retry::retry_until;

/// Header carrying the saga's `transaction_id` to the downstream service.
pub const CORRELATION_HEADER: &str = "X-Correlation-Id";
/// Header carrying the deterministic key `{transaction_id}:{step}:{action}`.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A span carrying the fields every log line of a call must have (span names must be literals,
/// hence a macro).
macro_rules! call_span {
    ($name:literal, $call:expr) => {
        info_span!(
            $name,
            transaction_id = $call.transaction_id,
            service = $call.step.service,
            step = $call.step.name,
            action = $call.action.name,
            idempotency_key = %$call.idempotency_key(),
        )
    };
}

/// Longest `reason` kept from a rejection, so an error message stays one readable line.
const REASON_MAX_CHARS: usize = 200;

/// One downstream call of a saga: the action or the compensation of a step, for a transaction.
#[derive(Debug, Clone, Copy)]
pub struct StepCall<'a> {
    /// The step, which names the service.
    pub step: &'static Step,
    /// The step's action or its compensation.
    pub action: &'static Action,
    /// The saga's `transaction_id`.
    pub transaction_id: &'a str,
    /// The saga's request, sent as `request` in the body.
    pub request: &'a Value,
}

impl<'a> StepCall<'a> {
    /// The call of the step's action.
    pub fn action(step: &'static Step, transaction_id: &'a str, request: &'a Value) -> Self {
        Self {
            step,
            action: &step.action,
            transaction_id,
            request,
        }
    }

    /// The call of the step's compensation.
    pub fn compensation(step: &'static Step, transaction_id: &'a str, request: &'a Value) -> Self {
        Self {
            step,
            action: &step.compensation,
            transaction_id,
            request,
        }
    }

    /// The idempotency key sent with the call: `{transaction_id}:{step}:{action}`.
    pub fn idempotency_key(&self) -> String {
        self.step.idempotency_key(self.transaction_id, self.action)
    }

    /// The JSON body sent.
    pub fn body(&self) -> Value {
        json!({
            "transaction_id": self.transaction_id,
            "step": self.step.name,
            "action": self.action.name,
            "request": self.request,
        })
    }
}

/// The client of every downstream service; build it once at function init and clone it freely
/// (clones share the connection pools).
///
/// reqwest sets the connect timeout per connection pool, not per request, so there is one pool
/// per distinct connect timeout: one in the usual case where all services share their timeouts.
#[derive(Debug, Clone)]
pub struct SaasClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    services: BTreeMap<String, (ServiceConfig, reqwest::Client)>,
}

impl SaasClient {
    /// A client for every service in `config`.
    pub fn new(config: SaasConfig) -> Result<Self, ConfigError> {
        let mut pools: BTreeMap<Duration, reqwest::Client> = BTreeMap::new();
        let mut services = BTreeMap::new();
        for (name, service) in config.services() {
            let http = match pools.get(&service.connect_timeout()) {
                Some(http) => http.clone(),
                None => {
                    let http = build_http_client(service.connect_timeout())?;
                    pools.insert(service.connect_timeout(), http.clone());
                    http
                }
            };
            services.insert(name.to_owned(), (service.clone(), http));
        }
        Ok(Self {
            inner: Arc::new(Inner { services }),
        })
    }

    /// A client for every service the saga calls, configured from the environment variables
    /// `SAGAFORM_SAAS_<SERVICE>_URL`, `..._CONNECT_TIMEOUT_MS` and `..._REQUEST_TIMEOUT_MS`.
    pub fn from_env(saga: &Saga) -> Result<Self, ConfigError> {
        Self::new(SaasConfig::from_env(saga)?)
    }

    /// The configuration of one service.
    pub fn service(&self, service: &str) -> Option<&ServiceConfig> {
        self.inner.services.get(service).map(|(config, _)| config)
    }

    /// Makes the call once, limited by the service's request timeout, and returns the JSON
    /// answer (`null` for an empty 2xx answer).
    pub async fn call(&self, call: &StepCall<'_>) -> Result<Value, SaasError> {
        self.attempt(call, None).await
    }

    /// Makes the call once, limited by the service's request timeout and by `deadline`, whichever
    /// comes first; does not call at all when the deadline has passed.
    pub async fn call_before(
        &self,
        call: &StepCall<'_>,
        deadline: Instant,
    ) -> Result<Value, SaasError> {
        self.attempt(call, Some(deadline)).await
    }

    /// Makes the call and retries retryable failures with the same idempotency key under
    /// `policy` (full jitter, `Retry-After` honoured when longer), never waiting or calling past
    /// `deadline`; returns the last error when retries run out or the deadline is near.
    pub async fn call_with_retry(
        &self,
        call: &StepCall<'_>,
        policy: &RetryPolicy,
        deadline: Instant,
    ) -> Result<Value, SaasError> {
        // The retry decisions are logged outside the attempts' spans; this span gives them the
        // same correlation fields.
        let span = call_span!("saas_call_with_retry", call);
        retry_until(policy, deadline, || self.call_before(call, deadline))
            .instrument(span)
            .await
    }

    async fn attempt(
        &self,
        call: &StepCall<'_>,
        deadline: Option<Instant>,
    ) -> Result<Value, SaasError> {
        let service = call.step.service;
        let action = call.action.name;
        let idempotency_key = call.idempotency_key();
        let span = call_span!("saas_call", call);
        async move {
            let Some((config, http)) = self.inner.services.get(service) else {
                warn!(error_kind = "not_configured", "saas service not configured");
                return Err(SaasError::NotConfigured { service, action });
            };
            let mut timeout = config.request_timeout();
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    warn!(
                        error_kind = "deadline_reached",
                        "no time left, saas call not made"
                    );
                    return Err(SaasError::DeadlineReached { service, action });
                }
                timeout = timeout.min(left);
            }
            let url = config.action_url(action);
            let started = Instant::now();
            let sent = http
                .post(&url)
                .timeout(timeout)
                .header(CORRELATION_HEADER, call.transaction_id)
                .header(IDEMPOTENCY_HEADER, &idempotency_key)
                .json(&call.body())
                .send()
                .await;
            let mut status = None;
            let result = match sent {
                Ok(response) => {
                    status = Some(response.status().as_u16());
                    read_answer(response, service, action, timeout).await
                }
                Err(e) => Err(transport_error(e, service, action, timeout)),
            };
            let duration_ms = started.elapsed().as_millis() as u64;
            let path = url_path(&url);
            match &result {
                Ok(_) => info!(path, status, duration_ms, "saas call succeeded"),
                Err(e) => warn!(
                    path,
                    status,
                    duration_ms,
                    error_kind = e.kind(),
                    retryable = e.is_retryable(),
                    error = %e,
                    "saas call failed"
                ),
            }
            result
        }
        .instrument(span)
        .await
    }
}

fn build_http_client(connect_timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        // A redirect of a POST would be replayed as a GET by default; a SaaS endpoint that
        // redirects is misconfigured, so it surfaces as an invalid answer instead.
        .redirect(redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| ConfigError::Client {
            reason: e.to_string(),
        })
}

/// The path of a URL, the part of it that is safe and useful in a log line.
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

async fn read_answer(
    response: reqwest::Response,
    service: &'static str,
    action: &'static str,
    timeout: Duration,
) -> Result<Value, SaasError> {
    let status = response.status();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, service, action, timeout))?;
    let code = status.as_u16();
    if status.is_success() {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&body).map_err(|e| SaasError::InvalidResponse {
            service,
            action,
            status: code,
            reason: format!("body is not JSON ({e})"),
        });
    }
    match status {
        StatusCode::TOO_MANY_REQUESTS => Err(SaasError::RateLimited {
            service,
            action,
            retry_after,
        }),
        // 408: the server gave up waiting for the request. 409: with idempotency keys this is
        // what providers answer while the same key is still being processed; retrying with the
        // same key is harmless and usually replays the stored answer.
        StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT => Err(SaasError::Unavailable {
            service,
            action,
            status: code,
            retry_after,
        }),
        s if s.is_server_error() => Err(SaasError::Unavailable {
            service,
            action,
            status: code,
            retry_after,
        }),
        s if s.is_client_error() => Err(SaasError::Rejected {
            service,
            action,
            status: code,
            reason: reason_of(&body),
        }),
        _ => Err(SaasError::InvalidResponse {
            service,
            action,
            status: code,
            reason: "unexpected status (redirects are not followed)".to_owned(),
        }),
    }
}

fn transport_error(
    error: reqwest::Error,
    service: &'static str,
    action: &'static str,
    timeout: Duration,
) -> SaasError {
    if error.is_builder() {
        SaasError::InvalidRequest {
            service,
            action,
            reason: error_chain(&error),
        }
    } else if error.is_timeout() {
        SaasError::Timeout {
            service,
            action,
            timeout,
        }
    } else if error.is_connect() {
        SaasError::Connect {
            service,
            action,
            reason: error_chain(&error),
        }
    } else {
        SaasError::Transport {
            service,
            action,
            reason: error_chain(&error),
        }
    }
}

/// The error and its causes on one line; reqwest's own message alone ("error sending request")
/// hides the useful part. reqwest errors may carry the URL, which holds no secret here (config
/// URLs are plain base URLs, validated to have no query).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `reason` of a rejection: the `reason`, `error` or `message` string of a JSON body,
/// shortened. Anything else in the body is dropped, it may hold personal data.
fn reason_of(body: &[u8]) -> String {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    ["reason", "error", "message"]
        .iter()
        .find_map(|k| fields.get(*k).and_then(Value::as_str))
        .map(|r| r.chars().take(REASON_MAX_CHARS).collect())
        .unwrap_or_default()
}

/// The `Retry-After` header as a delay from `now`: either whole seconds or an HTTP date; a date
/// in the past means no delay.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn only_the_reason_field_of_a_rejection_is_kept() {
        let body = br#"{"reason":"card declined","card_number":"4111111111111111"}"#;
        assert_eq!(reason_of(body), "card declined");
        assert_eq!(reason_of(b"<html>oops</html>"), "");
        assert_eq!(reason_of(&[b'"'; 1]), "");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(500));
        assert_eq!(reason_of(long.as_bytes()).len(), REASON_MAX_CHARS);
    }

    #[test]
    fn log_lines_carry_the_path_not_the_host_or_query() {
        assert_eq!(
            url_path("http://127.0.0.1:9320/payments/charge"),
            "/payments/charge"
        );
        assert_eq!(url_path("https://api.example.com"), "/");
    }

    #[test]
    fn the_body_names_transaction_step_action_and_request() {
        let step = sagaform_saga::PURCHASE.step("stock").unwrap();
        let request = json!({"item_id": "sword"});
        let call = StepCall::compensation(step, "tx-9", &request);
        assert_eq!(call.idempotency_key(), "tx-9:stock:release");
        assert_eq!(
            call.body(),
            json!({"transaction_id": "tx-9", "step": "stock", "action": "release", "request": {"item_id": "sword"}})
        );
    }
}
