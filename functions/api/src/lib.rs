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

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::Method;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use sagaform_runtime::errors::{EngineError, ErrorClass, IdempotencyError, StoreError, diagnostic};
use sagaform_runtime::idempotency::Idempotency;
use sagaform_runtime::model::{epoch_millis, new_transaction_id};
use sagaform_runtime::store::ClaimOutcome;
use sagaform_runtime::{
    ConfiguredStore, Engine, IdempotencyStore, SagaRecord, SagaStatus, SagaStore,
};
use sagaform_saas_client::SaasClient;
use sagaform_saga::PURCHASE;
use serde_json::{Value, json};
use tracing::{Instrument, Span, error, field, info, info_span, warn};

pub use config::{ApiSettings, ConfigError};
pub use dispatch::{Dispatch, DispatchError};
pub use response::HttpResponse;
pub use resume::{LambdaResumer, ResumeError, Resumer};
pub use sagaform_contract::Pattern;

use request::{FieldError, decode_body, idempotency_key, parse_purchase};
use response::{
    REPLAYED_HEADER, accepted, error, finished_saga, invalid_request, saga_view, status_url,
};

/// Prefix of the API's keys in the idempotency table, which the worker shares.
const KEY_PREFIX: &str = "api:";

/// Prefix of the keys that let one invocation resume an abandoned orchestrator saga.
const RESUME_KEY_PREFIX: &str = "api-resume:";

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

/// The outcome of running a saga in the request.
enum RunOutcome {
    /// The answer to give: the saga is finished, or failed in a way a resume cannot fix.
    Answered(HttpResponse),
    /// The time ran out with the saga still going; `fallback` is the 503 asking for a retry.
    Unfinished {
        status: Option<SagaStatus>,
        fallback: HttpResponse,
    },
}

/// What an idempotency key of the API points at once its saga is recorded.
struct KeyRecord {
    transaction_id: String,
    /// The deadline of the invocation that recorded the saga: after it, that invocation is gone.
    owner_deadline_ms: i64,
    /// The answer to replay (sqs, stepfunctions); the orchestrator's answer is the saga's final
    /// state, read again on every replay.
    answer: Option<HttpResponse>,
}

impl KeyRecord {
    fn to_value(&self) -> Value {
        json!({
            "transaction_id": self.transaction_id,
            "owner_deadline_ms": self.owner_deadline_ms,
            "answer": self.answer.as_ref().map(HttpResponse::to_stored),
        })
    }

    fn from_value(value: &Value) -> Option<KeyRecord> {
        let answer = match value.get("answer") {
            None | Some(Value::Null) => None,
            Some(stored) => Some(HttpResponse::from_stored(stored)?),
        };
        Some(KeyRecord {
            transaction_id: value.get("transaction_id")?.as_str()?.to_owned(),
            owner_deadline_ms: value.get("owner_deadline_ms")?.as_i64()?,
            answer,
        })
    }
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

    /// Orchestrator: continues the saga of a resume event to a terminal status under the
    /// invocation's deadline. An unknown saga is permanent; a saga another invocation is
    /// working on, or one not finished in time, is a retryable error so Lambda's asynchronous
    /// retries (then the ResumeDeadLetterQueue) take over. Steps already done are not re-run:
    /// the engine continues from the stored state.
    pub async fn resume_saga(
        &self,
        transaction_id: &str,
        context: &Context,
    ) -> Result<SagaRecord, Diagnostic> {
        let span =
            info_span!("resume", requestId = %context.request_id, transaction_id = %transaction_id);
        async {
            let Dispatch::InRequest(engine) = &self.dispatch else {
                let e = EngineError::InvalidOperation {
                    transaction_id: transaction_id.to_owned(),
                    reason: format!("the {} api does not run sagas", self.pattern()),
                };
                error!(error = %e, "resume event sent to the wrong function");
                return Err(diagnostic(ErrorClass::Permanent, &e));
            };
            match self.store.get(transaction_id).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let e = StoreError::NotFound(transaction_id.to_owned());
                    error!(error = %e, "resume event for an unknown saga");
                    return Err(diagnostic(ErrorClass::Permanent, &e));
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the saga to resume");
                    return Err(diagnostic(e.class(), &e));
                }
            }
            let deadline = context.deadline();
            let key = format!("{RESUME_KEY_PREFIX}{transaction_id}");
            match self
                .idempotency()
                .claim(&key, &json!({"transaction_id": transaction_id}), deadline)
                .await
            {
                Ok(ClaimOutcome::Claimed) => {}
                Ok(ClaimOutcome::Completed(_))
                | Err(IdempotencyError::InProgress(_) | IdempotencyError::PayloadMismatch(_)) => {
                    // Another invocation (a duplicate delivery, or a client's retry) holds the
                    // saga; failing lets Lambda retry once that one is done or gone.
                    let e = resume::EventError::Busy(transaction_id.to_owned());
                    warn!(error = %e, "saga busy; Lambda retries the resume later");
                    return Err(diagnostic(ErrorClass::Retryable, &e));
                }
                Err(IdempotencyError::Store(e)) => {
                    warn!(error = %e, "cannot claim the saga to resume");
                    return Err(diagnostic(e.class(), &e));
                }
            }
            info!("resuming the saga");
            let run_until = instant_before(deadline, self.settings.response_margin);
            let result = engine.run(transaction_id, run_until).await;
            if let Err(e) = self.store.release(&key).await {
                warn!(error = %e, "could not release the resume claim; it expires with this invocation");
            }
            match result {
                Ok(record) => {
                    info!(status = %record.status, "saga finished");
                    Ok(record)
                }
                Err(e) => {
                    match e.class() {
                        ErrorClass::Retryable => warn!(error = %e, "saga not finished; Lambda retries the resume"),
                        ErrorClass::Permanent => error!(error = %e, "saga stopped on an error retrying cannot fix"),
                    }
                    Err(diagnostic(e.class(), &e))
                }
            }
        }
        .instrument(span)
        .await
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

    /// `POST /transactions`.
    async fn create(
        &self,
        request: &ApiGatewayV2httpRequest,
        context: &Context,
        prefix: &str,
    ) -> HttpResponse {
        let arrived = Instant::now();
        let key = match idempotency_key(&request.headers) {
            Ok(key) => key,
            Err(e) => return refuse(&[e]),
        };
        let body = match decode_body(
            request.body.as_deref(),
            request.is_base64_encoded,
            self.settings.max_body_bytes,
        ) {
            Ok(body) => body,
            Err(e) => return refuse(&[e]),
        };
        let purchase = match parse_purchase(&body) {
            Ok(purchase) => purchase,
            Err(errors) => return refuse(&errors),
        };
        let payload = purchase.to_value();
        let deadline = context.deadline();
        let respond_by = self.respond_by(deadline, arrived);
        match key {
            None => {
                self.start(payload, None, deadline, respond_by, prefix)
                    .await
            }
            Some(key) => {
                self.start_idempotent(&key, payload, deadline, respond_by, prefix)
                    .await
            }
        }
    }

    /// Claims the client's key, then starts a saga, replays the first answer, or refuses.
    async fn start_idempotent(
        &self,
        key: &str,
        payload: Value,
        deadline: SystemTime,
        respond_by: Instant,
        prefix: &str,
    ) -> HttpResponse {
        let stored_key = format!("{KEY_PREFIX}{key}");
        match self
            .idempotency()
            .claim(&stored_key, &payload, deadline)
            .await
        {
            Ok(ClaimOutcome::Claimed) => {
                self.start(payload, Some(&stored_key), deadline, respond_by, prefix)
                    .await
            }
            Ok(ClaimOutcome::Completed(stored)) => {
                self.replay(&stored, deadline, respond_by, prefix).await
            }
            Err(IdempotencyError::InProgress(_)) => {
                info!("a request with this Idempotency-Key is in progress");
                in_progress(None, prefix)
            }
            Err(IdempotencyError::PayloadMismatch(_)) => {
                info!("Idempotency-Key reused with another body");
                error(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different body",
                )
            }
            Err(IdempotencyError::Store(e)) => store_failure(&e),
        }
    }

    /// Issues the `transaction_id`, records the saga (completing the claimed key in the same
    /// write), then runs or hands it over.
    async fn start(
        &self,
        payload: Value,
        key: Option<&str>,
        deadline: SystemTime,
        respond_by: Instant,
        prefix: &str,
    ) -> HttpResponse {
        let record = SagaRecord::new(&PURCHASE, new_transaction_id(), payload);
        let transaction_id = record.transaction_id.clone();
        Span::current().record("transaction_id", transaction_id.as_str());
        let url = status_url(prefix, &transaction_id);
        let answer = match self.dispatch {
            Dispatch::InRequest(_) => None,
            Dispatch::Queue { .. } | Dispatch::StateMachine { .. } => {
                Some(accepted(&transaction_id, &url))
            }
        };
        let created = match key {
            Some(key) => {
                let pointer = KeyRecord {
                    transaction_id: transaction_id.clone(),
                    owner_deadline_ms: epoch_millis(deadline),
                    answer: answer.clone(),
                };
                let expiration = self.idempotency().expiration();
                self.store
                    .create_completing_idempotency(&record, key, &pointer.to_value(), expiration)
                    .await
            }
            None => self.store.create(&record).await,
        };
        if let Err(e) = created {
            if let (Some(key), false) = (key, matches!(e, StoreError::IdempotencyNotInProgress(_)))
            {
                // Nothing was recorded (or, if the write landed after all, the key is completed and
                // the release leaves it alone): free the key for the client's retry.
                if let Err(release_error) = self.store.release(key).await {
                    warn!(error = %release_error, "could not release the idempotency key");
                }
            }
            return match e {
                // The claim expired and another request took the key over: that one owns it now.
                StoreError::IdempotencyNotInProgress(_) => in_progress(None, prefix),
                other => store_failure(&other),
            };
        }
        info!(pattern = %self.pattern(), "saga recorded");
        match (&self.dispatch, answer) {
            (Dispatch::InRequest(engine), _) => {
                let outcome = self.run(engine, &transaction_id, respond_by, &url).await;
                self.answer_or_resume_later(outcome, &transaction_id, &url)
                    .await
            }
            (_, Some(answer)) => self.hand_over(&record, answer).await,
            // Only the orchestrator has no answer before running.
            (_, None) => error(500, "internal_error", "no answer for a handed-over saga"),
        }
    }

    /// Hands a recorded saga to the queue or state machine and answers `answer` (202).
    async fn hand_over(&self, record: &SagaRecord, answer: HttpResponse) -> HttpResponse {
        match self.dispatch.hand_over(record).await {
            Ok(()) => answer,
            Err(e) => {
                error!(error = %e, "saga recorded but not handed over; it stays PENDING until a retry with the same Idempotency-Key");
                let url = answer.header("location").unwrap_or_default().to_owned();
                let mut failed = error(503, "dispatch_failed", e.to_string())
                    .with_header("retry-after", "1")
                    .with_header("location", url.clone());
                failed.body["transaction_id"] = json!(record.transaction_id);
                failed.body["status_url"] = json!(url);
                failed
            }
        }
    }

    /// When the orchestrator must stop working on a request: the earlier of the invocation's
    /// deadline less the margin and the response budget after the request arrived.
    fn respond_by(&self, deadline: SystemTime, arrived: Instant) -> Instant {
        instant_before(deadline, self.settings.response_margin)
            .min(arrived + self.settings.response_budget)
    }

    /// Orchestrator: runs the saga until it finishes or `run_until`.
    async fn run(
        &self,
        engine: &Engine<ConfiguredStore, SaasClient>,
        transaction_id: &str,
        run_until: Instant,
        url: &str,
    ) -> RunOutcome {
        match engine.run(transaction_id, run_until).await {
            Ok(record) => {
                info!(status = %record.status, "saga finished");
                RunOutcome::Answered(finished_saga(&record, url))
            }
            Err(e) if e.class() == ErrorClass::Retryable => {
                warn!(error = %e, "saga not finished within the response budget");
                match self.store.get(transaction_id).await {
                    Ok(Some(record)) if record.status.is_terminal() => {
                        RunOutcome::Answered(finished_saga(&record, url))
                    }
                    Ok(Some(record)) => RunOutcome::Unfinished {
                        status: Some(record.status),
                        fallback: finished_saga(&record, url),
                    },
                    _ => RunOutcome::Unfinished {
                        status: None,
                        fallback: unfinished(transaction_id, url, &e.to_string()),
                    },
                }
            }
            Err(e) => {
                error!(error = %e, "saga stopped on an error retrying cannot fix");
                let mut failed =
                    error(500, "saga_failed", e.to_string()).with_header("location", url);
                failed.body["transaction_id"] = json!(transaction_id);
                failed.body["status_url"] = json!(url);
                RunOutcome::Answered(failed)
            }
        }
    }

    /// Turns a run's outcome into the answer: a saga still going is handed to an asynchronous
    /// invocation of this function (202); when that cannot be sent, or there is no resumer, the
    /// 503 asks the client to retry with the same key, which resumes the saga.
    async fn answer_or_resume_later(
        &self,
        outcome: RunOutcome,
        transaction_id: &str,
        url: &str,
    ) -> HttpResponse {
        let (status, fallback) = match outcome {
            RunOutcome::Answered(answer) => return answer,
            RunOutcome::Unfinished { status, fallback } => (status, fallback),
        };
        let Some(resumer) = &self.resumer else {
            warn!("no resumer: a retry with the same Idempotency-Key resumes the saga");
            return fallback;
        };
        match resumer.send(&resume::resume_event(transaction_id)).await {
            Ok(()) => {
                info!("saga handed to an asynchronous invocation; answering 202");
                let mut answer = accepted(transaction_id, url);
                if let Some(status) = status {
                    answer.body["status"] = json!(status.as_str());
                }
                answer
            }
            Err(e) => {
                error!(error = %e, "cannot hand the saga to an asynchronous invocation; a retry with the same Idempotency-Key resumes it");
                fallback
            }
        }
    }

    /// Answers a repeat of a request whose saga is recorded.
    async fn replay(
        &self,
        stored: &Value,
        deadline: SystemTime,
        respond_by: Instant,
        prefix: &str,
    ) -> HttpResponse {
        let Some(pointer) = KeyRecord::from_value(stored) else {
            error!("the idempotency record of this key is unreadable");
            return error(
                500,
                "corrupt_idempotency_record",
                "the stored answer of this Idempotency-Key is unreadable",
            );
        };
        let transaction_id = pointer.transaction_id.as_str();
        Span::current().record("transaction_id", transaction_id);
        info!("same Idempotency-Key and body as an earlier request: answering for its saga");
        let url = status_url(prefix, transaction_id);
        let record = match self.store.get(transaction_id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                error!("the saga an idempotency record points at does not exist");
                return error(
                    500,
                    "saga_missing",
                    format!("saga {transaction_id} of this Idempotency-Key is missing"),
                );
            }
            Err(e) => return store_failure(&e),
        };
        match (&self.dispatch, pointer.answer) {
            (Dispatch::InRequest(engine), _) => {
                if record.status.is_terminal() {
                    finished_saga(&record, &url).with_header(REPLAYED_HEADER, "true")
                } else if epoch_millis(SystemTime::now()) <= pointer.owner_deadline_ms {
                    in_progress(Some(transaction_id), prefix)
                } else {
                    self.resume(engine, transaction_id, deadline, respond_by, prefix)
                        .await
                }
            }
            (_, answer) => {
                let answer = answer.unwrap_or_else(|| accepted(transaction_id, &url));
                if record.status == SagaStatus::Pending {
                    // The first attempt may have died before handing the saga over; handing it
                    // over again is harmless (see the dispatch module).
                    let handed = self.hand_over(&record, answer).await;
                    if handed.status < 500 {
                        handed.with_header(REPLAYED_HEADER, "true")
                    } else {
                        handed
                    }
                } else {
                    answer.with_header(REPLAYED_HEADER, "true")
                }
            }
        }
    }

    /// Orchestrator: resumes a saga whose first invocation is gone, unless another repeat is
    /// already resuming it.
    async fn resume(
        &self,
        engine: &Engine<ConfiguredStore, SaasClient>,
        transaction_id: &str,
        deadline: SystemTime,
        respond_by: Instant,
        prefix: &str,
    ) -> HttpResponse {
        let url = &status_url(prefix, transaction_id);
        let key = format!("{RESUME_KEY_PREFIX}{transaction_id}");
        match self
            .idempotency()
            .claim(&key, &json!({"transaction_id": transaction_id}), deadline)
            .await
        {
            Ok(ClaimOutcome::Claimed) => {
                info!("the invocation that started this saga is gone; resuming it");
                let outcome = self.run(engine, transaction_id, respond_by, url).await;
                // Released before any hand-over, so the asynchronous invocation can claim it.
                if let Err(e) = self.store.release(&key).await {
                    warn!(error = %e, "could not release the resume claim; it expires with this invocation");
                }
                self.answer_or_resume_later(outcome, transaction_id, url)
                    .await
            }
            Ok(ClaimOutcome::Completed(_))
            | Err(IdempotencyError::InProgress(_) | IdempotencyError::PayloadMismatch(_)) => {
                in_progress(Some(transaction_id), prefix)
            }
            Err(IdempotencyError::Store(e)) => store_failure(&e),
        }
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

fn refuse(errors: &[FieldError]) -> HttpResponse {
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

fn in_progress(transaction_id: Option<&str>, prefix: &str) -> HttpResponse {
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

fn unfinished(transaction_id: &str, url: &str, reason: &str) -> HttpResponse {
    let mut answer = error(503, "saga_not_finished", reason)
        .with_header("retry-after", "1")
        .with_header("location", url);
    answer.body["transaction_id"] = json!(transaction_id);
    answer.body["status_url"] = json!(url);
    answer
}

fn store_failure(e: &StoreError) -> HttpResponse {
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

/// The monotonic instant `margin` before a wall-clock deadline (now, when that has passed).
fn instant_before(deadline: SystemTime, margin: Duration) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left.saturating_sub(margin)
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

    #[test]
    fn key_records_round_trip() {
        let record = KeyRecord {
            transaction_id: "tx".into(),
            owner_deadline_ms: 42,
            answer: Some(accepted("tx", "/transactions/tx")),
        };
        let back = KeyRecord::from_value(&record.to_value()).unwrap();
        assert_eq!(
            (back.transaction_id.as_str(), back.owner_deadline_ms),
            ("tx", 42)
        );
        assert_eq!(back.answer, record.answer);
        assert!(KeyRecord::from_value(&json!({"transaction_id": 1})).is_none());
    }
}
