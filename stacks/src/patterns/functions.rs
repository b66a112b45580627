//! A Lambda function with everything it needs in production: its own least-privilege role
//! (inline policies, no wildcard actions), an explicit log group with retention that it logs to
//! in JSON, environment variables holding only non-secret config, and alarms on its errors and
//! throttles.
//!
//! What a function may do beyond logging and reaching the state store is a list of
//! [`Capability`] values; each contributes its IAM statements and its environment variables
//! together, so a permission never comes without the variable that names its resource.

use indexmap::IndexMap;
use sagaform_contract::env::{self as vars, SaasSetting, saas_variable};
use sagaform_contract::log;
use sagaform_contract::template::{ARTIFACT_BUCKET_PARAMETER, code_key_parameter};
use sagaform_saga::Saga;

use crate::cfn::checkov::Invoker;
use crate::cfn::cloudwatch::{ComparisonOperator, Statistic};
use crate::cfn::iam::{Action, InlinePolicy, PolicyDocument, Role, Statement, actions};
use crate::cfn::lambda::{
    Architecture, Code, Environment, Function, LogFormat, LoggingConfig, Runtime,
};
use crate::cfn::logs::{LogGroup, MetricFilter, MetricTransformation};
use crate::cfn::{CfnError, CheckovSkip, Expr, Resource};
use crate::config::{self, EnvConfig, FunctionRole};

use super::alerting::{AlarmSpec, Watched, add_alarm, dimension};
use super::queue::Queues;
use super::resume::{RESPONSE_BUDGET_MILLIS, ResumeQueue};
use super::state_machine::Machine;
use super::{StackBuilder, StoreAccess, ceil_seconds};

/// A function added to the stack.
#[derive(Debug, Clone)]
pub(super) struct FunctionRef {
    pub role: FunctionRole,
    pub logical_id: String,
}

/// What a function does beyond logging and reaching the state store.
#[derive(Debug, Clone, Copy)]
pub(super) enum Capability<'a> {
    /// Sends to the work queue.
    SendsToQueue(&'a Queues),
    /// Reads the work queue through an event source mapping, and schedules the redelivery of
    /// failed messages on it.
    ConsumesQueue(&'a Queues),
    /// Starts executions of the state machine.
    StartsExecutions(&'a Machine),
    /// Answers within the HTTP API's budget and finishes longer sagas in an asynchronous
    /// invocation of itself, whose failures go to this queue (pattern `orchestrator`).
    ResumesItself(&'a ResumeQueue),
    /// Calls the downstream SaaS (gets their endpoints and timeouts).
    CallsSaas,
}

/// The IAM statements and environment variables a capability adds.
#[derive(Debug, Default)]
struct Grants {
    statements: Vec<Statement>,
    variables: Vec<(String, Expr)>,
}

impl Grants {
    /// `actions` on the work queue (statement `sid`), and the queue's URL to use them on.
    fn work_queue(queues: &Queues, sid: &str, actions: Vec<Action>) -> Grants {
        Grants {
            statements: vec![Statement::allow(
                sid,
                actions,
                vec![Expr::get_att(queues.work_queue, "Arn")],
            )],
            variables: vec![(
                vars::QUEUE_URL.to_owned(),
                Expr::reference(queues.work_queue),
            )],
        }
    }
}

impl Capability<'_> {
    /// The capability's place in the role and the environment, so that the template does not
    /// depend on the order a pattern lists them in.
    fn rank(&self) -> u8 {
        match self {
            Capability::SendsToQueue(_) => 0,
            Capability::ConsumesQueue(_) => 1,
            Capability::StartsExecutions(_) => 2,
            Capability::ResumesItself(_) => 3,
            Capability::CallsSaas => 4,
        }
    }

    fn grants(&self, env: &EnvConfig, saga: &Saga) -> Grants {
        match *self {
            Capability::SendsToQueue(queues) => {
                Grants::work_queue(queues, "SendToWorkQueue", vec![actions::SQS_SEND_MESSAGE])
            }
            Capability::ConsumesQueue(queues) => Grants::work_queue(
                queues,
                "ConsumeWorkQueue",
                vec![
                    actions::SQS_RECEIVE_MESSAGE,
                    actions::SQS_DELETE_MESSAGE,
                    actions::SQS_CHANGE_MESSAGE_VISIBILITY,
                    actions::SQS_GET_QUEUE_ATTRIBUTES,
                ],
            ),
            Capability::StartsExecutions(machine) => Grants {
                statements: vec![Statement::allow(
                    "StartSagaExecutions",
                    vec![actions::STATES_START_EXECUTION],
                    vec![Expr::reference(machine.logical_id)],
                )],
                variables: vec![(
                    vars::STATE_MACHINE_ARN.to_owned(),
                    Expr::reference(machine.logical_id),
                )],
            },
            Capability::ResumesItself(queue) => Grants {
                statements: queue.statements(),
                variables: vec![(
                    vars::RESPONSE_BUDGET_MS.to_owned(),
                    Expr::str(RESPONSE_BUDGET_MILLIS.to_string()),
                )],
            },
            Capability::CallsSaas => Grants {
                statements: Vec::new(),
                variables: saga
                    .services()
                    .into_iter()
                    .flat_map(|service| {
                        let endpoint = &env.saas[service];
                        SaasSetting::ALL.map(|setting| {
                            let value = match setting {
                                SaasSetting::Url => endpoint.url.clone(),
                                SaasSetting::ConnectTimeoutMs => {
                                    endpoint.connect_timeout.as_millis().to_string()
                                }
                                SaasSetting::RequestTimeoutMs => {
                                    endpoint.request_timeout.as_millis().to_string()
                                }
                            };
                            (saas_variable(service, setting), Expr::str(value))
                        })
                    })
                    .collect(),
            },
        }
    }
}

/// Adds the role, log group, function and alarms of `role`.
pub(super) fn add_function(
    stack: &mut StackBuilder<'_>,
    role: FunctionRole,
    description: &str,
    store: &StoreAccess,
    capabilities: &[Capability<'_>],
) -> Result<FunctionRef, CfnError> {
    let ids = FunctionIds::of(role);
    add_log_group(stack, role, &ids.log_group)?;
    let grants = capability_grants(stack.env, stack.saga, capabilities);
    let statements = role_statements(&ids.log_group, store, &grants);
    add_role(stack, role, &ids.role, statements)?;
    let variables = function_variables(stack, store, grants);
    let function = function(stack, role, &ids, description, store, variables);
    let invoker = invoker(role, capabilities);
    stack.add(
        &ids.function,
        Resource::new(function).with_checkov_skip(CheckovSkip::FunctionDeadLetterQueue(invoker)),
    )?;
    add_function_alarms(stack, role, &ids.function)?;
    if capabilities
        .iter()
        .any(|capability| matches!(capability, Capability::CallsSaas))
    {
        add_outcome_alarms(stack, role, &ids.log_group)?;
    }
    Ok(FunctionRef {
        role,
        logical_id: ids.function,
    })
}

/// What invokes a function of `role`: the reason it needs no dead-letter queue of its own.
fn invoker(role: FunctionRole, capabilities: &[Capability<'_>]) -> Invoker {
    match role {
        FunctionRole::Api
            if capabilities
                .iter()
                .any(|capability| matches!(capability, Capability::ResumesItself(_))) =>
        {
            Invoker::HttpApiAndItself
        }
        FunctionRole::Api => Invoker::HttpApi,
        FunctionRole::Worker => Invoker::QueueEventSource,
        FunctionRole::Step => Invoker::StateMachine,
        FunctionRole::Migrate => Invoker::CustomResource,
    }
}

/// The logical ids of a function's resources.
struct FunctionIds {
    function: String,
    role: String,
    log_group: String,
}

impl FunctionIds {
    fn of(role: FunctionRole) -> Self {
        let function = role.logical_id();
        FunctionIds {
            role: format!("{function}Role"),
            log_group: format!("{function}LogGroup"),
            function,
        }
    }
}

/// Adds the function's log group, explicit so that it has the configured retention.
fn add_log_group(
    stack: &mut StackBuilder<'_>,
    role: FunctionRole,
    log_group_id: &str,
) -> Result<(), CfnError> {
    stack.add(
        log_group_id,
        LogGroup {
            log_group_name: Expr::sub(format!("/aws/lambda/{}", role.physical_name_sub())),
            retention_in_days: Some(stack.env.log_retention_days),
            tags: stack.tags.list(),
        },
    )
}

/// The grants of `capabilities`, in their fixed order.
fn capability_grants(env: &EnvConfig, saga: &Saga, capabilities: &[Capability<'_>]) -> Vec<Grants> {
    let mut capabilities = capabilities.to_vec();
    capabilities.sort_by_key(Capability::rank);
    capabilities.iter().map(|c| c.grants(env, saga)).collect()
}

/// The statements of the function's role: writing its own logs, reaching the store, what its
/// capabilities grant, and managing its network interfaces when it runs in the VPC.
fn role_statements(log_group_id: &str, store: &StoreAccess, grants: &[Grants]) -> Vec<Statement> {
    let mut statements = vec![Statement::allow(
        "WriteOwnLogs",
        vec![
            actions::LOGS_CREATE_LOG_STREAM,
            actions::LOGS_PUT_LOG_EVENTS,
        ],
        vec![Expr::get_att(log_group_id, "Arn")],
    )];
    statements.extend(store.statements.iter().cloned());
    statements.extend(grants.iter().flat_map(|g| g.statements.iter().cloned()));
    if store.vpc.is_some() {
        statements.extend(vpc_network_statements());
    }
    statements
}

/// The function's environment: pattern and store kind, the store's variables, those of its
/// capabilities, and the log level.
fn function_variables(
    stack: &StackBuilder<'_>,
    store: &StoreAccess,
    grants: Vec<Grants>,
) -> IndexMap<String, Expr> {
    let env = stack.env;
    let mut variables: IndexMap<String, Expr> = IndexMap::new();
    variables.insert(vars::PATTERN.to_owned(), Expr::str(stack.pattern.name()));
    variables.insert(
        vars::STORE.to_owned(),
        Expr::str(env.store(stack.pattern).name()),
    );
    variables.extend(store.variables.iter().cloned());
    variables.extend(grants.into_iter().flat_map(|g| g.variables));
    variables.insert("RUST_LOG".to_owned(), Expr::str(&env.functions.log_level));
    variables
}

/// The function resource: its code from the artifact bucket, its configured size and limits,
/// JSON logs to its log group.
fn function(
    stack: &StackBuilder<'_>,
    role: FunctionRole,
    ids: &FunctionIds,
    description: &str,
    store: &StoreAccess,
    variables: IndexMap<String, Expr>,
) -> Function {
    let env = stack.env;
    let settings = &env.functions.by_role[&role];
    Function {
        function_name: Expr::sub(role.physical_name_sub()),
        description: description.to_owned(),
        runtime: Runtime::ProvidedAl2023,
        handler: "bootstrap".to_owned(),
        architectures: vec![match env.functions.architecture {
            config::Architecture::Arm64 => Architecture::Arm64,
            config::Architecture::X86_64 => Architecture::X86_64,
        }],
        code: Code {
            s3_bucket: Expr::reference(ARTIFACT_BUCKET_PARAMETER),
            s3_key: Expr::reference(code_key_parameter(role.name())),
        },
        memory_size: settings.memory_mb,
        timeout: u32::try_from(ceil_seconds(settings.timeout)).unwrap_or(u32::MAX),
        reserved_concurrent_executions: settings.reserved_concurrency,
        role: Expr::get_att(&ids.role, "Arn"),
        environment: Environment { variables },
        logging_config: LoggingConfig {
            log_format: LogFormat::Json,
            log_group: Expr::reference(&ids.log_group),
        },
        vpc_config: store.vpc.clone(),
        tags: stack.tags.list(),
    }
}

/// Lambda manages the network interfaces of a function in a VPC with the execution role. The
/// Describe actions support no resource-level permissions, so they get `*`; the others are
/// limited to this account and region, the narrowest form Lambda's documentation allows (it
/// creates the interfaces before their ids exist).
fn vpc_network_statements() -> [Statement; 2] {
    [
        Statement::allow(
            "DescribeVpcNetwork",
            vec![
                actions::EC2_DESCRIBE_NETWORK_INTERFACES,
                actions::EC2_DESCRIBE_SUBNETS,
            ],
            vec![Expr::str("*")],
        ),
        Statement::allow(
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
        ),
    ]
}

/// Adds the function's execution role with one inline policy of `statements`.
fn add_role(
    stack: &mut StackBuilder<'_>,
    role: FunctionRole,
    role_id: &str,
    statements: Vec<Statement>,
) -> Result<(), CfnError> {
    stack.add(
        role_id,
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
    )
}

/// Adds the alarms on the function's errors and throttles, with their runbook sections.
fn add_function_alarms(
    stack: &mut StackBuilder<'_>,
    role: FunctionRole,
    function_id: &str,
) -> Result<(), CfnError> {
    let function_name = role.physical_name(&stack.stack_name());
    let logs = FunctionLogs::of(stack, &function_name);
    add_errors_alarm(stack, role, function_id, &logs)?;
    add_throttles_alarm(stack, role, function_id, &function_name, logs.command)
}

/// A saga outcome that needs a human, counted from the line the engine writes with the
/// contract's `outcome` field: its metric filter, alarm and runbook section.
struct OutcomeAlarm {
    outcome: &'static str,
    metric: &'static str,
    filter_suffix: &'static str,
    logical_id: &'static str,
    anchor: &'static str,
    title: &'static str,
    meaning: &'static str,
    look_at: Vec<String>,
    commands: Vec<String>,
}

/// The outcomes of sagas driven by `role` that alarm at the first one: a saga in doubt may have
/// charged a customer without anything to show for it, and a compensation failed for good
/// leaves money or stock out of balance; one of either is already too many.
fn outcome_alarms(stack: &StackBuilder<'_>, role: FunctionRole) -> [OutcomeAlarm; 2] {
    let function_name = role.physical_name(&stack.stack_name());
    let logs = FunctionLogs::of(stack, &function_name);
    let retry = format!("{} <transaction_id>", stack.xtask_command("saga retry"));
    [
        OutcomeAlarm {
            outcome: log::SAGA_IN_DOUBT,
            metric: log::SAGAS_IN_DOUBT_METRIC,
            filter_suffix: "SagasInDoubtFilter",
            logical_id: "SagaInDoubtAlarm",
            anchor: "saga-in-doubt",
            title: "saga in doubt",
            meaning: "A saga is parked IN_DOUBT: every attempt of one of its actions ended without a definite answer (a timeout, a lost connection or a 5xx), so the effect may have landed at the provider. Nothing was compensated blind; the saga waits for an operator.",
            look_at: vec![
                "The sagas IN_DOUBT (first command below) and, for each, the step in doubt and its last error (`saga show`): the step's status is IN_DOUBT and the saga's error names it.".to_owned(),
                "Whether the provider answers again (its status page, or the step's latest attempts in the logs), and, at the provider, the request with the idempotency key `<transaction_id>:<step>:<action>`: it tells whether the effect landed.".to_owned(),
                format!(
                    "The function's lines for the saga in {}; the one that parked it carries `outcome` = `{}`.",
                    logs.location,
                    log::SAGA_IN_DOUBT
                ),
                "Once the provider answers, `saga retry` asks the call again with the same idempotency key: the provider answers for what it already did, so nothing is applied twice. A success goes forward; a definite refusal compensates; another answer in doubt parks the saga again. Retry refuses a saga that is not IN_DOUBT.".to_owned(),
            ],
            commands: vec![
                stack.stuck_sagas_command("IN_DOUBT"),
                stack.saga_show_command(),
                logs.command.clone(),
                retry,
            ],
        },
        OutcomeAlarm {
            outcome: log::SAGA_COMPENSATION_FAILED,
            metric: log::SAGAS_COMPENSATION_FAILED_METRIC,
            filter_suffix: "SagasCompensationFailedFilter",
            logical_id: "SagaCompensationFailedAlarm",
            anchor: "saga-compensation-failed",
            title: "saga compensation failed",
            meaning: "A saga ended COMPENSATION_FAILED: a step failed, and the compensation of at least one step it had done failed for good after all its retries (the other compensations still ran). Money or stock may be out of balance until a human settles the step.",
            look_at: vec![
                "The sagas COMPENSATION_FAILED (first command below) and, for each, the steps whose status is COMPENSATION_FAILED and their errors (`saga show`): the saga's error names every compensation that failed.".to_owned(),
                "At the provider, the state of the effect the compensation should have undone (the request with the idempotency key `<transaction_id>:<step>:<action>`), and why it refused the compensation.".to_owned(),
                format!(
                    "The function's lines for the saga in {}; the one that settled it carries `outcome` = `{}`.",
                    logs.location,
                    log::SAGA_COMPENSATION_FAILED
                ),
                "Undo the effect at the provider by hand (or have its support do it), then record what was done in the incident.".to_owned(),
            ],
            commands: vec![
                stack.stuck_sagas_command("COMPENSATION_FAILED"),
                stack.saga_show_command(),
                logs.command,
            ],
        },
    ]
}

/// The metric filters counting the sagas that `role` leaves for a human (from the lines the
/// engine writes with the contract's `outcome` field), and the alarms on the first one.
fn add_outcome_alarms(
    stack: &mut StackBuilder<'_>,
    role: FunctionRole,
    log_group_id: &str,
) -> Result<(), CfnError> {
    let namespace = format!("{}/{}", log::METRIC_NAMESPACE, stack.stack_name());
    for alarm in outcome_alarms(stack, role) {
        stack.add(
            &format!("{}{}", role.logical_id(), alarm.filter_suffix),
            MetricFilter {
                log_group_name: Expr::reference(log_group_id),
                filter_pattern: log::outcome_filter_pattern(alarm.outcome),
                metric_transformations: vec![MetricTransformation {
                    metric_namespace: namespace.clone(),
                    metric_name: alarm.metric.to_owned(),
                    metric_value: "1".to_owned(),
                    default_value: Some(0.0),
                    unit: Some("Count"),
                }],
            },
        )?;
        add_alarm(
            stack,
            AlarmSpec {
                logical_id: alarm.logical_id.to_owned(),
                anchor: alarm.anchor.to_owned(),
                title: alarm.title.to_owned(),
                meaning: alarm.meaning.to_owned(),
                watched: Watched::Metric {
                    namespace: namespace.clone(),
                    name: alarm.metric,
                    dimensions: Vec::new(),
                    statistic: Statistic::Sum,
                },
                threshold: 1.0,
                comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
                look_at: alarm.look_at,
                commands: alarm.commands,
            },
        )?;
    }
    Ok(())
}

/// Where a deployed function's logs are: for reading in the console, and the command that
/// filters them.
struct FunctionLogs {
    location: String,
    command: String,
}

impl FunctionLogs {
    fn of(stack: &StackBuilder<'_>, function_name: &str) -> Self {
        let log_group_name = format!("/aws/lambda/{function_name}");
        FunctionLogs {
            location: stack.logs_location(&log_group_name),
            command: stack.filter_logs_command(&log_group_name),
        }
    }
}

/// A Lambda metric of the function, summed over the period.
fn lambda_metric(name: &'static str, function_id: &str) -> Watched {
    Watched::Metric {
        namespace: "AWS/Lambda".to_owned(),
        name,
        dimensions: vec![dimension("FunctionName", Expr::reference(function_id))],
        statistic: Statistic::Sum,
    }
}

/// The alarm on the function failing: an unhandled error, a timeout or a crash.
fn add_errors_alarm(
    stack: &mut StackBuilder<'_>,
    role: FunctionRole,
    function_id: &str,
    logs: &FunctionLogs,
) -> Result<(), CfnError> {
    let name = role.name();
    let errors = stack.env.alarms.lambda_errors;
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: format!("{function_id}ErrorsAlarm"),
            anchor: format!("{name}-function-errors"),
            title: format!("{name} function errors"),
            meaning: format!(
                "The {name} function failed (an unhandled error, a timeout or a crash) at least {errors} time(s) in a period."
            ),
            watched: lambda_metric("Errors", function_id),
            threshold: f64::from(errors),
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            look_at: vec![
                format!(
                    "The function's JSON logs in {}; every line carries `transaction_id` next to the Lambda request id.",
                    logs.location
                ),
                "The saga's state and step history in the state store (`cargo xtask saga show`)."
                    .to_owned(),
            ],
            commands: vec![logs.command.clone(), stack.saga_show_command()],
        },
    )
}

/// The alarm on invocations of the function refused for lack of concurrency.
fn add_throttles_alarm(
    stack: &mut StackBuilder<'_>,
    role: FunctionRole,
    function_id: &str,
    function_name: &str,
    logs_command: String,
) -> Result<(), CfnError> {
    let env = stack.env;
    let name = role.name();
    let reserved = env.functions.by_role[&role]
        .reserved_concurrency
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: format!("{function_id}ThrottlesAlarm"),
            anchor: format!("{name}-function-throttles"),
            title: format!("{name} function throttles"),
            meaning: format!(
                "Invocations of the {name} function were refused for lack of concurrency (reserved concurrency{reserved} or the account limit)."
            ),
            watched: lambda_metric("Throttles", function_id),
            threshold: f64::from(env.alarms.lambda_throttles),
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
            commands: concurrency_commands(stack, function_name, logs_command),
        },
    )
}

/// The commands that show the function's concurrency limits and use, its logs, and how to
/// deploy a raised limit.
fn concurrency_commands(
    stack: &StackBuilder<'_>,
    function_name: &str,
    logs_command: String,
) -> Vec<String> {
    vec![
        format!(
            "{} --function-name {function_name}",
            stack.aws("lambda get-function-concurrency")
        ),
        format!(
            "{} --query AccountLimit",
            stack.aws("lambda get-account-settings")
        ),
        format!(
            "{} --namespace AWS/Lambda --metric-name ConcurrentExecutions --dimensions Name=FunctionName,Value={function_name} {} --period 60 --statistics Maximum",
            stack.aws("cloudwatch get-metric-statistics"),
            super::LAST_HOUR_SECONDS
        ),
        logs_command,
        "cargo xtask synth".to_owned(),
        stack.xtask_command("deploy"),
    ]
}
