//! A Lambda Runtime API of our own: runs a function's real `bootstrap` binary as local
//! processes and hands them invocations the way Lambda does.
//!
//! Each process is one "sandbox": it gets its own Runtime API listener on a loopback port
//! (`AWS_LAMBDA_RUNTIME_API`), so the API knows which process asks for work without any
//! cooperation from the binary. A process handles one invocation at a time; when every process
//! is busy and invocations wait, another one is started, up to the function's concurrency cap.
//! The function timeout is enforced from the moment an invocation is handed out: the process
//! is killed and the invocation answered with a `Sandbox.Timedout` error, and a fresh process
//! is started for the next invocation. Processes start on demand (cold starts), as on Lambda.
//!
//! Served per process: `GET /2018-06-01/runtime/invocation/next`,
//! `POST /2018-06-01/runtime/invocation/{id}/response`,
//! `POST /2018-06-01/runtime/invocation/{id}/error` and `POST /2018-06-01/runtime/init/error`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Notify, oneshot};

use crate::LocalError;
use crate::async_invoke::{AWS_RETRY_DELAYS, AsyncInvokeConfig};
use crate::logs::LogSink;
use crate::loopback::LoopbackServer;

/// Lambda's invocation payload limit (synchronous requests and responses), plus headroom for
/// the runtime client's framing.
pub const PAYLOAD_LIMIT_BYTES: usize = 6 * 1024 * 1024 + 64 * 1024;

/// What a function process needs to run: where the binary is and the function's configuration.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The function's name (as deployed).
    pub name: String,
    /// The function's ARN (`Lambda-Runtime-Invoked-Function-Arn`).
    pub arn: String,
    /// The `bootstrap` executable.
    pub bootstrap: PathBuf,
    /// The function's own environment variables (from its configuration).
    pub environment: BTreeMap<String, String>,
    /// The function timeout.
    pub timeout: Duration,
    /// Memory size in MB (reported to the function; not enforced).
    pub memory_mb: u32,
    /// How many processes may run at once (reserved concurrency, or a local cap).
    pub max_processes: usize,
    /// How asynchronous invocations are retried and where their failures go.
    pub asynchronous: AsyncInvokeConfig,
}

/// Settings shared by every function of a local environment.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// `AWS_REGION` of the functions.
    pub region: String,
    /// `AWS_ENDPOINT_URL` of the functions: the emulator, so their AWS calls stay local.
    pub endpoint_url: Option<String>,
    /// Where `<function>.log` files go.
    pub log_dir: PathBuf,
    /// How long a process may take to ask for its first invocation (Lambda's init limit).
    pub init_timeout: Duration,
    /// Notified whenever a process starts or exits (the supervisor rewrites its state file).
    pub changes: Option<Arc<Notify>>,
    /// Delays before the retries of a failed asynchronous invocation (the last one repeats).
    pub async_retry_delays: Vec<Duration>,
    /// Delivers the records of failed asynchronous invocations to SQS destinations.
    pub destinations: Option<aws_sdk_sqs::Client>,
}

impl RuntimeSettings {
    /// Settings with Lambda's 10-second init limit, Lambda's asynchronous retry delays, no
    /// destination client and no change notification.
    pub fn new(region: &str, endpoint_url: Option<String>, log_dir: PathBuf) -> RuntimeSettings {
        RuntimeSettings {
            region: region.to_owned(),
            endpoint_url,
            log_dir,
            init_timeout: Duration::from_secs(10),
            changes: None,
            async_retry_delays: AWS_RETRY_DELAYS.to_vec(),
            destinations: None,
        }
    }
}

/// The result of an invocation that reached the function.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeOutcome {
    /// The function's response payload.
    Success(Bytes),
    /// The function (or its sandbox) failed; as Lambda's Invoke answers with
    /// `X-Amz-Function-Error: Unhandled`.
    FunctionError(FunctionError),
}

/// A function error: its `errorType` and the JSON body `{"errorType", "errorMessage", ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionError {
    /// `errorType` (what Step Functions' Retry and Catch match on).
    pub error_type: String,
    /// The error document as JSON bytes.
    pub body: Bytes,
}

impl FunctionError {
    /// An error document built here (timeouts, crashes).
    pub fn new(error_type: &str, message: &str) -> FunctionError {
        let body = json!({"errorType": error_type, "errorMessage": message}).to_string();
        FunctionError {
            error_type: error_type.to_owned(),
            body: Bytes::from(body),
        }
    }

    /// The error a runtime posted: its body is kept as it is when it is a JSON object with an
    /// `errorType`; otherwise one is built from the `Lambda-Runtime-Function-Error-Type` header
    /// and the body as the message.
    pub fn from_runtime(body: Bytes, header_type: Option<&str>) -> FunctionError {
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body)
            && let Some(error_type) = object.get("errorType").and_then(Value::as_str)
        {
            return FunctionError {
                error_type: error_type.to_owned(),
                body,
            };
        }
        let error_type = header_type.filter(|t| !t.is_empty()).unwrap_or("Unhandled");
        FunctionError::new(error_type, &String::from_utf8_lossy(&body))
    }

    /// `errorMessage` of the body, if any.
    pub fn message(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()?
            .get("errorMessage")?
            .as_str()
            .map(str::to_owned)
    }
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Started, has not asked for an invocation yet.
    Initializing,
    /// Waiting for an invocation.
    Idle,
    /// Running an invocation.
    Busy,
}

/// A running process of a function, for status reports and the state file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessInfo {
    /// OS process id.
    pub pid: u32,
    /// Its Runtime API port.
    pub runtime_api_port: u16,
    /// What it is doing.
    pub phase: Phase,
}

/// A function served by local processes. Cheap to clone; [`LocalFunction::shutdown`] stops it.
#[derive(Debug, Clone)]
pub struct LocalFunction {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    spec: FunctionSpec,
    settings: RuntimeSettings,
    logs: LogSink,
    pool: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    /// Invocations no process has taken yet, oldest first.
    pending: VecDeque<Pending>,
    /// Processes blocked in `GET .../next`, with the channel that hands them an invocation.
    idle: VecDeque<(u64, oneshot::Sender<Delivery>)>,
    /// Invocations handed out and not answered, by request id.
    inflight: HashMap<String, Inflight>,
    processes: BTreeMap<u64, Process>,
    next_process: u64,
    stopping: bool,
}

#[derive(Debug)]
struct Pending {
    request_id: String,
    payload: Bytes,
    respond: oneshot::Sender<InvokeOutcome>,
}

#[derive(Debug)]
struct Inflight {
    process: u64,
    respond: oneshot::Sender<InvokeOutcome>,
    started: Instant,
}

#[derive(Debug)]
struct Process {
    pid: u32,
    port: u16,
    phase: Phase,
    init_error: Option<FunctionError>,
    /// Sending (or dropping) this kills the process.
    kill: Option<oneshot::Sender<()>>,
}

impl Pool {
    /// The invocation `request_id` taken out of the ones in flight, when `process` runs it.
    fn take_inflight(&mut self, request_id: &str, process: u64) -> Option<Inflight> {
        let owned = self
            .inflight
            .get(request_id)
            .is_some_and(|f| f.process == process);
        if owned {
            self.inflight.remove(request_id)
        } else {
            None
        }
    }
}

impl Process {
    /// Has the process killed (once; later calls do nothing).
    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

#[derive(Debug)]
struct Delivery {
    request_id: String,
    payload: Bytes,
    deadline_ms: u64,
}

impl LocalFunction {
    /// Prepares a function; its first invocation starts its first process.
    pub fn new(spec: FunctionSpec, settings: RuntimeSettings) -> Result<LocalFunction, LocalError> {
        let logs = LogSink::open(&settings.log_dir, &spec.name)?;
        Ok(LocalFunction {
            inner: Arc::new(Inner {
                spec,
                settings,
                logs,
                pool: Mutex::new(Pool::default()),
            }),
        })
    }

    /// The function's configuration.
    pub fn spec(&self) -> &FunctionSpec {
        &self.inner.spec
    }

    /// The settings it runs with.
    pub(crate) fn settings(&self) -> &RuntimeSettings {
        &self.inner.settings
    }

    /// The function's log file.
    pub fn log_path(&self) -> PathBuf {
        self.inner.logs.path().to_path_buf()
    }

    /// Its running processes.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        let pool = self.inner.lock();
        pool.processes
            .values()
            .map(|p| ProcessInfo {
                pid: p.pid,
                runtime_api_port: p.port,
                phase: p.phase,
            })
            .collect()
    }

    /// Invokes the function synchronously (RequestResponse) and waits for its outcome, which
    /// arrives at the latest when the function timeout kills the process.
    pub async fn invoke(&self, payload: Bytes) -> Result<InvokeOutcome, LocalError> {
        let (respond, outcome) = oneshot::channel();
        {
            let mut pool = self.inner.lock();
            if pool.stopping {
                return Err(self.unavailable("the local runtime is stopping"));
            }
            let pending = Pending {
                request_id: new_request_id(),
                payload,
                respond,
            };
            self.inner.dispatch(&mut pool, pending);
        }
        outcome
            .await
            .map_err(|_| self.unavailable("the local runtime stopped before the invocation ended"))
    }

    /// Stops every process of the function (they are killed, as Lambda does with sandboxes) and
    /// fails the invocations still waiting; returns once all processes have exited.
    pub async fn shutdown(&self) {
        {
            let mut pool = self.inner.lock();
            pool.stopping = true;
            // Dropping the senders fails the waiting invocations and the idle `next` requests.
            pool.pending.clear();
            pool.idle.clear();
            pool.inflight.clear();
            for process in pool.processes.values_mut() {
                process.kill();
            }
        }
        while !self.inner.lock().processes.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn unavailable(&self, reason: &str) -> LocalError {
        LocalError::Unavailable {
            function: self.inner.spec.name.clone(),
            reason: reason.to_owned(),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Hands an invocation to an idle process, or queues it and starts a process if allowed.
    fn dispatch(self: &Arc<Self>, pool: &mut Pool, pending: Pending) {
        while let Some((process, waiter)) = pool.idle.pop_front() {
            let delivery = self.delivery(&pending);
            // A waiter whose connection went away (its process died) is skipped.
            if waiter.send(delivery).is_ok() {
                self.assign(pool, process, pending);
                return;
            }
        }
        pool.pending.push_back(pending);
        self.scale(pool);
    }

    fn delivery(&self, pending: &Pending) -> Delivery {
        Delivery {
            request_id: pending.request_id.clone(),
            payload: pending.payload.clone(),
            deadline_ms: epoch_millis() + self.spec.timeout.as_millis() as u64,
        }
    }

    /// Records that `process` runs `pending` and arms the function timeout for it.
    fn assign(self: &Arc<Self>, pool: &mut Pool, process: u64, pending: Pending) {
        let request_id = pending.request_id;
        if let Some(entry) = pool.processes.get_mut(&process) {
            entry.phase = Phase::Busy;
        }
        pool.inflight.insert(
            request_id.clone(),
            Inflight {
                process,
                respond: pending.respond,
                started: Instant::now(),
            },
        );
        self.logs.platform(
            "platform.start",
            json!({"requestId": request_id, "functionArn": self.spec.arn, "version": "$LATEST"}),
        );
        let inner = Arc::clone(self);
        let timeout = self.spec.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            inner.timed_out(&request_id, process);
        });
    }

    /// Starts processes while invocations wait for more processes than are starting.
    fn scale(self: &Arc<Self>, pool: &mut Pool) {
        if pool.stopping {
            return;
        }
        let mut starting = pool
            .processes
            .values()
            .filter(|p| p.phase == Phase::Initializing)
            .count();
        while pool.pending.len() > starting && pool.processes.len() < self.spec.max_processes {
            match self.spawn_process(pool) {
                Ok(()) => starting += 1,
                Err(error) => {
                    // Without a process the oldest invocation can never run: fail it rather
                    // than leave the caller waiting forever.
                    tracing::error!(function = %self.spec.name, %error, "cannot start a process");
                    if let Some(pending) = pool.pending.pop_front() {
                        let failure = FunctionError::new("Runtime.Unknown", &error.to_string());
                        let _ = pending.respond.send(InvokeOutcome::FunctionError(failure));
                    }
                    return;
                }
            }
        }
    }

    /// Starts one more process: its own Runtime API server, then the bootstrap pointed at it.
    fn spawn_process(self: &Arc<Self>, pool: &mut Pool) -> Result<(), LocalError> {
        let id = pool.next_process;
        let server = LoopbackServer::serve(
            0,
            &format!("the Runtime API of {}", self.spec.name),
            runtime_api(Arc::clone(self), id),
        )?;
        let port = server.port();
        pool.next_process += 1;
        let mut child = self.start_bootstrap(port, id)?;
        let pid = child.id().unwrap_or_default();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(pump_lines(stdout, "stdout", self.logs.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(pump_lines(stderr, "stderr", self.logs.clone()));
        }
        let (kill, killed) = oneshot::channel::<()>();
        pool.processes.insert(
            id,
            Process {
                pid,
                port,
                phase: Phase::Initializing,
                init_error: None,
                kill: Some(kill),
            },
        );
        tracing::debug!(function = %self.spec.name, pid, port, "process started");
        self.watch_process(id, child, server, killed);
        self.notify_changes();
        Ok(())
    }

    /// Runs the bootstrap as process `process`, talking to the Runtime API on `port`, with its
    /// output piped to the function log.
    fn start_bootstrap(
        &self,
        port: u16,
        process: u64,
    ) -> Result<tokio::process::Child, LocalError> {
        let mut command = tokio::process::Command::new(&self.spec.bootstrap);
        command
            .env_clear()
            .envs(self.process_environment(port, process))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The child stays in the supervisor's process group (no process_group call), so a
            // stop by process group reaches it; kill_on_drop covers an in-process runtime that
            // is dropped without a shutdown (a test that panics).
            .kill_on_drop(true);
        if let Some(dir) = self
            .spec
            .bootstrap
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            command.current_dir(dir);
        }
        command.spawn().map_err(|source| LocalError::Spawn {
            function: self.spec.name.clone(),
            path: self.spec.bootstrap.clone(),
            source,
        })
    }

    /// Waits for `process` to exit — by itself, or killed when `killed` fires — then stops its
    /// Runtime API `server` and settles what it left; and fails its init when it takes too long.
    fn watch_process(
        self: &Arc<Self>,
        process: u64,
        mut child: tokio::process::Child,
        server: LoopbackServer,
        killed: oneshot::Receiver<()>,
    ) {
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                // Sent or dropped: either way the process must go.
                _ = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            drop(server);
            inner.process_exited(process, status);
        });
        let inner = Arc::clone(self);
        let init_timeout = self.settings.init_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(init_timeout).await;
            inner.init_timed_out(process);
        });
    }

    /// The process environment: the function's variables, then the ones Lambda reserves
    /// (which a function cannot override there either). Nothing is inherited from the
    /// supervisor, so real credentials never reach a local function.
    fn process_environment(&self, port: u16, process: u64) -> BTreeMap<String, String> {
        let mut env = self.spec.environment.clone();
        let task_root = self
            .spec
            .bootstrap
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let (year, month, day) = crate::logs::civil_from_days((epoch_millis() / 86_400_000) as i64);
        let reserved = [
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
            ("LANG", "en_US.UTF-8".to_owned()),
            ("TZ", ":UTC".to_owned()),
            ("LAMBDA_TASK_ROOT", task_root.clone()),
            ("LAMBDA_RUNTIME_DIR", task_root),
            ("_HANDLER", "bootstrap".to_owned()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
            ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}")),
            ("AWS_LAMBDA_FUNCTION_NAME", self.spec.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.spec.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.spec.name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("{year:04}/{month:02}/{day:02}/[$LATEST]local{process:08x}"),
            ),
            ("AWS_REGION", self.settings.region.clone()),
            ("AWS_DEFAULT_REGION", self.settings.region.clone()),
            // The emulator accepts any credentials; these keep the SDK's chain from looking
            // for real ones.
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_SESSION_TOKEN", "testing".to_owned()),
        ];
        for (key, value) in reserved {
            env.insert(key.to_owned(), value);
        }
        if let Some(endpoint) = &self.settings.endpoint_url {
            env.insert("AWS_ENDPOINT_URL".to_owned(), endpoint.clone());
        }
        env
    }

    /// `GET .../invocation/next`: the next invocation for `process`, waiting if there is none.
    async fn next_invocation(self: &Arc<Self>, process: u64) -> Response {
        let waiting = {
            let mut pool = self.lock();
            if pool.stopping {
                return gone();
            }
            let Some(entry) = pool.processes.get_mut(&process) else {
                return gone();
            };
            entry.phase = Phase::Idle;
            if let Some(pending) = pool.pending.pop_front() {
                let delivery = self.delivery(&pending);
                self.assign(&mut pool, process, pending);
                return self.delivery_response(delivery);
            }
            let (sender, receiver) = oneshot::channel();
            pool.idle.push_back((process, sender));
            receiver
        };
        match waiting.await {
            Ok(delivery) => self.delivery_response(delivery),
            Err(_) => gone(),
        }
    }

    fn delivery_response(&self, delivery: Delivery) -> Response {
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        put("lambda-runtime-aws-request-id", &delivery.request_id);
        put(
            "lambda-runtime-deadline-ms",
            &delivery.deadline_ms.to_string(),
        );
        put("lambda-runtime-invoked-function-arn", &self.spec.arn);
        put("lambda-runtime-trace-id", &new_trace_id());
        put("content-type", "application/json");
        (StatusCode::OK, headers, delivery.payload).into_response()
    }

    /// `POST .../response` and `POST .../error`: ends an invocation of `process`.
    fn finish(&self, process: u64, request_id: &str, outcome: InvokeOutcome) -> Response {
        let mut pool = self.lock();
        let Some(inflight) = pool.take_inflight(request_id, process) else {
            // Unknown, already answered (timed out) or someone else's.
            return runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "unknown or finished request id",
            );
        };
        let status = match &outcome {
            InvokeOutcome::Success(_) => "success",
            InvokeOutcome::FunctionError(_) => "error",
        };
        self.report(request_id, inflight.started, status);
        let _ = inflight.respond.send(outcome);
        accepted()
    }

    /// `POST .../init/error`: the process could not initialise; Lambda discards the sandbox.
    fn init_failed(&self, process: u64, error: FunctionError) -> Response {
        let mut pool = self.lock();
        if let Some(entry) = pool.processes.get_mut(&process) {
            entry.init_error = Some(error);
            entry.kill();
        }
        accepted()
    }

    fn timed_out(&self, request_id: &str, process: u64) {
        let mut pool = self.lock();
        let Some(inflight) = pool.take_inflight(request_id, process) else {
            return;
        };
        let message = format!(
            "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
            self.spec.timeout.as_secs_f64()
        );
        self.report(request_id, inflight.started, "timeout");
        let _ = inflight
            .respond
            .send(InvokeOutcome::FunctionError(FunctionError::new(
                "Sandbox.Timedout",
                &message,
            )));
        if let Some(entry) = pool.processes.get_mut(&process) {
            entry.kill();
        }
    }

    fn init_timed_out(&self, process: u64) {
        let mut pool = self.lock();
        if let Some(entry) = pool.processes.get_mut(&process)
            && entry.phase == Phase::Initializing
        {
            let message = format!(
                "Error: the function did not finish its init within {:.2} seconds",
                self.settings.init_timeout.as_secs_f64()
            );
            entry.init_error = Some(FunctionError::new("Sandbox.Timedout", &message));
            entry.kill();
        }
    }

    fn process_exited(self: &Arc<Self>, process: u64, status: std::io::Result<ExitStatus>) {
        let mut pool = self.lock();
        let Some(entry) = pool.processes.remove(&process) else {
            return;
        };
        pool.idle.retain(|(id, _)| *id != process);
        let exit = match status {
            Ok(status) => status.to_string(),
            Err(e) => format!("unknown exit: {e}"),
        };
        tracing::debug!(function = %self.spec.name, pid = entry.pid, %exit, "process exited");
        let orphaned: Vec<String> = pool
            .inflight
            .iter()
            .filter(|(_, f)| f.process == process)
            .map(|(id, _)| id.clone())
            .collect();
        for request_id in orphaned {
            let inflight = pool.inflight.remove(&request_id).expect("listed above");
            self.report(&request_id, inflight.started, "error");
            let message =
                format!("RequestId: {request_id} Error: Runtime exited with error: {exit}");
            let failure = FunctionError::new("Runtime.ExitError", &message);
            let _ = inflight.respond.send(InvokeOutcome::FunctionError(failure));
        }
        if entry.phase == Phase::Initializing && !pool.stopping {
            // The process died before asking for work. The oldest waiting invocation gets the
            // init failure, as the invocation that caused a cold start does on Lambda, so a
            // broken binary fails requests instead of being restarted forever.
            if let Some(pending) = pool.pending.pop_front() {
                let failure = entry.init_error.unwrap_or_else(|| {
                    FunctionError::new(
                        "Runtime.ExitError",
                        &format!("Error: Runtime exited during init: {exit}"),
                    )
                });
                let _ = pending.respond.send(InvokeOutcome::FunctionError(failure));
            }
        }
        self.scale(&mut pool);
        drop(pool);
        self.notify_changes();
    }

    fn report(&self, request_id: &str, started: Instant, status: &str) {
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.logs.platform(
            "platform.report",
            json!({
                "requestId": request_id,
                "status": status,
                "metrics": {"durationMs": (duration_ms * 100.0).round() / 100.0},
            }),
        );
    }

    fn notify_changes(&self) {
        if let Some(changes) = &self.settings.changes {
            changes.notify_one();
        }
    }
}

fn runtime_api(inner: Arc<Inner>, process: u64) -> Router {
    Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            get(
                |State((inner, process)): State<(Arc<Inner>, u64)>| async move {
                    inner.next_invocation(process).await
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(
                |State((inner, process)): State<(Arc<Inner>, u64)>,
                 Path(request_id): Path<String>,
                 body: Bytes| async move {
                    inner.finish(process, &request_id, InvokeOutcome::Success(body))
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(
                |State((inner, process)): State<(Arc<Inner>, u64)>,
                 Path(request_id): Path<String>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let error = FunctionError::from_runtime(body, error_type_header(&headers));
                    inner.finish(process, &request_id, InvokeOutcome::FunctionError(error))
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(
                |State((inner, process)): State<(Arc<Inner>, u64)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let error = FunctionError::from_runtime(body, error_type_header(&headers));
                    inner.init_failed(process, error)
                },
            ),
        )
        .with_state((inner, process))
}

/// The Runtime API's answer to a report it took.
fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn error_type_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errorType": error_type, "errorMessage": message})),
    )
        .into_response()
}

/// The answer to a `next` request of a process that is being stopped; the runtime client
/// treats it as fatal and exits.
fn gone() -> Response {
    runtime_error(
        StatusCode::GONE,
        "Runtime.Shutdown",
        "the local runtime is stopping this process",
    )
}

async fn pump_lines(stream: impl AsyncRead + Unpin, name: &'static str, logs: LogSink) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        logs.process_line(name, &line);
    }
}

fn epoch_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A request id in Lambda's UUID form.
pub(crate) fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An X-Ray trace header of the `Root=1-<epoch hex>-<24 hex>` form.
fn new_trace_id() -> String {
    let seconds = epoch_millis() / 1000;
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("Root=1-{seconds:08x}-{};Sampled=0", &random[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_error_keeps_the_posted_document_and_its_type() {
        let body = Bytes::from_static(br#"{"errorType":"Retryable","errorMessage":"later"}"#);
        let error = FunctionError::from_runtime(body.clone(), Some("unhandled"));
        assert_eq!(error.error_type, "Retryable");
        assert_eq!(error.body, body);
        assert_eq!(error.message().as_deref(), Some("later"));
    }

    #[test]
    fn runtime_error_without_a_document_uses_the_header_type() {
        let error = FunctionError::from_runtime(Bytes::from_static(b"boom"), Some("Custom"));
        assert_eq!(error.error_type, "Custom");
        assert_eq!(error.message().as_deref(), Some("boom"));
        let error = FunctionError::from_runtime(Bytes::from_static(b"boom"), None);
        assert_eq!(error.error_type, "Unhandled");
    }

    #[test]
    fn trace_id_has_the_xray_root_shape() {
        let trace = new_trace_id();
        let root = trace.strip_prefix("Root=1-").unwrap();
        let (time, rest) = root.split_once('-').unwrap();
        assert_eq!(time.len(), 8);
        assert_eq!(rest.split(';').next().unwrap().len(), 24);
    }
}
