//! `saga show`: one saga end to end, from its `transaction_id` — its record in the state store
//! (status, steps with their statuses, timestamps and errors), where its logs are (CloudWatch
//! log groups with a ready `aws logs filter-log-events` command, or the local logs command), and
//! for the stepfunctions pattern the execution named by the transaction id with its history.
//!
//! State stores read: DynamoDB (the stack's `SagaTableName`), and PostgreSQL — the local server
//! of the local env (the stack's `LocalDatabaseUrl` parameter), or Aurora through the stack's
//! RDS Proxy with the credentials of its Secrets Manager secret, which needs a network path to
//! the proxy (inside the VPC, or a tunnel given as `--database-url`).

use std::time::Duration;

use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::types::HistoryEvent;
use sagaform_contract::template::outputs;
use sagaform_runtime::store::config::DatabaseLocation;
use sagaform_runtime::store::{
    ConfiguredStore, DynamoStore, PostgresSettings, PostgresStore, StoreConfig,
};
use sagaform_runtime::{SagaRecord, SagaStore};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::StoreKind;
use serde::Serialize;

use crate::error::aws_error;
use crate::time::{millis_from_rfc3339, rfc3339_from_millis};
use crate::{Deployed, OpsError};

/// The local PostgreSQL URL of the orchestrator's local stack when its parameter is unknown
/// (the template parameter's default).
pub const DEFAULT_LOCAL_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/sagaform";

/// The template parameter holding the local env's PostgreSQL URL.
pub const LOCAL_DATABASE_URL_PARAMETER: &str = "LocalDatabaseUrl";

/// The port RDS Proxy listens on for PostgreSQL.
const PROXY_PORT: u16 = 5432;

/// Minutes of logs before the saga was created that the suggested log command includes (clock
/// skew, the API's own lines before the record was written).
const LOG_LEAD_MINUTES: i64 = 5;

/// Options of `saga show`.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    /// Read PostgreSQL at this URL instead of the stack's database (a tunnel to RDS Proxy, or
    /// another local server).
    pub database_url: Option<String>,
    /// Leave out the Step Functions execution history (its status is still shown).
    pub without_history: bool,
}

/// Everything `saga show` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaReport {
    /// The saga asked for.
    pub transaction_id: String,
    /// Pattern name.
    pub pattern: String,
    /// Env name.
    pub env: String,
    /// Stack name.
    pub stack: String,
    /// Where the state was read.
    pub store: String,
    /// The saga record; `None` when the store has no saga with that id (expired by TTL, never
    /// accepted, or another env).
    pub saga: Option<SagaRecord>,
    /// Where its logs are.
    pub logs: LogPointers,
    /// The Step Functions execution named by the transaction id (pattern stepfunctions).
    pub execution: Option<ExecutionReport>,
}

/// Where a saga's logs are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogPointers {
    /// The command that prints them for the local env.
    pub local_command: Option<String>,
    /// The CloudWatch log groups of the stack's functions and state machine, with a command
    /// filtering each on the transaction id.
    pub log_groups: Vec<LogGroup>,
}

/// One CloudWatch log group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogGroup {
    /// What writes there (`api function`, `state machine`, ...).
    pub source: String,
    /// Log group name.
    pub name: String,
    /// A ready `aws logs filter-log-events` command for the saga.
    pub command: String,
}

/// A Step Functions execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionReport {
    /// Execution ARN.
    pub execution_arn: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE.
    pub status: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it stopped.
    pub stopped_at: Option<String>,
    /// The error it failed with.
    pub error: Option<String>,
    /// The cause of that error.
    pub cause: Option<String>,
    /// Its history events, oldest first (empty with `without_history`).
    pub history: Vec<ExecutionEvent>,
}

/// One history event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionEvent {
    /// Event id.
    pub id: i64,
    /// When.
    pub timestamp: String,
    /// Event type (`TaskStateEntered`, `LambdaFunctionFailed`, ...).
    pub event_type: String,
    /// The state entered or exited, when it is such an event.
    pub state: Option<String>,
    /// Error and cause of a failure event.
    pub error: Option<String>,
}

/// Checks a transaction id before it goes into requests and printed shell commands: the ids
/// sagaform issues are UUIDs, and Step Functions execution names allow at most 80 characters.
pub fn check_transaction_id(transaction_id: &str) -> Result<(), OpsError> {
    let acceptable = !transaction_id.is_empty()
        && transaction_id.len() <= 80
        && transaction_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if acceptable {
        return Ok(());
    }
    Err(OpsError::InvalidInput(format!(
        "transaction id `{transaction_id}`: expected the UUID the API returned (letters, digits, `-` and `_`, at most 80 characters)"
    )))
}

/// Shows a saga of a deployed stack.
pub async fn show(
    deployed: &Deployed,
    transaction_id: &str,
    options: &ShowOptions,
) -> Result<SagaReport, OpsError> {
    check_transaction_id(transaction_id)?;
    let (store, store_description) = open_store(deployed, options).await?;
    let saga = store.get(transaction_id).await?;
    let execution = match deployed.pattern {
        Pattern::StepFunctions => {
            let state_machine_arn = deployed.output(outputs::STATE_MACHINE_ARN, "saga show")?;
            let sfn = aws_sdk_sfn::Client::new(&deployed.aws);
            execution_report(
                &sfn,
                state_machine_arn,
                transaction_id,
                !options.without_history,
            )
            .await?
        }
        Pattern::Orchestrator | Pattern::Sqs => None,
    };
    let since_millis = saga
        .as_ref()
        .and_then(|s| millis_from_rfc3339(&s.created_at))
        .map(|created| created - LOG_LEAD_MINUTES * 60 * 1000);
    Ok(SagaReport {
        transaction_id: transaction_id.to_owned(),
        pattern: deployed.pattern.name().to_owned(),
        env: deployed.env_name.clone(),
        stack: deployed.stack_name.clone(),
        store: store_description,
        saga,
        logs: log_pointers(
            deployed.pattern,
            &deployed.stack_name,
            &deployed.region,
            deployed.local,
            transaction_id,
            since_millis,
        ),
        execution,
    })
}

/// Opens the stack's state store for reading, and says which it is.
///
/// The PostgreSQL store applies pending schema migrations when it connects, as the functions
/// do at init: a database older than this tool is brought up to date (the migrations only add).
pub async fn open_store(
    deployed: &Deployed,
    options: &ShowOptions,
) -> Result<(ConfiguredStore, String), OpsError> {
    if let Some(url) = &options.database_url {
        return open_postgres(url).await;
    }
    match deployed.store {
        StoreKind::DynamoDb => open_dynamodb(deployed),
        StoreKind::Aurora if deployed.local => {
            let url = deployed
                .parameters
                .get(LOCAL_DATABASE_URL_PARAMETER)
                .filter(|url| !url.is_empty())
                .map_or(DEFAULT_LOCAL_DATABASE_URL, String::as_str);
            open_postgres(url).await
        }
        StoreKind::Aurora => open_aurora(deployed).await,
    }
}

/// The PostgreSQL database at `url`.
async fn open_postgres(url: &str) -> Result<(ConfiguredStore, String), OpsError> {
    let settings = PostgresSettings::from_url(url)?;
    let description = describe_postgres(&settings);
    let store = PostgresStore::connect(settings).await?;
    Ok((ConfiguredStore::Postgres(store), description))
}

/// The stack's DynamoDB saga table.
fn open_dynamodb(deployed: &Deployed) -> Result<(ConfiguredStore, String), OpsError> {
    let table = deployed
        .output(outputs::SAGA_TABLE_NAME, "saga show")?
        .to_owned();
    let idempotency = deployed
        .outputs
        .get(outputs::IDEMPOTENCY_TABLE_NAME)
        .cloned()
        .unwrap_or_default();
    let description = format!("DynamoDB table {table}");
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&deployed.aws),
        table,
        idempotency,
        // Only read here; the TTL applies to writes.
        Duration::from_secs(0),
    );
    Ok((ConfiguredStore::DynamoDb(store), description))
}

/// The stack's Aurora database through its RDS Proxy, with the credentials of its secret.
async fn open_aurora(deployed: &Deployed) -> Result<(ConfiguredStore, String), OpsError> {
    let host = deployed
        .output(outputs::DATABASE_PROXY_ENDPOINT, "saga show")?
        .to_owned();
    let secret_arn = deployed
        .output(outputs::DATABASE_SECRET_ARN, "saga show")?
        .to_owned();
    let description = format!(
        "Aurora PostgreSQL via RDS Proxy {host}:{PROXY_PORT}, database {}",
        deployed.database_name
    );
    // Secrets Manager is reached through the default credential chain, as the functions do;
    // Aurora has no emulator, so there is no endpoint override to honour.
    let location = DatabaseLocation::Aurora {
        host,
        port: PROXY_PORT,
        dbname: deployed.database_name.clone(),
        secret_arn,
    };
    let store = StoreConfig::Aurora(location).connect().await.map_err(|e| {
        OpsError::InvalidInput(format!(
            "{e} (reading Aurora needs a network path to the RDS Proxy: run inside the VPC, or open a tunnel and pass it as --database-url)"
        ))
    })?;
    Ok((store, description))
}

fn describe_postgres(settings: &PostgresSettings) -> String {
    let config = &settings.config;
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    format!(
        "PostgreSQL {}:{} database {}",
        host,
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or_default()
    )
}

/// The execution of `state_machine_arn` named `transaction_id` (contract: execution name =
/// transaction id), with its history when asked; `None` when there is none.
pub async fn execution_report(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    transaction_id: &str,
    with_history: bool,
) -> Result<Option<ExecutionReport>, OpsError> {
    let execution_arn = execution_arn(state_machine_arn, transaction_id)?;
    let described = match sfn
        .describe_execution()
        .execution_arn(&execution_arn)
        .send()
        .await
    {
        Ok(described) => described,
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), DescribeExecutionError::ExecutionDoesNotExist(_)) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(aws_error("StepFunctions.DescribeExecution")(e)),
    };
    let mut history = Vec::new();
    if with_history {
        let mut pages = sfn
            .get_execution_history()
            .execution_arn(&execution_arn)
            .include_execution_data(false)
            .into_paginator()
            .items()
            .send();
        while let Some(event) = pages.next().await {
            let event = event.map_err(aws_error("StepFunctions.GetExecutionHistory"))?;
            history.push(execution_event(&event));
        }
    }
    Ok(Some(ExecutionReport {
        execution_arn,
        status: described.status.as_str().to_owned(),
        started_at: Some(date_time(&described.start_date)),
        stopped_at: described.stop_date.as_ref().map(date_time),
        error: described.error,
        cause: described.cause,
        history,
    }))
}

/// `arn:...:stateMachine:NAME` -> `arn:...:execution:NAME:TRANSACTION_ID`.
pub fn execution_arn(state_machine_arn: &str, transaction_id: &str) -> Result<String, OpsError> {
    let Some((prefix, name)) = state_machine_arn.split_once(":stateMachine:") else {
        return Err(OpsError::InvalidInput(format!(
            "state machine ARN `{state_machine_arn}`: expected arn:<partition>:states:<region>:<account>:stateMachine:<name>"
        )));
    };
    Ok(format!("{prefix}:execution:{name}:{transaction_id}"))
}

fn date_time(value: &aws_sdk_sfn::primitives::DateTime) -> String {
    let millis = value.to_millis().unwrap_or(0);
    rfc3339_from_millis(millis)
}

fn execution_event(event: &HistoryEvent) -> ExecutionEvent {
    let state = event
        .state_entered_event_details()
        .map(|d| d.name().to_owned())
        .or_else(|| {
            event
                .state_exited_event_details()
                .map(|d| d.name().to_owned())
        });
    let failure = |error: Option<&str>, cause: Option<&str>| match (error, cause) {
        (None, None) => None,
        (error, cause) => Some(
            [error, cause]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": "),
        ),
    };
    let error = event
        .task_failed_event_details()
        .and_then(|d| failure(d.error(), d.cause()))
        .or_else(|| {
            event
                .lambda_function_failed_event_details()
                .and_then(|d| failure(d.error(), d.cause()))
        })
        .or_else(|| {
            event
                .task_timed_out_event_details()
                .and_then(|d| failure(d.error(), d.cause()))
        })
        .or_else(|| {
            event
                .lambda_function_timed_out_event_details()
                .and_then(|d| failure(d.error(), d.cause()))
        })
        .or_else(|| {
            event
                .execution_failed_event_details()
                .and_then(|d| failure(d.error(), d.cause()))
        })
        .or_else(|| {
            event
                .execution_timed_out_event_details()
                .and_then(|d| failure(d.error(), d.cause()))
        });
    ExecutionEvent {
        id: event.id(),
        timestamp: date_time(event.timestamp()),
        event_type: event.r#type().as_str().to_owned(),
        state,
        error,
    }
}

/// Where the logs of a saga are: the local logs command for the local env, else the stack's
/// CloudWatch log groups (names as the templates set them) with a command filtering each on
/// the transaction id from `since_millis` (a few minutes before the saga was created; the last
/// day when unknown).
pub fn log_pointers(
    pattern: Pattern,
    stack_name: &str,
    region: &str,
    local: bool,
    transaction_id: &str,
    since_millis: Option<i64>,
) -> LogPointers {
    if local {
        return LogPointers {
            local_command: Some(format!(
                "cargo xtask local logs --transaction {transaction_id}"
            )),
            log_groups: Vec::new(),
        };
    }
    let mut groups = vec![("api function", format!("/aws/lambda/{stack_name}-api"))];
    match pattern {
        Pattern::Orchestrator => {}
        Pattern::Sqs => groups.push((
            "worker function",
            format!("/aws/lambda/{stack_name}-worker"),
        )),
        Pattern::StepFunctions => {
            groups.push(("step function", format!("/aws/lambda/{stack_name}-step")));
            groups.push((
                "state machine",
                format!("/aws/vendedlogs/states/{stack_name}"),
            ));
        }
    }
    let start_time = since_millis.map_or_else(
        // A day ago in epoch milliseconds in POSIX shell arithmetic (GNU `date -d` is not on
        // macOS).
        || "$(($(date +%s) - 86400))000".to_owned(),
        |millis| millis.to_string(),
    );
    LogPointers {
        local_command: None,
        log_groups: groups
            .into_iter()
            .map(|(source, name)| LogGroup {
                source: source.to_owned(),
                command: format!(
                    "aws logs filter-log-events --region {region} --log-group-name {name} --start-time {start_time} --filter-pattern '\"{transaction_id}\"'"
                ),
                name,
            })
            .collect(),
    }
}

/// The human-readable form of a report.
pub fn render(report: &SagaReport) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "saga {} ({} pattern, env {}, stack {})",
        report.transaction_id, report.pattern, report.env, report.stack
    ));
    line(format!("store: {}", report.store));
    match &report.saga {
        None => line("state: no saga with this transaction id in the store".to_owned()),
        Some(saga) => render_state(saga, &mut line),
    }
    match &report.execution {
        Some(execution) => render_execution(execution, &mut line),
        None if report.pattern == Pattern::StepFunctions.name() => {
            line("execution: none named by this transaction id".to_owned())
        }
        None => {}
    }
    line("logs:".to_owned());
    if let Some(command) = &report.logs.local_command {
        line(format!("  {command}"));
    }
    for group in &report.logs.log_groups {
        line(format!("  {} ({})", group.name, group.source));
        line(format!("    {}", group.command));
    }
    out
}

/// The saga record's lines: status, times, request and one line per step.
fn render_state(saga: &SagaRecord, line: &mut impl FnMut(String)) {
    line(format!(
        "status: {} (version {})",
        saga.status, saga.version
    ));
    line(format!("created: {}", saga.created_at));
    line(format!("updated: {}", saga.updated_at));
    if let Some(error) = &saga.error {
        line(format!("error: {error}"));
    }
    line(format!("request: {}", saga.request));
    line("steps:".to_owned());
    let width = saga.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for step in &saga.steps {
        let mut text = format!(
            "  {:<width$}  {:<19}  attempts {}",
            step.name,
            step.status.as_str(),
            step.attempts,
        );
        if step.compensation_attempts > 0 {
            text.push_str(&format!(
                "  compensation attempts {}",
                step.compensation_attempts
            ));
        }
        text.push_str(&format!(
            "  updated {}",
            step.updated_at.as_deref().unwrap_or("-")
        ));
        if let Some(error) = &step.error {
            text.push_str(&format!("  error: {error}"));
        }
        line(text);
    }
}

/// The Step Functions execution's lines: status, times, error and history.
fn render_execution(execution: &ExecutionReport, line: &mut impl FnMut(String)) {
    line(format!(
        "execution: {} {}",
        execution.status, execution.execution_arn
    ));
    line(format!(
        "  started {}  stopped {}",
        execution.started_at.as_deref().unwrap_or("-"),
        execution.stopped_at.as_deref().unwrap_or("-")
    ));
    if let Some(error) = &execution.error {
        line(format!(
            "  error: {error}: {}",
            execution.cause.as_deref().unwrap_or("")
        ));
    }
    if !execution.history.is_empty() {
        line("  history:".to_owned());
    }
    for event in &execution.history {
        let mut text = format!(
            "    {:>3}  {}  {}",
            event.id, event.timestamp, event.event_type
        );
        if let Some(state) = &event.state {
            text.push_str(&format!("  {state}"));
        }
        if let Some(error) = &event.error {
            text.push_str(&format!("  error: {error}"));
        }
        line(text);
    }
}
