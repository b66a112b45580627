//! The HTTP server: one listener serving every service of the saga under `/{service}`, with an
//! endpoint per action and compensation derived from the saga definition, plus the control
//! endpoints `/_ledger` and `/_faults`.
//!
//! Calls are checked as strictly as the contract allows (`X-Correlation-Id` equal to the body's
//! `transaction_id`, `Idempotency-Key` equal to `{transaction_id}:{step}:{action}`), so a client
//! that drops or garbles a header fails its tests instead of passing by luck.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sagaform_saga::{PURCHASE, Saga, Step};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::faults::{Fault, FaultRule, Faults};
use crate::ledger::{CallId, Ledger};

/// Header carrying the saga's `transaction_id`.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// Header carrying `{transaction_id}:{step}:{action}`.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Header set to `true` on an answer replayed for a repeated idempotency key.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Why the fake could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address is not `IP:port`.
    #[error("listen address {addr}: not an IP:port")]
    InvalidAddress {
        /// The address given.
        addr: String,
    },
    /// The fake serves loopback only: it has no authentication and injects failures on demand.
    #[error(
        "listen address {addr}: not a loopback address (the fake serves 127.0.0.1 or ::1 only)"
    )]
    NotLoopback {
        /// The address given.
        addr: String,
    },
    /// The address could not be bound.
    #[error("listen address {addr}: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// What the system said.
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct AppState {
    saga: &'static Saga,
    ledger: Ledger,
    faults: Faults,
    shutdown: watch::Receiver<bool>,
}

/// A running fake SaaS server. It stops when dropped (or with [`FakeSaas::shutdown`]); calls
/// sleeping in a `latency` or `hang` fault are cut short.
pub struct FakeSaas {
    addr: SocketAddr,
    state: AppState,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl FakeSaas {
    /// Serves the example saga ([`PURCHASE`]) on `listen` (`127.0.0.1:0` picks a free port),
    /// with fault-rate seed 0.
    pub async fn start(listen: &str) -> Result<Self, StartError> {
        Self::start_with(listen, &PURCHASE, 0).await
    }

    /// Serves `saga` on `listen` with fault rates drawn from `seed`.
    pub async fn start_with(
        listen: &str,
        saga: &'static Saga,
        seed: u64,
    ) -> Result<Self, StartError> {
        let addr: SocketAddr = listen.parse().map_err(|_| StartError::InvalidAddress {
            addr: listen.to_owned(),
        })?;
        if !addr.ip().is_loopback() {
            return Err(StartError::NotLoopback {
                addr: listen.to_owned(),
            });
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: listen.to_owned(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen.to_owned(),
            source,
        })?;
        let (stop, shutdown) = watch::channel(false);
        let state = AppState {
            saga,
            ledger: Ledger::default(),
            faults: Faults::new(saga, seed),
            shutdown,
        };
        let router = router(state.clone());
        let mut stopped = state.shutdown.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serve.await {
                warn!(error = %e, "fake saas server stopped with an error");
            }
        });
        Ok(Self {
            addr,
            state,
            stop,
            server: Some(server),
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL of one service: `http://127.0.0.1:PORT/{service}`.
    pub fn service_url(&self, service: &str) -> String {
        format!("{}/{service}", self.base_url())
    }

    /// The ledger (shared: it sees calls made after this returns).
    pub fn ledger(&self) -> Ledger {
        self.state.ledger.clone()
    }

    /// The fault rules (shared: rules added here apply to the running server).
    pub fn faults(&self) -> Faults {
        self.state.faults.clone()
    }

    /// Stops serving and waits until the listener is closed and open calls have answered.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for FakeSaas {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Which side of a step an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Action,
    Compensation,
}

fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/_ledger", get(read_ledger).delete(reset_ledger))
        .route("/_ledger/{transaction_id}", get(read_transaction))
        .route(
            "/_faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_health", get(|| async { "ok" }));
    for step in state.saga.steps {
        for (role, action) in [
            (Role::Action, step.action),
            (Role::Compensation, step.compensation),
        ] {
            let path = format!("/{}/{}", step.service, action.name);
            router = router.route(
                &path,
                post(
                    move |State(app): State<AppState>, headers: HeaderMap, body: Bytes| {
                        handle_call(app, step, role, headers, body)
                    },
                ),
            );
        }
    }
    router.with_state(state)
}

/// The body every call carries.
#[derive(Debug, Deserialize)]
struct CallBody {
    transaction_id: String,
    step: String,
    action: String,
    request: Value,
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "reason": reason.into() }))).into_response()
}

/// Serves one call of `step`'s action or compensation: records it in the ledger, refuses it
/// when the body or headers break the contract, injects the fault a rule picks, and otherwise
/// applies its effect once per idempotency key and answers.
async fn handle_call(
    app: AppState,
    step: &'static Step,
    role: Role,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let action = match role {
        Role::Action => &step.action,
        Role::Compensation => &step.compensation,
    };
    let call: CallBody = match serde_json::from_slice(&body) {
        Ok(call) => call,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    let expected_key = step.idempotency_key(&call.transaction_id, action);
    let action_key = step.idempotency_key(&call.transaction_id, &step.action);
    let id = CallId {
        transaction_id: &call.transaction_id,
        service: step.service,
        step: step.name,
        action: action.name,
        idempotency_key: &expected_key,
        compensates_key: (role == Role::Compensation).then_some(action_key.as_str()),
    };
    app.ledger.record_call(&id);

    if let Err(refusal) = check_call(&call, step, action.name, &expected_key, &headers) {
        warn!(transaction_id = %call.transaction_id, service = step.service, action = action.name, reason = %refusal.1, "call refused");
        return error(refusal.0, refusal.1);
    }

    let fault = app
        .faults
        .pick(step.service, action.name, &call.transaction_id);
    if let Some(fault) = &fault {
        info!(transaction_id = %call.transaction_id, service = step.service, action = action.name, fault = ?fault, "injecting fault");
        if let Some(response) = inject_fault(&app, &id, &call, fault).await {
            return response;
        }
    }
    apply_and_answer(&app, &id, &call, fault == Some(Fault::ResponseLost))
}

/// Acts out a fault that happens before the effect: the refusals answer at once (recorded as
/// faults, with no effect), the delays sleep and then let the call go on. `None` lets the call
/// be applied.
async fn inject_fault(
    app: &AppState,
    id: &CallId<'_>,
    call: &CallBody,
    fault: &Fault,
) -> Option<Response> {
    match fault {
        Fault::Unavailable => {
            app.ledger.record_fault(id);
            Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service unavailable (injected)",
            ))
        }
        Fault::Reject { status, reason } => {
            app.ledger.record_fault(id);
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            Some(error(status, reason.clone()))
        }
        Fault::RateLimited { retry_after_secs } => {
            app.ledger.record_fault(id);
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate limited (injected)");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            Some(response)
        }
        Fault::InvalidBody => {
            app.ledger.record_fault(id);
            Some((StatusCode::OK, "<html>gateway says hi</html>").into_response())
        }
        Fault::Latency { delay_ms: wait_ms } | Fault::Hang { hang_ms: wait_ms } => {
            let waited_in_full = sleep_unless_stopped(app, Duration::from_millis(*wait_ms)).await;
            (!waited_in_full).then(|| error(StatusCode::SERVICE_UNAVAILABLE, "server stopping"))
        }
        Fault::LateEffect {
            effect_after_ms,
            hang_ms,
        } => {
            app.ledger.record_fault(id);
            land_late(app, id, call, Duration::from_millis(*effect_after_ms));
            // The answer never comes: the client times out (or the connection is dropped when
            // it gives up, which ends this handler but not the effect already on its way).
            sleep_unless_stopped(app, Duration::from_millis(*hang_ms)).await;
            Some(error(
                StatusCode::GATEWAY_TIMEOUT,
                "no answer in time (injected, the effect landed late)",
            ))
        }
        Fault::ResponseLost => None,
    }
}

/// Applies the call's effect `after` from now in a task of its own, which outlives the
/// request's handler (axum drops the handler when the client disconnects) but not the server.
fn land_late(app: &AppState, id: &CallId<'_>, call: &CallBody, after: Duration) {
    let app = app.clone();
    let (transaction_id, service, step, action) = (
        id.transaction_id.to_owned(),
        id.service.to_owned(),
        id.step.to_owned(),
        id.action.to_owned(),
    );
    let idempotency_key = id.idempotency_key.to_owned();
    let compensates_key = id.compensates_key.map(str::to_owned);
    let request = call.request.clone();
    tokio::spawn(async move {
        if !sleep_unless_stopped(&app, after).await {
            return;
        }
        let id = CallId {
            transaction_id: &transaction_id,
            service: &service,
            step: &step,
            action: &action,
            idempotency_key: &idempotency_key,
            compensates_key: compensates_key.as_deref(),
        };
        match app.ledger.apply(&id, &request) {
            Ok(outcome) => info!(
                transaction_id = %transaction_id,
                service = %service,
                action = %action,
                idempotency_key = %idempotency_key,
                replayed = outcome.replayed,
                "late effect landed"
            ),
            Err(reused) => {
                warn!(transaction_id = %transaction_id, error = %reused, "late effect refused")
            }
        }
    });
}

/// Applies the call's effect (once per idempotency key; a repeat replays the first answer) and
/// answers it, unless `response_lost`: then the effect stays applied and the answer is a 500,
/// as when a response is lost on its way back.
fn apply_and_answer(
    app: &AppState,
    id: &CallId<'_>,
    call: &CallBody,
    response_lost: bool,
) -> Response {
    let outcome = match app.ledger.apply(id, &call.request) {
        Ok(outcome) => outcome,
        Err(reused) => return error(StatusCode::UNPROCESSABLE_ENTITY, reused.to_string()),
    };
    info!(
        transaction_id = %call.transaction_id,
        service = id.service,
        action = id.action,
        idempotency_key = %id.idempotency_key,
        effect = outcome.answer["effect"].as_str().unwrap_or_default(),
        replayed = outcome.replayed,
        "call answered"
    );
    if response_lost {
        app.ledger.record_fault(id);
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "response lost (injected, effect applied)",
        );
    }
    let mut response = (StatusCode::OK, axum::Json(outcome.answer)).into_response();
    if outcome.replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// Checks the body and headers against the route; the refusal is a status and a reason.
fn check_call(
    call: &CallBody,
    step: &Step,
    action: &str,
    expected_key: &str,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, String)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if call.step != step.name || call.action != action {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "body names step {} action {}, the endpoint is {} {action}",
                call.step, call.action, step.name
            ),
        ));
    }
    match header(CORRELATION_HEADER) {
        None => {
            return Err((
                StatusCode::BAD_REQUEST,
                "header X-Correlation-Id: missing".to_owned(),
            ));
        }
        Some(id) if id != call.transaction_id => {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("header X-Correlation-Id: {id} is not the body's transaction_id"),
            ));
        }
        Some(_) => {}
    }
    match header(IDEMPOTENCY_HEADER) {
        None => Err((
            StatusCode::BAD_REQUEST,
            "header Idempotency-Key: missing".to_owned(),
        )),
        Some(key) if key != expected_key => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("header Idempotency-Key: {key} is not {expected_key}"),
        )),
        Some(_) => Ok(()),
    }
}

/// Sleeps, unless the server stops first; returns whether the full time passed.
async fn sleep_unless_stopped(app: &AppState, duration: Duration) -> bool {
    let mut stopped = app.shutdown.clone();
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        _ = stopped.wait_for(|stop| *stop) => false,
    }
}

async fn read_ledger(State(app): State<AppState>) -> Response {
    axum::Json(app.ledger.snapshot()).into_response()
}

async fn read_transaction(
    State(app): State<AppState>,
    Path(transaction_id): Path<String>,
) -> Response {
    axum::Json(app.ledger.transaction(&transaction_id)).into_response()
}

async fn reset_ledger(State(app): State<AppState>) -> StatusCode {
    app.ledger.reset();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(app): State<AppState>) -> Response {
    axum::Json(app.faults.list()).into_response()
}

async fn add_fault(State(app): State<AppState>, body: Bytes) -> Response {
    let rule: FaultRule = match serde_json::from_slice(&body) {
        Ok(rule) => rule,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("fault rule: {e}")),
    };
    match app.faults.add(rule) {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn clear_faults(State(app): State<AppState>) -> StatusCode {
    app.faults.clear();
    StatusCode::NO_CONTENT
}
