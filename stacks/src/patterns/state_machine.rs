//! Pattern `stepfunctions`: the Standard state machine generated from the saga definition, its
//! role, its execution log group and its alarms.

use sagaform_contract::template::outputs;

use crate::asl::{Definition, STEP_FUNCTION_ARN_VARIABLE};
use crate::cfn::cloudwatch::{ComparisonOperator, Statistic};
use crate::cfn::iam::{InlinePolicy, PolicyDocument, Role, Statement, actions};
use crate::cfn::logs::LogGroup;
use crate::cfn::stepfunctions::{
    CloudWatchLogsLogGroup, LogDestination, LogLevel, LoggingConfiguration, StateMachine,
    StateMachineType,
};
use crate::cfn::{CfnError, Expr};
use crate::config::FunctionRole;

use super::StackBuilder;
use super::alerting::{AlarmSpec, Watched, add_alarm, dimension};
use super::functions::FunctionRef;

/// Logical id of the log group receiving execution logs.
const LOG_GROUP: &str = "StateMachineLogGroup";
/// Logical id of the state machine's role.
const ROLE: &str = "StateMachineRole";

/// The state machine of the stack.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub logical_id: &'static str,
}

/// Adds the state machine invoking `step`.
pub(super) fn add_state_machine(
    stack: &mut StackBuilder<'_>,
    step: &FunctionRef,
) -> Result<Machine, CfnError> {
    let machine = Machine {
        logical_id: "StateMachine",
    };
    add_log_group(stack)?;
    add_role(stack, step)?;
    add_machine(stack, &machine, step)?;
    add_execution_alarms(stack, &machine)?;
    stack.output(
        outputs::STATE_MACHINE_ARN,
        "ARN of the saga state machine; executions are named by transaction id.",
        Expr::reference(machine.logical_id),
    )?;
    Ok(machine)
}

/// The log group receiving the machine's execution logs, kept as long as the functions' logs.
fn add_log_group(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    stack.add(
        LOG_GROUP,
        LogGroup {
            // The `/aws/vendedlogs/` prefix keeps CloudWatch Logs' resource policy, which log
            // delivery writes to, from growing with every state machine.
            log_group_name: Expr::sub("/aws/vendedlogs/states/${AWS::StackName}"),
            retention_in_days: Some(stack.env.log_retention_days),
            tags: stack.tags.list(),
        },
    )
}

/// The machine's role: it may invoke the `step` function (any version) and deliver its logs,
/// nothing else.
fn add_role(stack: &mut StackBuilder<'_>, step: &FunctionRef) -> Result<(), CfnError> {
    stack.add(
        ROLE,
        Role {
            description: "Role of the saga state machine: invokes the step function and delivers execution logs.".to_owned(),
            assume_role_policy_document: PolicyDocument::assumed_by("states.amazonaws.com"),
            policies: vec![InlinePolicy {
                policy_name: "saga-state-machine".to_owned(),
                policy_document: PolicyDocument::new(vec![
                    Statement::allow(
                        "InvokeStepFunction",
                        vec![actions::LAMBDA_INVOKE_FUNCTION],
                        vec![Expr::get_att(&step.logical_id, "Arn"), Expr::sub(format!("${{{}.Arn}}:*", step.logical_id))],
                    ),
                    // Log delivery for Step Functions is configured through these CloudWatch
                    // Logs APIs, which support no resource-level permissions: AWS documents
                    // `Resource: "*"` for them. The actions are still named one by one.
                    Statement::allow(
                        "DeliverExecutionLogs",
                        vec![
                            actions::LOGS_CREATE_LOG_DELIVERY,
                            actions::LOGS_GET_LOG_DELIVERY,
                            actions::LOGS_UPDATE_LOG_DELIVERY,
                            actions::LOGS_DELETE_LOG_DELIVERY,
                            actions::LOGS_LIST_LOG_DELIVERIES,
                            actions::LOGS_PUT_RESOURCE_POLICY,
                            actions::LOGS_DESCRIBE_RESOURCE_POLICIES,
                            actions::LOGS_DESCRIBE_LOG_GROUPS,
                        ],
                        vec![Expr::str("*")],
                    ),
                ]),
            }],
            tags: stack.tags.list(),
        },
    )
}

/// The Standard state machine running the definition generated from the saga, each Task allowed
/// the `step` function's timeout, logging errors without execution data.
fn add_machine(
    stack: &mut StackBuilder<'_>,
    machine: &Machine,
    step: &FunctionRef,
) -> Result<(), CfnError> {
    let definition = Definition::for_saga(
        stack.saga,
        stack.env.functions.by_role[&FunctionRole::Step].timeout,
    );
    stack.add(
        machine.logical_id,
        StateMachine {
            state_machine_type: StateMachineType::Standard,
            definition_string: Expr::sub_with(
                definition.to_json(),
                [(
                    STEP_FUNCTION_ARN_VARIABLE,
                    Expr::get_att(&step.logical_id, "Arn"),
                )],
            ),
            role_arn: Expr::get_att(ROLE, "Arn"),
            logging_configuration: LoggingConfiguration {
                destinations: vec![LogDestination {
                    cloud_watch_logs_log_group: CloudWatchLogsLogGroup {
                        log_group_arn: Expr::get_att(LOG_GROUP, "Arn"),
                    },
                }],
                // Inputs hold the purchase request; the execution history keeps them for those
                // allowed to read it, the logs do not.
                include_execution_data: false,
                level: LogLevel::Error,
            },
            tags: stack.tags.list(),
        },
    )
}

/// One execution outcome that needs a human: its metric, runbook entry and whether a redrive
/// can finish the saga.
struct ExecutionAlarm {
    metric: &'static str,
    anchor: &'static str,
    title: &'static str,
    meaning: &'static str,
    status: &'static str,
    redrivable: bool,
    look_at: Vec<String>,
}

/// The failed, timed out and aborted execution alarms.
fn execution_alarms(stack: &StackBuilder<'_>, step_logs: &str) -> [ExecutionAlarm; 3] {
    [
        ExecutionAlarm {
            metric: "ExecutionsFailed",
            anchor: "executions-failed",
            title: "executions failed",
            meaning: "A saga execution failed: it ended in `CompensationFailed` (a compensation failed after all its retries, the others still ran: money or stock may be out of balance and a human must settle it), in `InDoubt` (a step got no definite answer; see the saga-in-doubt section), or by an error no state caught (a States.* runtime error). A compensated saga is not a failed execution: it ends in the Succeed state `Compensated`.",
            status: "FAILED",
            redrivable: false,
            look_at: vec![
                "The execution's history (name = `transaction_id`): the failed Task, its error and cause, and which compensations ran.".to_owned(),
                format!("The step function's logs for that `transaction_id` in {}.", stack.logs_location(step_logs)),
                "The saga's row in the state store: COMPENSATION_FAILED needs a human (see the saga-compensation-failed section), IN_DOUBT an operator's retry; a saga still RUNNING or COMPENSATING after a runtime error needs the cause fixed and a new execution.".to_owned(),
            ],
        },
        ExecutionAlarm {
            metric: "ExecutionsTimedOut",
            anchor: "executions-timed-out",
            title: "executions timed out",
            meaning: "A saga execution ran longer than the worst case of all its Tasks with every retry: something beyond retries is stuck, and the saga may be half done.",
            status: "TIMED_OUT",
            redrivable: true,
            look_at: vec![
                "The execution's history: the last Task started and whether it ever returned.".to_owned(),
                "The saga's state in the state store: if it is RUNNING or COMPENSATING, fix the cause, then redrive the execution (below) so it continues from the Task that did not finish.".to_owned(),
            ],
        },
        ExecutionAlarm {
            metric: "ExecutionsAborted",
            anchor: "executions-aborted",
            title: "executions aborted",
            meaning: "A saga execution was stopped by someone or something (StopExecution, a deploy): its saga may be half done.",
            status: "ABORTED",
            redrivable: true,
            look_at: vec![
                "CloudTrail `StopExecution` events: who stopped it.".to_owned(),
                "The saga's state in the state store: if it is RUNNING or COMPENSATING, redrive the execution (below) so it continues from the Task that was stopped.".to_owned(),
            ],
        },
    ]
}

/// The runbook commands every execution alarm shares: list the executions with a status, read
/// one's history, show its saga, read the step function's logs, and redrive an execution.
struct ExecutionCommands {
    list_executions: String,
    machine_arn_lookup: String,
    history: String,
    saga_show: String,
    step_logs: String,
    redrive: [String; 2],
}

impl ExecutionCommands {
    fn new(stack: &StackBuilder<'_>, step_logs: &str) -> ExecutionCommands {
        let machine_arn_lookup = stack.stack_output_command(outputs::STATE_MACHINE_ARN);
        // Executions are named by transaction id, so the execution ARN follows from the
        // machine's.
        let execution_arn = format!(
            "\"$({machine_arn_lookup} | sed 's/:stateMachine:/:execution:/'):<transaction_id>\""
        );
        ExecutionCommands {
            list_executions: stack.aws("stepfunctions list-executions"),
            history: format!(
                "{} --execution-arn {execution_arn}",
                stack.aws("stepfunctions get-execution-history")
            ),
            saga_show: stack.saga_show_command(),
            step_logs: stack.filter_logs_command(step_logs),
            // Redrive continues an execution from the Task that did not finish, with the same
            // input and name; Tasks that succeeded are not run again.
            redrive: [
                "# only when the saga is still RUNNING or COMPENSATING in the state store:"
                    .to_owned(),
                format!(
                    "{} --execution-arn {execution_arn}",
                    stack.aws("stepfunctions redrive-execution")
                ),
            ],
            machine_arn_lookup,
        }
    }

    /// The commands of the alarm on executions ending with `status`.
    fn for_status(&self, status: &str, redrivable: bool) -> Vec<String> {
        let mut commands = vec![
            format!(
                "{} --status-filter {status} --state-machine-arn \"$({})\"",
                self.list_executions, self.machine_arn_lookup
            ),
            self.history.clone(),
            self.saga_show.clone(),
            self.step_logs.clone(),
        ];
        if redrivable {
            commands.extend(self.redrive.iter().cloned());
        }
        commands
    }
}

/// An alarm on each execution outcome that leaves a saga for a human.
fn add_execution_alarms(stack: &mut StackBuilder<'_>, machine: &Machine) -> Result<(), CfnError> {
    let step_logs = format!("/aws/lambda/{}-step", stack.stack_name());
    let commands = ExecutionCommands::new(stack, &step_logs);
    for alarm in execution_alarms(stack, &step_logs) {
        add_alarm(
            stack,
            AlarmSpec {
                logical_id: format!("StateMachine{}Alarm", alarm.metric),
                anchor: alarm.anchor.to_owned(),
                title: alarm.title.to_owned(),
                meaning: alarm.meaning.to_owned(),
                watched: Watched::Metric {
                    namespace: "AWS/States".to_owned(),
                    name: alarm.metric,
                    dimensions: vec![dimension(
                        outputs::STATE_MACHINE_ARN,
                        Expr::reference(machine.logical_id),
                    )],
                    statistic: Statistic::Sum,
                },
                threshold: 0.0,
                comparison: ComparisonOperator::GreaterThanThreshold,
                look_at: alarm.look_at,
                commands: commands.for_status(alarm.status, alarm.redrivable),
            },
        )?;
    }
    Ok(())
}
