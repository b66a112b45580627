//! A Lambda function with everything it needs in production: its own least-privilege role
//! (inline policies, no wildcard actions), an explicit log group with retention that it logs to
//! in JSON, environment variables holding only non-secret config, and alarms on its errors and
//! throttles.

use indexmap::IndexMap;
use sagaform_saga::PURCHASE;

use crate::cfn::cloudwatch::{ComparisonOperator, Statistic};
use crate::cfn::iam::{InlinePolicy, PolicyDocument, Role, Statement, actions};
use crate::cfn::lambda::{
    Architecture, Code, Environment, Function, LogFormat, LoggingConfig, Runtime,
};
use crate::cfn::logs::LogGroup;
use crate::cfn::{CfnError, Expr};
use crate::config::{self, FunctionRole, StateStoreKind};

use super::alerting::{AlarmSpec, Watched, add_alarm, dimension};
use super::queue::Queues;
use super::resume::{RESPONSE_BUDGET_MILLIS, ResumeQueue};
use super::state_machine::Machine;
use super::{StackBuilder, StoreAccess, ceil_seconds};

/// Parameter naming the bucket of the deployment packages.
pub const ARTIFACT_BUCKET_PARAMETER: &str = "ArtifactBucket";

/// Parameter naming the S3 key of a role's package (`ApiCodeKey`).
pub fn code_key_parameter(role: FunctionRole) -> String {
    format!("{}CodeKey", pascal(role))
}

/// Logical id of a role's function (`ApiFunction`, `WorkerFunction`, `StepFunction`).
pub fn function_logical_id(role: FunctionRole) -> String {
    format!("{}Function", pascal(role))
}

fn pascal(role: FunctionRole) -> &'static str {
    match role {
        FunctionRole::Api => "Api",
        FunctionRole::Worker => "Worker",
        FunctionRole::Step => "Step",
    }
}

/// A function added to the stack.
#[derive(Debug, Clone)]
pub(super) struct FunctionRef {
    pub role: FunctionRole,
    pub logical_id: String,
}

/// What a function does beyond reaching the state store.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Extras<'a> {
    /// Calls the downstream SaaS (gets their endpoints and timeouts).
    pub calls_saas: bool,
    /// Reads the work queue through an event source mapping.
    pub consumes_queue: Option<&'a Queues>,
    /// Sends to the work queue.
    pub sends_to_queue: Option<&'a Queues>,
    /// Starts executions of the state machine.
    pub starts_executions: Option<&'a Machine>,
    /// Answers within the HTTP API's budget and finishes longer sagas in an asynchronous
    /// invocation of itself, whose failures go to this queue (pattern `orchestrator`).
    pub resumes_itself: Option<&'a ResumeQueue>,
}

/// Adds the role, log group, function and alarms of `role`.
pub(super) fn add_function(
    stack: &mut StackBuilder<'_>,
    role: FunctionRole,
    description: &str,
    store: &StoreAccess,
    extras: Extras<'_>,
) -> Result<FunctionRef, CfnError> {
    let env = stack.env;
    let settings = &env.functions.by_role[&role];
    let function_id = function_logical_id(role);
    let role_id = format!("{function_id}Role");
    let log_group_id = format!("{function_id}LogGroup");
    let physical_name = format!("${{AWS::StackName}}-{}", role.name());

    stack.add(
        &log_group_id,
        LogGroup {
            log_group_name: Expr::sub(format!("/aws/lambda/{physical_name}")),
            retention_in_days: Some(env.log_retention_days),
            tags: stack.tags.list(),
        },
    )?;

    let mut statements = vec![Statement::allow(
        "WriteOwnLogs",
        vec![
            actions::LOGS_CREATE_LOG_STREAM,
            actions::LOGS_PUT_LOG_EVENTS,
        ],
        vec![Expr::get_att(&log_group_id, "Arn")],
    )];
    statements.extend(store.statements.iter().cloned());
    if let Some(queues) = extras.sends_to_queue {
        statements.push(Statement::allow(
            "SendToWorkQueue",
            vec![actions::SQS_SEND_MESSAGE],
            vec![Expr::get_att(queues.work_queue, "Arn")],
        ));
    }
    if let Some(queues) = extras.consumes_queue {
        statements.push(Statement::allow(
            "ConsumeWorkQueue",
            vec![
                actions::SQS_RECEIVE_MESSAGE,
                actions::SQS_DELETE_MESSAGE,
                actions::SQS_CHANGE_MESSAGE_VISIBILITY,
                actions::SQS_GET_QUEUE_ATTRIBUTES,
            ],
            vec![Expr::get_att(queues.work_queue, "Arn")],
        ));
    }
    if let Some(machine) = extras.starts_executions {
        statements.push(Statement::allow(
            "StartSagaExecutions",
            vec![actions::STATES_START_EXECUTION],
            vec![Expr::reference(machine.logical_id)],
        ));
    }
    if let Some(queue) = extras.resumes_itself {
        statements.extend(queue.statements());
    }
    if store.vpc.is_some() {
        // Lambda manages the function's network interfaces with the execution role. The
        // Describe actions support no resource-level permissions, so they get `*`; the others
        // are limited to this account and region, the narrowest form Lambda's documentation
        // allows (it creates the interfaces before their ids exist).
        statements.push(Statement::allow(
            "DescribeVpcNetwork",
            vec![
                actions::EC2_DESCRIBE_NETWORK_INTERFACES,
                actions::EC2_DESCRIBE_SUBNETS,
            ],
            vec![Expr::str("*")],
        ));
        statements.push(Statement::allow(
            "ManageVpcNetworkInterfaces",
            vec![
                actions::EC2_CREATE_NETWORK_INTERFACE,
                actions::EC2_DELETE_NETWORK_INTERFACE,
                actions::EC2_ASSIGN_PRIVATE_IP_ADDRESSES,
                actions::EC2_UNASSIGN_PRIVATE_IP_ADDRESSES,
            ],
            vec![Expr::sub(
                "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:*/*",
            )],
        ));
    }
    stack.add(
        &role_id,
        Role {
            description: format!(
                "Execution role of the {} function: only what it uses, on this stack's resources.",
                role.name()
            ),
            assume_role_policy_document: PolicyDocument::assumed_by("lambda.amazonaws.com"),
            policies: vec![InlinePolicy {
                policy_name: format!("{}-function", role.name()),
                policy_document: PolicyDocument::new(statements),
            }],
            tags: stack.tags.list(),
        },
    )?;

    let mut variables: IndexMap<String, Expr> = IndexMap::new();
    variables.insert(
        "SAGAFORM_PATTERN".to_owned(),
        Expr::str(stack.pattern.name()),
    );
    variables.insert(
        "SAGAFORM_STORE".to_owned(),
        Expr::str(match env.store(stack.pattern) {
            StateStoreKind::DynamoDb => "dynamodb",
            StateStoreKind::Aurora => "aurora",
        }),
    );
    variables.extend(store.variables.iter().cloned());
    if let Some(queues) = extras.sends_to_queue {
        variables.insert(
            "SAGAFORM_QUEUE_URL".to_owned(),
            Expr::reference(queues.work_queue),
        );
    }
    if let Some(queues) = extras.consumes_queue {
        // The worker schedules the redelivery of failed messages on it.
        variables.insert(
            "SAGAFORM_QUEUE_URL".to_owned(),
            Expr::reference(queues.work_queue),
        );
    }
    if let Some(machine) = extras.starts_executions {
        variables.insert(
            "SAGAFORM_STATE_MACHINE_ARN".to_owned(),
            Expr::reference(machine.logical_id),
        );
    }
    if extras.resumes_itself.is_some() {
        variables.insert(
            "SAGAFORM_RESPONSE_BUDGET_MS".to_owned(),
            Expr::str(RESPONSE_BUDGET_MILLIS.to_string()),
        );
    }
    if extras.calls_saas {
        for service in PURCHASE.services() {
            let endpoint = &env.saas[service];
            let prefix = format!("SAGAFORM_SAAS_{}", service.to_uppercase().replace('-', "_"));
            variables.insert(format!("{prefix}_URL"), Expr::str(&endpoint.url));
            variables.insert(
                format!("{prefix}_CONNECT_TIMEOUT_MS"),
                Expr::str(endpoint.connect_timeout.as_millis().to_string()),
            );
            variables.insert(
                format!("{prefix}_REQUEST_TIMEOUT_MS"),
                Expr::str(endpoint.request_timeout.as_millis().to_string()),
            );
        }
    }
    variables.insert("RUST_LOG".to_owned(), Expr::str(&env.functions.log_level));

    stack.add(
        &function_id,
        Function {
            function_name: Expr::sub(&physical_name),
            description: description.to_owned(),
            runtime: Runtime::ProvidedAl2023,
            handler: "bootstrap".to_owned(),
            architectures: vec![match env.functions.architecture {
                config::Architecture::Arm64 => Architecture::Arm64,
                config::Architecture::X86_64 => Architecture::X86_64,
            }],
            code: Code {
                s3_bucket: Expr::reference(ARTIFACT_BUCKET_PARAMETER),
                s3_key: Expr::reference(code_key_parameter(role)),
            },
            memory_size: settings.memory_mb,
            timeout: u32::try_from(ceil_seconds(settings.timeout)).unwrap_or(u32::MAX),
            reserved_concurrent_executions: settings.reserved_concurrency,
            role: Expr::get_att(&role_id, "Arn"),
            environment: Environment { variables },
            logging_config: LoggingConfig {
                log_format: LogFormat::Json,
                log_group: Expr::reference(&log_group_id),
            },
            vpc_config: store.vpc.clone(),
            tags: stack.tags.list(),
        },
    )?;

    let name = role.name();
    let function_name = format!("{}-{name}", stack.stack_name());
    let log_group_name = format!("/aws/lambda/{function_name}");
    let look_at = vec![
        format!(
            "The function's JSON logs in {}; every line carries `transaction_id` next to the Lambda request id.",
            stack.logs_location(&log_group_name)
        ),
        "The saga's state and step history in the state store (`cargo xtask saga show`)."
            .to_owned(),
    ];
    let logs_command = stack.filter_logs_command(&log_group_name);
    let errors_threshold = f64::from(env.alarms.lambda_errors);
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: format!("{function_id}ErrorsAlarm"),
            anchor: format!("{name}-function-errors"),
            title: format!("{name} function errors"),
            meaning: format!(
                "The {name} function failed (an unhandled error, a timeout or a crash) at least {} time(s) in a period.",
                env.alarms.lambda_errors
            ),
            watched: Watched::Metric {
                namespace: "AWS/Lambda",
                name: "Errors",
                dimensions: vec![dimension("FunctionName", Expr::reference(&function_id))],
                statistic: Statistic::Sum,
            },
            threshold: errors_threshold,
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            look_at: look_at.clone(),
            commands: vec![logs_command.clone(), stack.saga_show_command()],
        },
    )?;
    let throttles_threshold = f64::from(env.alarms.lambda_throttles);
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: format!("{function_id}ThrottlesAlarm"),
            anchor: format!("{name}-function-throttles"),
            title: format!("{name} function throttles"),
            meaning: format!(
                "Invocations of the {name} function were refused for lack of concurrency (reserved concurrency{} or the account limit).",
                settings
                    .reserved_concurrency
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default()
            ),
            watched: Watched::Metric {
                namespace: "AWS/Lambda",
                name: "Throttles",
                dimensions: vec![dimension("FunctionName", Expr::reference(&function_id))],
                statistic: Statistic::Sum,
            },
            threshold: throttles_threshold,
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            look_at: vec![
                format!(
                    "The `ConcurrentExecutions` and `Throttles` metrics of `{function_name}` in CloudWatch, and the account's unreserved concurrency."
                ),
                "Whether a downstream SaaS slowed down (longer durations hold concurrency longer)."
                    .to_owned(),
                format!(
                    "To raise the function's limit, set `functions.{name}.reserved_concurrency` in `{}`, then synthesize and deploy (below).",
                    env.source.display()
                ),
            ],
            commands: vec![
                format!(
                    "{} --function-name {function_name}",
                    stack.aws("lambda get-function-concurrency")
                ),
                format!(
                    "{} --query AccountLimit",
                    stack.aws("lambda get-account-settings")
                ),
                format!(
                    "{} --namespace AWS/Lambda --metric-name ConcurrentExecutions --dimensions Name=FunctionName,Value={function_name} --start-time $(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ) --end-time $(date -u +%Y-%m-%dT%H:%M:%SZ) --period 60 --statistics Maximum",
                    stack.aws("cloudwatch get-metric-statistics")
                ),
                logs_command,
                "cargo xtask synth".to_owned(),
                stack.xtask_command("deploy"),
            ],
        },
    )?;

    Ok(FunctionRef {
        role,
        logical_id: function_id,
    })
}
