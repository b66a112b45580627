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
use sagaform_contract::template::{ARTIFACT_BUCKET_PARAMETER, code_key_parameter};
use sagaform_saga::PURCHASE;

use crate::cfn::cloudwatch::{ComparisonOperator, Statistic};
use crate::cfn::iam::{InlinePolicy, PolicyDocument, Role, Statement, actions};
use crate::cfn::lambda::{
    Architecture, Code, Environment, Function, LogFormat, LoggingConfig, Runtime,
};
use crate::cfn::logs::LogGroup;
use crate::cfn::{CfnError, Expr};
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

    fn grants(&self, env: &EnvConfig) -> Grants {
        match *self {
            Capability::SendsToQueue(queues) => Grants {
                statements: vec![Statement::allow(
                    "SendToWorkQueue",
                    vec![actions::SQS_SEND_MESSAGE],
                    vec![Expr::get_att(queues.work_queue, "Arn")],
                )],
                variables: vec![(
                    vars::QUEUE_URL.to_owned(),
                    Expr::reference(queues.work_queue),
                )],
            },
            Capability::ConsumesQueue(queues) => Grants {
                statements: vec![Statement::allow(
                    "ConsumeWorkQueue",
                    vec![
                        actions::SQS_RECEIVE_MESSAGE,
                        actions::SQS_DELETE_MESSAGE,
                        actions::SQS_CHANGE_MESSAGE_VISIBILITY,
                        actions::SQS_GET_QUEUE_ATTRIBUTES,
                    ],
                    vec![Expr::get_att(queues.work_queue, "Arn")],
                )],
                variables: vec![(
                    vars::QUEUE_URL.to_owned(),
                    Expr::reference(queues.work_queue),
                )],
            },
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
                variables: PURCHASE
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
    let env = stack.env;
    let settings = &env.functions.by_role[&role];
    let function_id = role.logical_id();
    let role_id = format!("{function_id}Role");
    let log_group_id = format!("{function_id}LogGroup");
    let physical_name = role.physical_name_sub();

    stack.add(
        &log_group_id,
        LogGroup {
            log_group_name: Expr::sub(format!("/aws/lambda/{physical_name}")),
            retention_in_days: Some(env.log_retention_days),
            tags: stack.tags.list(),
        },
    )?;

    let mut capabilities = capabilities.to_vec();
    capabilities.sort_by_key(Capability::rank);
    let grants: Vec<Grants> = capabilities.iter().map(|c| c.grants(env)).collect();

    let mut statements = vec![Statement::allow(
        "WriteOwnLogs",
        vec![
            actions::LOGS_CREATE_LOG_STREAM,
            actions::LOGS_PUT_LOG_EVENTS,
        ],
        vec![Expr::get_att(&log_group_id, "Arn")],
    )];
    statements.extend(store.statements.iter().cloned());
    statements.extend(grants.iter().flat_map(|g| g.statements.iter().cloned()));
    if store.vpc.is_some() {
        statements.extend(vpc_network_statements());
    }
    add_role(stack, role, &role_id, statements)?;

    let mut variables: IndexMap<String, Expr> = IndexMap::new();
    variables.insert(vars::PATTERN.to_owned(), Expr::str(stack.pattern.name()));
    variables.insert(
        vars::STORE.to_owned(),
        Expr::str(env.store(stack.pattern).name()),
    );
    variables.extend(store.variables.iter().cloned());
    variables.extend(grants.into_iter().flat_map(|g| g.variables));
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
                s3_key: Expr::reference(code_key_parameter(role.name())),
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
    add_function_alarms(stack, role, &function_id)?;
    Ok(FunctionRef {
        role,
        logical_id: function_id,
    })
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
    let env = stack.env;
    let settings = &env.functions.by_role[&role];
    let name = role.name();
    let function_name = role.physical_name(&stack.stack_name());
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
                dimensions: vec![dimension("FunctionName", Expr::reference(function_id))],
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
                dimensions: vec![dimension("FunctionName", Expr::reference(function_id))],
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

    Ok(())
}
