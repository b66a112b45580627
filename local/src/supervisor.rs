//! The local environment of one deployed stack, started in-process ([`LocalEnvironment::start`],
//! for tests and for the `sagaform-local up` binary alike): the functions under the local
//! Runtime API, the Invoke API (registered with moto so Step Functions Tasks reach it), the HTTP
//! API and the SQS pollers, plus the state file that status and stop read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::LocalError;
use crate::discovery::{self, DeployedFunction, DeployedStack};
use crate::event_source;
use crate::http_api::HttpApi;
use crate::invoke_api::{Functions, InvokeApi};
use crate::logs::now_rfc3339;
use crate::moto_forward;
use crate::runtime::{FunctionSpec, LocalFunction, RuntimeSettings};
use crate::state::{self, FunctionState, LocalState, ProcessState};

/// Processes per function when the function has no reserved concurrency: enough to show
/// concurrency effects on a 2-core machine without starving the emulator.
pub const DEFAULT_MAX_PROCESSES: usize = 4;

/// How long a previous supervisor gets to stop by itself before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The deployed stack, e.g. `sagaform-sqs-local`.
    pub stack_name: String,
    /// The emulator endpoint, e.g. `http://127.0.0.1:5000`.
    pub moto_endpoint: String,
    /// Region of the stack.
    pub region: String,
    /// Folder of the state file, the extracted binaries (`functions/<name>/bootstrap`) and the
    /// logs (`logs/<name>.log`), e.g. `.local/sqs`.
    pub state_dir: PathBuf,
    /// Template to read routes and code locations from instead of the deployed one.
    pub template: Option<PathBuf>,
    /// Bootstrap executables to run instead of the code in the artifact bucket, by function
    /// name, logical id or role (`api`, `worker`, `step`).
    pub bootstraps: BTreeMap<String, PathBuf>,
    /// HTTP API port (0: any free port).
    pub api_port: u16,
    /// Invoke API port (0: any free port).
    pub invoke_port: u16,
    /// Process cap of a function without reserved concurrency (reserved concurrency is also
    /// capped by it).
    pub max_processes: usize,
    /// Delays before the retries of failed asynchronous invocations; `None`: Lambda's (one
    /// minute, then two).
    pub async_retry_delays: Option<Vec<Duration>>,
}

impl UpOptions {
    /// Options for the stack of `pattern` in `env` (`sagaform-<pattern>-<env>`), with the state
    /// in `state_dir` and every other setting at its default.
    pub fn for_pattern(
        pattern: &str,
        env: &str,
        moto_endpoint: &str,
        state_dir: PathBuf,
    ) -> UpOptions {
        UpOptions {
            stack_name: format!("sagaform-{pattern}-{env}"),
            moto_endpoint: moto_endpoint.to_owned(),
            region: "us-east-1".to_owned(),
            state_dir,
            template: None,
            bootstraps: BTreeMap::new(),
            api_port: 0,
            invoke_port: 0,
            max_processes: DEFAULT_MAX_PROCESSES,
            async_retry_delays: None,
        }
    }
}

/// A running local environment. Call [`LocalEnvironment::shutdown`] to stop it; dropping it
/// kills the function processes but leaves the state file and moto's registration behind.
#[derive(Debug)]
pub struct LocalEnvironment {
    options: UpOptions,
    stack: DeployedStack,
    functions: Functions,
    roles: BTreeMap<String, Option<String>>,
    invoke_api: InvokeApi,
    http_api: Option<HttpApi>,
    invoke_forwarding: bool,
    pollers: Vec<tokio::task::JoinHandle<()>>,
    stop_pollers: watch::Sender<bool>,
    state_writer: tokio::task::JoinHandle<()>,
    started_at: String,
}

impl LocalEnvironment {
    /// Stops what a previous run left in `options.state_dir` (by PID, see [`state::stop`]),
    /// reads the stack from the emulator, and starts serving it.
    pub async fn start(options: UpOptions) -> Result<LocalEnvironment, LocalError> {
        stop_previous(&options).await?;
        let sdk = discovery::emulator_config(&options.moto_endpoint, &options.region).await;
        let stack =
            discovery::discover(&sdk, &options.stack_name, options.template.as_deref()).await?;

        let changes = Arc::new(Notify::new());
        let settings = runtime_settings(&options, &sdk, &changes);
        let (functions, roles) = local_functions(&stack, &options, &settings, &sdk).await?;
        let invoke_api = InvokeApi::serve(functions.clone(), options.invoke_port).await?;
        let http_api = if stack.routes.is_empty() {
            None
        } else {
            Some(HttpApi::serve(stack.routes.clone(), functions.clone(), options.api_port).await?)
        };
        let invoke_forwarding =
            register_invoke_forwarding(&options, &stack, &functions, &invoke_api).await?;
        let (stop_pollers, stop) = watch::channel(false);
        let pollers = spawn_pollers(&stack, &functions, &sdk, &options.region, &stop);

        let mut environment = LocalEnvironment {
            options,
            stack,
            functions,
            roles,
            invoke_api,
            http_api,
            invoke_forwarding,
            pollers,
            stop_pollers,
            state_writer: tokio::spawn(async {}),
            started_at: now_rfc3339(),
        };
        environment.write_state()?;
        environment.state_writer = environment.spawn_state_writer(changes);
        Ok(environment)
    }

    /// The HTTP API base URL (where the stack's `ApiUrl` points on AWS), if it has routes.
    pub fn api_url(&self) -> Option<String> {
        self.http_api.as_ref().map(HttpApi::url)
    }

    /// The Invoke API base URL.
    pub fn invoke_url(&self) -> String {
        self.invoke_api.url()
    }

    /// The functions served.
    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    /// The stack as discovered.
    pub fn stack(&self) -> &DeployedStack {
        &self.stack
    }

    /// What the state file says now.
    pub fn state(&self) -> LocalState {
        snapshot(&self.state_inputs())
    }

    fn state_inputs(&self) -> StateInputs {
        StateInputs {
            started_at: self.started_at.clone(),
            stack: self.stack.clone(),
            moto_endpoint: self.options.moto_endpoint.clone(),
            api_url: self.api_url(),
            invoke_url: self.invoke_url(),
            invoke_forwarding: self.invoke_forwarding,
            log_dir: self.options.state_dir.join("logs"),
            functions: self.functions.clone(),
            roles: self.roles.clone(),
        }
    }

    fn write_state(&self) -> Result<(), LocalError> {
        self.state().write(&self.options.state_dir)
    }

    fn spawn_state_writer(&self, changes: Arc<Notify>) -> tokio::task::JoinHandle<()> {
        let inputs = self.state_inputs();
        let state_dir = self.options.state_dir.clone();
        tokio::spawn(async move {
            loop {
                changes.notified().await;
                // Coalesces a burst of process starts into one write.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Err(error) = snapshot(&inputs).write(&state_dir) {
                    tracing::warn!(%error, "cannot update the state file");
                }
            }
        })
    }

    /// Stops the pollers, the function processes and the servers, unregisters from moto and
    /// removes the state file.
    pub async fn shutdown(self) -> Result<(), LocalError> {
        let _ = self.stop_pollers.send(true);
        for poller in &self.pollers {
            poller.abort();
        }
        if self.invoke_forwarding
            && let Err(error) =
                moto_forward::unregister(&self.options.moto_endpoint, &self.invoke_url()).await
        {
            tracing::warn!(%error, "cannot unregister from moto");
        }
        self.functions.shutdown().await;
        self.state_writer.abort();
        // Waiting for the aborted writer keeps a last write from re-creating the file below.
        let _ = self.state_writer.await;
        let path = LocalState::path(&self.options.state_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LocalError::io("remove", &path)(e)),
        }
    }
}

/// Stops what a previous run left in the state folder.
async fn stop_previous(options: &UpOptions) -> Result<(), LocalError> {
    let state_dir = options.state_dir.clone();
    // Stopping waits (up to the grace period) on another process: off the async threads.
    let stale = tokio::task::spawn_blocking(move || state::stop(&state_dir, STOP_GRACE))
        .await
        .map_err(|e| LocalError::State {
            path: LocalState::path(&options.state_dir),
            reason: format!("stopping the previous instance did not complete: {e}"),
        })??;
    if stale.supervisor.is_some() || !stale.processes.is_empty() {
        tracing::info!(?stale, "stopped the previous local environment");
    }
    Ok(())
}

/// The settings every function runs with: the emulator as endpoint, logs in the state folder,
/// `changes` told of process starts and exits, SQS for on-failure destinations.
fn runtime_settings(
    options: &UpOptions,
    sdk: &aws_config::SdkConfig,
    changes: &Arc<Notify>,
) -> RuntimeSettings {
    let log_dir = options.state_dir.join("logs");
    let mut settings = RuntimeSettings::new(
        &options.region,
        Some(options.moto_endpoint.clone()),
        log_dir,
    );
    settings.changes = Some(Arc::clone(changes));
    settings.destinations = Some(aws_sdk_sqs::Client::new(sdk));
    if let Some(delays) = &options.async_retry_delays {
        settings.async_retry_delays = delays.clone();
    }
    settings
}

/// The local functions of the stack, each with its bootstrap and process cap, and their roles
/// by name.
async fn local_functions(
    stack: &DeployedStack,
    options: &UpOptions,
    settings: &RuntimeSettings,
    sdk: &aws_config::SdkConfig,
) -> Result<(Functions, BTreeMap<String, Option<String>>), LocalError> {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    let mut local_functions = Vec::new();
    let mut roles = BTreeMap::new();
    for function in &stack.functions {
        let bootstrap = bootstrap_for(function, options, &s3).await?;
        let max_processes = function
            .reserved_concurrency
            .map_or(options.max_processes, |reserved| reserved as usize)
            .clamp(1, options.max_processes.max(1));
        let spec = FunctionSpec {
            name: function.name.clone(),
            arn: function.arn.clone(),
            bootstrap,
            environment: function.environment.clone(),
            timeout: function.timeout,
            memory_mb: function.memory_mb,
            max_processes,
            asynchronous: function.asynchronous.clone(),
        };
        roles.insert(function.name.clone(), function.role.clone());
        local_functions.push(LocalFunction::new(spec, settings.clone())?);
    }
    Ok((Functions::new(local_functions), roles))
}

/// Has moto forward Lambda invokes of the functions to the Invoke API; returns whether it
/// does. A stack with state machines cannot run without it (its Tasks invoke through moto),
/// so there a failure stops the functions and is an error; elsewhere it is a warning.
async fn register_invoke_forwarding(
    options: &UpOptions,
    stack: &DeployedStack,
    functions: &Functions,
    invoke_api: &InvokeApi,
) -> Result<bool, LocalError> {
    let names: Vec<String> = functions.iter().map(|f| f.spec().name.clone()).collect();
    match moto_forward::register(&options.moto_endpoint, &invoke_api.url(), Some(names)).await {
        Ok(()) => Ok(true),
        Err(error) if stack.state_machines > 0 => {
            functions.shutdown().await;
            Err(error)
        }
        Err(error) => {
            tracing::warn!(%error, "Lambda invokes through moto will not reach local functions");
            Ok(false)
        }
    }
}

/// One set of pollers per SQS event source mapping of a served function, until `stop`.
fn spawn_pollers(
    stack: &DeployedStack,
    functions: &Functions,
    sdk: &aws_config::SdkConfig,
    region: &str,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut pollers = Vec::new();
    for mapping in &stack.mappings {
        let Some(function) = functions.resolve(&mapping.function) else {
            continue;
        };
        pollers.extend(event_source::spawn_pollers(
            mapping.clone(),
            sqs.clone(),
            function.clone(),
            region.to_owned(),
            stop.clone(),
        ));
    }
    pollers
}

/// Starts the local environment and serves it until SIGTERM or SIGINT, then stops it. `ready`
/// is called with the state once everything listens (the binary prints it).
pub async fn run(options: UpOptions, ready: impl FnOnce(&LocalState)) -> Result<(), LocalError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(LocalError::io("listen for", "SIGTERM"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(LocalError::io("listen for", "SIGINT"))?;
    let environment = LocalEnvironment::start(options).await?;
    ready(&environment.state());
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    environment.shutdown().await
}

/// Finds the executable of a function: a given path (by name, logical id or role), else its
/// code from the artifact bucket.
async fn bootstrap_for(
    function: &DeployedFunction,
    options: &UpOptions,
    s3: &aws_sdk_s3::Client,
) -> Result<PathBuf, LocalError> {
    let keys = [
        Some(function.name.as_str()),
        Some(function.logical_id.as_str()),
        function.role.as_deref(),
    ];
    if let Some(path) = keys
        .into_iter()
        .flatten()
        .find_map(|key| options.bootstraps.get(key))
    {
        return Ok(path.clone());
    }
    let Some(code) = &function.code else {
        return Err(LocalError::Template {
            source_name: format!("stack {}", options.stack_name),
            key: format!("{}.Properties.Code", function.logical_id),
            reason: "no S3Bucket/S3Key to fetch the code from, and no bootstrap path was given"
                .to_owned(),
        });
    };
    let dir = options.state_dir.join("functions").join(&function.name);
    discovery::fetch_bootstrap(s3, code, &dir).await
}

#[derive(Debug, Clone)]
struct StateInputs {
    started_at: String,
    stack: DeployedStack,
    moto_endpoint: String,
    api_url: Option<String>,
    invoke_url: String,
    invoke_forwarding: bool,
    log_dir: PathBuf,
    functions: Functions,
    roles: BTreeMap<String, Option<String>>,
}

fn snapshot(inputs: &StateInputs) -> LocalState {
    let pid = std::process::id();
    let functions = inputs
        .functions
        .iter()
        .map(|function| FunctionState {
            name: function.spec().name.clone(),
            role: inputs.roles.get(&function.spec().name).cloned().flatten(),
            bootstrap: function.spec().bootstrap.clone(),
            log: function.log_path(),
            timeout_seconds: function.spec().timeout.as_secs(),
            max_processes: function.spec().max_processes,
            processes: function
                .processes()
                .into_iter()
                .filter_map(|p| {
                    Some(ProcessState {
                        pid: p.pid,
                        start_ticks: state::process_start_ticks(p.pid)?,
                        runtime_api_port: p.runtime_api_port,
                    })
                })
                .collect(),
        })
        .collect();
    LocalState {
        pid,
        pid_start_ticks: state::process_start_ticks(pid).unwrap_or_default(),
        started_at: inputs.started_at.clone(),
        stack_name: inputs.stack.stack_name.clone(),
        moto_endpoint: inputs.moto_endpoint.clone(),
        api_url: inputs.api_url.clone(),
        invoke_url: inputs.invoke_url.clone(),
        invoke_forwarding: inputs.invoke_forwarding,
        log_dir: inputs.log_dir.clone(),
        functions,
        routes: inputs.stack.routes.clone(),
        event_source_mappings: inputs.stack.mappings.clone(),
    }
}
