//! The HTTP API function of every sagaform pattern (API Gateway HTTP API, payload format 2.0):
//!
//! - `POST /transactions` validates the purchase and the optional `Idempotency-Key` header,
//!   issues the saga's `transaction_id` (UUIDv7), records the saga, then per pattern runs it in
//!   the request (orchestrator), enqueues it (sqs) or starts its execution (stepfunctions);
//! - `GET /transactions/{id}` shows a saga's status and each step's status and time.
//!
//! Status codes are listed in [`response`]. Idempotency follows Powertools for AWS Lambda: the
//! key is claimed (INPROGRESS until the invocation's deadline), and the saga is created in the
//! same atomic write that completes the key with a pointer to it, so a repeat can never create a
//! second saga: it gets the first request's answer (replayed), a 409 while the first request is
//! still working, or a 422 when it carries another body. An orchestrator request cut off by its
//! deadline leaves a saga that a repeat with the same key resumes once the first invocation is
//! certainly gone (past its deadline).
//!
//! The orchestrator answers within `SAGAFORM_RESPONSE_BUDGET_MS` (the HTTP API cuts an
//! integration off at 30 s): a saga still running then is handed to an asynchronous invocation
//! of the function itself (see [`resume`]) and the client gets `202 Accepted` with the status
//! URL. The key then points at the saga exactly as after a cut-off request, so a repeat answers
//! from the saga's state: its final answer once it is finished, a 409 while an invocation is
//! still working on it, and a resume in the request if every invocation that had it is gone.
//!
//! Every log line of a request carries the Lambda request id (`requestId`) and, from the moment
//! it is known, the `transaction_id`.

pub mod config;
pub mod dispatch;
pub mod request;
pub mod response;
pub mod resume;

mod orchestration;
mod submission;

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::Method;
use lambda_runtime::{Diagnostic, LambdaEvent};
use sagaform_runtime::errors::{ErrorClass, StoreError, diagnostic};
use sagaform_runtime::idempotency::Idempotency;
use sagaform_runtime::{ConfiguredStore, Engine, SagaStore};
use sagaform_saas_client::SaasClient;
use sagaform_saga::PURCHASE;
use serde_json::{Value, json};
use tracing::{Instrument, Span, error, field, info, info_span, warn};

pub use config::{ApiSettings, ConfigError};
pub use dispatch::{Dispatch, DispatchError};
pub use response::HttpResponse;
pub use resume::{LambdaResumer, ResumeError, Resumer};
pub use sagaform_contract::Pattern;

use request::FieldError;
use response::{error, invalid_request, saga_view, status_url};

/// Prefix of the API's keys in the idempotency table, which the worker shares.
pub(crate) const KEY_PREFIX: &str = "api:";

/// Prefix of the keys that let one invocation resume an abandoned orchestrator saga.
pub(crate) const RESUME_KEY_PREFIX: &str = "api-resume:";

/// The API function: its store, what it hands sagas to, and its limits.
#[derive(Debug, Clone)]
pub struct Api {
    store: ConfiguredStore,
    dispatch: Dispatch,
    settings: ApiSettings,
    /// Orchestrator: where a saga still running at the response budget goes; without one the
    /// client gets a 503 and its retry with the same key resumes the saga.
    resumer: Option<Arc<dyn Resumer>>,
}

enum Route<'a> {
    Transactions,
    Transaction(&'a str),
    Unknown,
}

impl Api {
    /// An API on `store` handing sagas to `dispatch`, with the default settings.
    pub fn new(store: ConfiguredStore, dispatch: Dispatch) -> Api {
        Api {
            store,
            dispatch,
            settings: ApiSettings::default(),
            resumer: None,
        }
    }

    /// Hands sagas still running at the response budget to `resumer` (orchestrator).
    pub fn with_resumer(mut self, resumer: Arc<dyn Resumer>) -> Api {
        self.resumer = Some(resumer);
        self
    }

    /// The orchestrator API: runs [`PURCHASE`] in the request against `client`'s services.
    pub fn orchestrator(store: ConfiguredStore, client: SaasClient) -> Api {
        let engine = Engine::new(PURCHASE, store.clone(), client);
        Api::new(store, Dispatch::InRequest(engine))
    }

    /// Replaces the settings.
    pub fn with_settings(mut self, settings: ApiSettings) -> Api {
        self.settings = settings;
        self
    }

    /// Reads the configuration from the process environment and opens the store and clients.
    pub async fn from_env() -> Result<Api, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        let pattern = config::pattern(&lookup)?;
        let store = config::store(&lookup).await?;
        let dispatch = config::dispatch(pattern, &store, &lookup).await?;
        let settings = config::settings(&lookup)?;
        Ok(Api::new(store, dispatch).with_settings(settings))
    }

    /// The pattern this API serves.
    pub fn pattern(&self) -> Pattern {
        self.dispatch.pattern()
    }

    /// The store.
    pub fn store(&self) -> &ConfiguredStore {
        &self.store
    }

    /// The Lambda handler: never fails, every outcome is an HTTP answer.
    pub async fn handle(
        &self,
        event: LambdaEvent<ApiGatewayV2httpRequest>,
    ) -> ApiGatewayV2httpResponse {
        self.answer(event).await.into_response()
    }

    /// The Lambda handler of the function: a resume event (top-level `resume` key) continues a
    /// saga, anything else is an API Gateway HTTP API event answered by [`Api::handle`].
    pub async fn handle_event(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let (payload, context) = event.into_parts();
        match resume::resumed_transaction(&payload) {
            Some(Some(transaction_id)) => {
                let record = self.resume_saga(transaction_id, &context).await?;
                Ok(
                    json!({"transaction_id": record.transaction_id, "status": record.status.as_str()}),
                )
            }
            Some(None) => {
                let e = resume::EventError::NoTransactionId;
                error!(requestId = %context.request_id, error = %e, "unusable resume event");
                Err(diagnostic(ErrorClass::Permanent, &e))
            }
            None => match serde_json::from_value::<ApiGatewayV2httpRequest>(payload) {
                Ok(request) => {
                    let response = self.handle(LambdaEvent::new(request, context)).await;
                    serde_json::to_value(response).map_err(|e| {
                        let e = resume::EventError::Response(e);
                        diagnostic(ErrorClass::Permanent, &e)
                    })
                }
                Err(e) => {
                    let e = resume::EventError::Unknown(e);
                    error!(requestId = %context.request_id, error = %e, "unknown event");
                    Err(diagnostic(ErrorClass::Permanent, &e))
                }
            },
        }
    }

    /// The answer to one request, before it becomes an API Gateway response.
    pub async fn answer(&self, event: LambdaEvent<ApiGatewayV2httpRequest>) -> HttpResponse {
        let (request, context) = event.into_parts();
        let method = request.request_context.http.method.clone();
        let prefix = stage_prefix(&request);
        let raw_path = request
            .raw_path
            .clone()
            .or_else(|| request.request_context.http.path.clone())
            .unwrap_or_default();
        let path = raw_path
            .strip_prefix(prefix.as_str())
            .unwrap_or(&raw_path)
            .trim_end_matches('/')
            .to_owned();
        let span = info_span!(
            "request",
            requestId = %context.request_id,
            transaction_id = field::Empty,
            method = %method,
            path = %path,
        );
        async {
            match route(&path) {
                Route::Transactions if method == Method::POST => {
                    self.create(&request, &context, &prefix).await
                }
                Route::Transaction(id) if method == Method::GET => self.status(id, &prefix).await,
                Route::Transactions => method_not_allowed("POST"),
                Route::Transaction(_) => method_not_allowed("GET"),
                Route::Unknown => error(404, "not_found", format!("no route for {method} {path}")),
            }
        }
        .instrument(span.clone())
        .await
    }

    /// `GET /transactions/{id}`.
    async fn status(&self, raw_id: &str, prefix: &str) -> HttpResponse {
        let Ok(id) = uuid::Uuid::try_parse(raw_id) else {
            return refuse(&[FieldError {
                field: "transaction_id".to_owned(),
                reason: format!("`{raw_id}` is not a UUID"),
            }]);
        };
        let transaction_id = id.hyphenated().to_string();
        Span::current().record("transaction_id", transaction_id.as_str());
        match self.store.get(&transaction_id).await {
            Ok(Some(record)) => HttpResponse::json(
                200,
                saga_view(&record, &status_url(prefix, &transaction_id)),
            ),
            Ok(None) => error(
                404,
                "transaction_not_found",
                format!("no transaction {transaction_id}"),
            ),
            Err(e) => store_failure(&e),
        }
    }

    fn idempotency(&self) -> Idempotency<&ConfiguredStore> {
        Idempotency::new(&self.store, self.settings.idempotency_expiry)
    }
}

fn route(path: &str) -> Route<'_> {
    match path.strip_prefix("/transactions") {
        Some("") => Route::Transactions,
        Some(rest) => match rest.strip_prefix('/') {
            Some(id) if !id.is_empty() && !id.contains('/') => Route::Transaction(id),
            _ => Route::Unknown,
        },
        None => Route::Unknown,
    }
}

/// The path prefix of a named stage (`/prod`), empty for the `$default` stage, whose paths API
/// Gateway passes without one.
fn stage_prefix(request: &ApiGatewayV2httpRequest) -> String {
    let raw_path = request.raw_path.as_deref().unwrap_or_default();
    match request.request_context.stage.as_deref() {
        Some(stage) if stage != "$default" && !stage.is_empty() => {
            let prefix = format!("/{stage}");
            let stage_in_path = raw_path == prefix || raw_path.starts_with(&format!("{prefix}/"));
            if stage_in_path { prefix } else { String::new() }
        }
        _ => String::new(),
    }
}

pub(crate) fn refuse(errors: &[FieldError]) -> HttpResponse {
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    info!(fields = ?fields, "refused an invalid request");
    invalid_request(errors)
}

fn method_not_allowed(allowed: &str) -> HttpResponse {
    error(
        405,
        "method_not_allowed",
        format!("this path accepts {allowed} only"),
    )
    .with_header("allow", allowed)
}

pub(crate) fn in_progress(transaction_id: Option<&str>, prefix: &str) -> HttpResponse {
    let mut answer = error(
        409,
        "request_in_progress",
        "a request with this Idempotency-Key is still being processed; retry later",
    )
    .with_header("retry-after", "1");
    if let Some(transaction_id) = transaction_id {
        let url = status_url(prefix, transaction_id);
        answer.body["transaction_id"] = json!(transaction_id);
        answer.body["status_url"] = json!(url);
        answer = answer.with_header("location", url);
    }
    answer
}

pub(crate) fn unfinished(transaction_id: &str, url: &str, reason: &str) -> HttpResponse {
    let mut answer = error(503, "saga_not_finished", reason)
        .with_header("retry-after", "1")
        .with_header("location", url);
    answer.body["transaction_id"] = json!(transaction_id);
    answer.body["status_url"] = json!(url);
    answer
}

pub(crate) fn store_failure(e: &StoreError) -> HttpResponse {
    match e.class() {
        ErrorClass::Retryable => {
            warn!(error = %e, "state store unavailable");
            error(
                503,
                "store_unavailable",
                "the state store is unavailable; retry later",
            )
            .with_header("retry-after", "1")
        }
        ErrorClass::Permanent => {
            error!(error = %e, "state store error");
            error(500, "store_error", "the state store failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_the_two_paths_only() {
        assert!(matches!(route("/transactions"), Route::Transactions));
        assert!(matches!(
            route("/transactions/abc"),
            Route::Transaction("abc")
        ));
        assert!(matches!(route("/transactions/abc/steps"), Route::Unknown));
        assert!(matches!(route("/transactionsx"), Route::Unknown));
        assert!(matches!(route("/"), Route::Unknown));
    }
}
