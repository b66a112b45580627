//! End-to-end harness of sagaform: one pattern deployed exactly as `cargo xtask deploy --env
//! local` deploys it — the synthesized template, the real function packages (a host build in
//! the dev profile), CloudFormation on the emulator — then run as the local environment runs it: the
//! `sagaform-local` supervisor executing the bootstrap binaries, the fake SaaS they call, and
//! the HTTP API on a loopback port. Everything is private to one [`LocalDeployment`] (its own moto,
//! fake SaaS port, scratch copy of `env/` and `templates/`, database), so stacks run side by
//! side and leave nothing behind.
//!
//! The end-to-end tests (`e2e/tests/`) and the soak benchmark (`cargo xtask bench soak`) drive
//! it over HTTP only: they submit purchases and read statuses through the API, inject faults
//! and read the ledger through the fake SaaS's control endpoints. Nothing here looks inside the
//! functions or their store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sagaform_contract::template::outputs;
use sagaform_deploy::confirm::AssumeYes;
use sagaform_deploy::deploy::{DeployOptions, deploy_pattern};
use sagaform_deploy::{Artifact, ConnectOptions, PatternEnv, Progress, Session, Workspace};
use sagaform_deploy::{build, host_build};
use sagaform_fake_saas::FakeSaas;
use sagaform_local::services;
use sagaform_local::{LocalDatabase, LocalEnv, LocalEnvironment};
use sagaform_ops::dlq::{DeadLetterQueue, Dlq, Redrive};
use sagaform_saga::PURCHASE;
use sagaform_stacks::Pattern;
use sagaform_stacks::config::{self, EnvConfig, FunctionRole, StoreKind};
use sagaform_stacks::synth::{self, Selection};
use serde_json::{Value, json};

/// The SaaS address of the checkout's `env/local.toml`, replaced by each stack's own fake.
const CHECKOUT_SAAS_ADDRESS: &str = "http://127.0.0.1:9320";

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// Building, deploying or the local services failed.
    #[error(transparent)]
    Deploy(#[from] sagaform_deploy::DeployError),
    /// The local supervisor failed.
    #[error(transparent)]
    Local(#[from] sagaform_local::LocalError),
    /// Setting up the emulator, the fake SaaS, the scratch copy or the database failed.
    #[error("set-up: {0}")]
    Setup(String),
    /// An HTTP call to the API or the fake SaaS failed.
    #[error("http: {0}")]
    Http(String),
    /// Something did not happen in time.
    #[error("timeout: {0}")]
    Timeout(String),
}

/// Builds the three function packages (api, worker, step) once, as `cargo xtask deploy --env
/// local` builds them: a host build in the dev profile, which reuses what the tests compiled.
pub fn build_functions(progress: &Progress) -> Result<Vec<Artifact>, E2eError> {
    let functions: Vec<String> = FunctionRole::ALL
        .iter()
        .map(|r| r.name().to_owned())
        .collect();
    Ok(host_build::build_local_functions(
        &Workspace::current(),
        &functions,
        progress,
    )?)
}

/// An HTTP answer: status, headers (lower-case names) and the JSON body (`Null` when empty or
/// not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Value,
}

impl Reply {
    /// The `transaction_id` of the body.
    pub fn transaction_id(&self) -> Option<&str> {
        self.body.get("transaction_id").and_then(Value::as_str)
    }

    /// The saga `status` of the body.
    pub fn saga_status(&self) -> Option<&str> {
        self.body.get("status").and_then(Value::as_str)
    }
}

/// A purchase request body, varied by `n` so every saga is its own.
pub fn purchase(n: u64) -> Value {
    json!({
        "player_id": format!("player-{n}"),
        "item_id": "sword-of-testing",
        "quantity": 1 + n % 3,
        "amount_minor": 100 + n,
        "currency": "EUR",
    })
}

/// The saga statuses nothing changes without a human: the finished ones, and IN_DOUBT (parked
/// until an operator asks the in-doubt call again).
pub const TERMINAL: [&str; 4] = [
    "COMPLETED",
    "COMPENSATED",
    "COMPENSATION_FAILED",
    "IN_DOUBT",
];

/// One pattern deployed on its own emulator and served locally.
pub struct LocalDeployment {
    /// The pattern.
    pub pattern: Pattern,
    /// Its state store.
    pub store: StoreKind,
    /// The local HTTP API base URL.
    pub api_url: String,
    /// The fake SaaS base URL.
    pub fake_saas_url: String,
    /// The stack outputs.
    pub outputs: BTreeMap<String, String>,
    http: reqwest::Client,
    sdk: aws_config::SdkConfig,
    moto_endpoint: String,
    environment: Option<LocalEnvironment>,
    fake_saas: Option<FakeSaas>,
    database: Option<LocalDatabase>,
    env: EnvConfig,
    scratch: PathBuf,
    // Declared last: its emulator outlives everything that talks to it.
    local: LocalEnv,
}

impl LocalDeployment {
    /// Deploys `pattern` with `store` (the env's default store when `None`) from a scratch copy
    /// of the checkout's `env/` and `templates/` to a fresh emulator, with the given packages,
    /// and starts its fake SaaS and functions. `name` keeps scratch folders and databases of
    /// stacks running at once apart.
    ///
    /// The local environment comes up through [`LocalEnv`], as for `cargo xtask deploy --env
    /// local`, but private to this deployment: its own emulator on a free port, the functions
    /// served in this process on free ports, and an in-process fake SaaS.
    ///
    /// The stack runs as the env configures it, the work queue's visibility timeout included:
    /// the worker schedules its own retries, so nothing here shortens it.
    pub async fn start(
        name: &str,
        pattern: Pattern,
        store: Option<StoreKind>,
        artifacts: &[Artifact],
    ) -> Result<LocalDeployment, E2eError> {
        // Seeded so that a soak run draws the same faults for the same sequence of calls.
        let fake_saas = FakeSaas::start_with("127.0.0.1:0", &PURCHASE, 7)
            .await
            .map_err(|e| E2eError::Setup(format!("fake SaaS: {e}")))?;
        let fake_saas_url = fake_saas.base_url().trim_end_matches('/').to_owned();
        let scratch =
            std::env::temp_dir().join(format!("sagaform-e2e-{name}-{}", std::process::id()));
        let workspace = scratch_workspace(&scratch)?;
        let env = scratch_env(&workspace, name, pattern, store, &fake_saas_url)?;
        let kept_env = env.clone();
        let store = env.store(pattern);

        let local = tokio::task::spawn_blocking(move || LocalEnv::with_private_emulator(workspace))
            .await
            .map_err(|e| E2eError::Setup(format!("moto: {e}")))??;
        let moto_endpoint = local.start_emulator(&Progress::plain())?.endpoint;
        let database = own_database(&local, &env, pattern).await?;
        let stack = PatternEnv {
            workspace: local.workspace(),
            env: &env,
            pattern,
        };
        let outputs = deploy(stack, artifacts, &moto_endpoint).await?;

        let environment = local.serve_functions(&env, pattern, &moto_endpoint).await?;
        let api_url = environment
            .api_url()
            .ok_or_else(|| E2eError::Setup(format!("stack of {pattern} serves no HTTP API")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| E2eError::Setup(format!("http client: {e}")))?;
        Ok(LocalDeployment {
            pattern,
            store,
            api_url: api_url.trim_end_matches('/').to_owned(),
            fake_saas_url,
            outputs,
            http,
            sdk: sagaform_local::discovery::emulator_config(&moto_endpoint, "us-east-1").await,
            moto_endpoint,
            environment: Some(environment),
            fake_saas: Some(fake_saas),
            database,
            env: kept_env,
            scratch,
            local,
        })
    }

    /// The stack as the operations commands (`saga show`, `saga retry`, `dlq ...`) reach it.
    pub async fn deployed(&self) -> Result<sagaform_ops::Deployed, E2eError> {
        sagaform_ops::Deployed::open(
            self.local.workspace(),
            &self.env,
            self.pattern,
            &sagaform_ops::OpenOptions {
                endpoint_url: Some(self.moto_endpoint.clone()),
            },
        )
        .await
        .map_err(|e| E2eError::Setup(format!("reaching the stack: {e}")))
    }

    /// The emulator's AWS configuration (for the dead-letter queue and the queue settings).
    pub fn sdk(&self) -> &aws_config::SdkConfig {
        &self.sdk
    }

    /// The emulator endpoint.
    pub fn moto_endpoint(&self) -> String {
        self.moto_endpoint.clone()
    }

    /// A stack output; an error naming it when the stack has none.
    pub fn output(&self, key: &str) -> Result<&str, E2eError> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| E2eError::Setup(format!("the stack has no output {key}")))
    }

    /// The sqs stack's dead-letter queue, redriven to its work queue (emulator mode: the
    /// client-side move where moto lacks a message move task).
    pub fn dead_letter_queue(&self) -> Result<Dlq, E2eError> {
        Ok(Dlq::new(
            &self.sdk,
            DeadLetterQueue {
                url: self.output(outputs::DEAD_LETTER_QUEUE_URL)?.to_owned(),
                arn: self.outputs.get("DeadLetterQueueArn").cloned(),
                redrive: Redrive::ToWorkQueue {
                    work_queue_url: self.output(outputs::WORK_QUEUE_URL)?.to_owned(),
                },
            },
            true,
        ))
    }

    /// Where the supervisor writes the function logs (for failure messages).
    pub fn log_dir(&self) -> PathBuf {
        services::supervisor_dir(self.local.workspace(), self.pattern).join("logs")
    }

    /// `POST /transactions` with an optional `Idempotency-Key`.
    pub async fn submit(&self, body: &Value, key: Option<&str>) -> Result<Reply, E2eError> {
        let mut request = self
            .http
            .post(format!("{}/transactions", self.api_url))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        reply(request.send().await).await
    }

    /// `GET /transactions/{id}`.
    pub async fn status(&self, transaction_id: &str) -> Result<Reply, E2eError> {
        reply(
            self.http
                .get(format!("{}/transactions/{transaction_id}", self.api_url))
                .send()
                .await,
        )
        .await
    }

    /// Polls the status endpoint until the saga is in a terminal status, and returns that view.
    pub async fn wait_terminal(
        &self,
        transaction_id: &str,
        limit: Duration,
    ) -> Result<Value, E2eError> {
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < limit {
            let reply = self.status(transaction_id).await?;
            if reply.status == 200 && reply.saga_status().is_some_and(|s| TERMINAL.contains(&s)) {
                return Ok(reply.body);
            }
            last = reply.body;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(E2eError::Timeout(format!(
            "saga {transaction_id} not terminal after {} s; last status view: {last}",
            limit.as_secs()
        )))
    }

    /// The fake SaaS ledger of one transaction (`GET /_ledger/{id}`).
    pub async fn ledger(&self, transaction_id: &str) -> Result<Value, E2eError> {
        let reply = reply(
            self.http
                .get(format!("{}/_ledger/{transaction_id}", self.fake_saas_url))
                .send()
                .await,
        )
        .await?;
        Ok(reply.body)
    }

    /// Adds a fault rule (`POST /_faults`), e.g. `{"service": "payments", "action": "charge",
    /// "fault": "unavailable", "times": 1}`.
    pub async fn add_fault(&self, rule: Value) -> Result<(), E2eError> {
        let reply = reply(
            self.http
                .post(format!("{}/_faults", self.fake_saas_url))
                .json(&rule)
                .send()
                .await,
        )
        .await?;
        if !(200..300).contains(&reply.status) {
            return Err(E2eError::Http(format!(
                "POST /_faults {rule}: {} {}",
                reply.status, reply.body
            )));
        }
        Ok(())
    }

    /// Removes every fault rule (`DELETE /_faults`).
    pub async fn clear_faults(&self) -> Result<(), E2eError> {
        reply(
            self.http
                .delete(format!("{}/_faults", self.fake_saas_url))
                .send()
                .await,
        )
        .await
        .map(drop)
    }

    /// Stops the supervisor, the fake SaaS and the emulator, drops the database and removes the
    /// scratch copy.
    pub async fn shutdown(mut self) -> Result<(), E2eError> {
        if let Some(environment) = self.environment.take() {
            environment.shutdown().await?;
        }
        if let Some(fake) = self.fake_saas.take() {
            fake.shutdown().await;
        }
        if let Some(database) = self.database.take() {
            database.drop_all().await?;
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
        Ok(())
    }
}

impl Drop for LocalDeployment {
    /// A test that failed before [`LocalDeployment::shutdown`] still drops its database, so failed
    /// runs do not pile databases up on the PostgreSQL server (its scratch folder stays, with
    /// the logs the failure message points to).
    fn drop(&mut self) {
        let Some(database) = self.database.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its
        // own runtime can.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(database.drop_all()).ok()
        })
        .join();
    }
}

/// A fresh `scratch` folder with a copy of the checkout's inputs, as a workspace.
fn scratch_workspace(scratch: &Path) -> Result<Workspace, E2eError> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch)
        .map_err(|e| E2eError::Setup(format!("{}: {e}", scratch.display())))?;
    Ok(Workspace::current().copy_inputs_to(scratch)?)
}

/// Makes the scratch copy's local env this stack's own — its fake SaaS, its store (the env's
/// default when `None`) and its own database — synthesizes the template of `pattern` from it,
/// and loads it.
fn scratch_env(
    workspace: &Workspace,
    name: &str,
    pattern: Pattern,
    store: Option<StoreKind>,
    fake_saas_url: &str,
) -> Result<EnvConfig, E2eError> {
    let env_path = workspace.root().join("env/local.toml");
    let mut env_text = std::fs::read_to_string(&env_path)
        .map_err(|e| E2eError::Setup(format!("{}: {e}", env_path.display())))?
        .replace(CHECKOUT_SAAS_ADDRESS, fake_saas_url);
    if let Some(store) = store {
        let store = match store {
            StoreKind::DynamoDb => "dynamodb",
            StoreKind::Aurora => "aurora",
        };
        env_text.push_str(&format!("\n[stores]\n{} = \"{store}\"\n", pattern.name()));
    }
    let database_name = format!(
        "sagaform_e2e_{}_{}",
        name.replace('-', "_"),
        std::process::id()
    );
    env_text.push_str(&format!(
        "\n[aurora]\ndatabase_name = \"{database_name}\"\n"
    ));
    std::fs::write(&env_path, env_text)
        .map_err(|e| E2eError::Setup(format!("{}: {e}", env_path.display())))?;
    let selection = Selection {
        pattern: Some(pattern),
        env: Some("local".to_owned()),
    };
    let files = synth::generate(workspace.root(), &selection)
        .map_err(|e| E2eError::Setup(format!("synth of the scratch copy: {e}")))?;
    synth::write(workspace.root(), &files, &selection)
        .map_err(|e| E2eError::Setup(format!("synth of the scratch copy: {e}")))?;
    config::load_env(workspace.root(), "local")
        .map_err(|e| E2eError::Setup(format!("scratch env: {e}")))
}

/// A new database for the stack of `pattern` when its store is Aurora: the functions connect to
/// the database the template names, and the scratch env names one of this stack's own.
async fn own_database(
    local: &LocalEnv,
    env: &EnvConfig,
    pattern: Pattern,
) -> Result<Option<LocalDatabase>, E2eError> {
    // What this step reports (a database dropped and created) is routine for a private stack:
    // it stays out of the test output.
    let (quiet, _) = Progress::capture();
    let database = local.prepare_database(env, pattern, true, &quiet).await?;
    if database.is_none() && env.store(pattern) == StoreKind::Aurora {
        return Err(E2eError::Setup(format!(
            "{} has no LocalDatabaseUrl parameter",
            local.workspace().template_path(pattern, "local").display()
        )));
    }
    Ok(database)
}

/// Deploys the stack to the emulator at `moto_endpoint` with the packages it needs out of
/// `artifacts`; returns its outputs. A failed deploy says what it had reported.
async fn deploy(
    stack: PatternEnv<'_>,
    artifacts: &[Artifact],
    moto_endpoint: &str,
) -> Result<BTreeMap<String, String>, E2eError> {
    let session = Session::connect(
        stack.env,
        &ConnectOptions {
            endpoint_url: Some(moto_endpoint.to_owned()),
        },
    )
    .await?;
    let needed = build::functions_for(stack.workspace, stack.pattern, "local")?;
    let artifacts: Vec<Artifact> = artifacts
        .iter()
        .filter(|a| needed.iter().any(|f| f == a.function()))
        .cloned()
        .collect();
    if artifacts.len() != needed.len() {
        return Err(E2eError::Setup(format!(
            "pattern {} needs the packages {needed:?}, got {:?}",
            stack.pattern,
            artifacts.iter().map(Artifact::function).collect::<Vec<_>>()
        )));
    }
    let pattern = stack.pattern;
    let options = DeployOptions::for_env(stack.env);
    let (progress, lines) = Progress::capture();
    let outcome = deploy_pattern(&session, stack, &artifacts, &options, &AssumeYes, &progress)
        .await
        .map_err(|e| E2eError::Setup(format!("deploy of {pattern}: {e}\n{}", lines.text())))?;
    Ok(outcome.outputs)
}

async fn reply(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Reply, E2eError> {
    let response = sent.map_err(|e| E2eError::Http(e.to_string()))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let text = response
        .text()
        .await
        .map_err(|e| E2eError::Http(e.to_string()))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        body,
    })
}
