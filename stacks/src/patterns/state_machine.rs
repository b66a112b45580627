//! Pattern `stepfunctions`: the Standard state machine generated from the saga definition, its
//! role, its execution log group and its alarms.

use sagaform_contract::template::outputs;
use sagaform_saga::PURCHASE;

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
    let env = stack.env;
    let machine = Machine {
        logical_id: "StateMachine",
    };
    let log_group = "StateMachineLogGroup";
    let role = "StateMachineRole";

    stack.add(
        log_group,
        LogGroup {
            // The `/aws/vendedlogs/` prefix keeps CloudWatch Logs' resource policy, which log
            // delivery writes to, from growing with every state machine.
            log_group_name: Expr::sub("/aws/vendedlogs/states/${AWS::StackName}"),
            retention_in_days: Some(env.log_retention_days),
            tags: stack.tags.list(),
        },
    )?;

    let step_arn = Expr::get_att(&step.logical_id, "Arn");
    stack.add(
        role,
        Role {
            description: "Role of the saga state machine: invokes the step function and delivers execution logs.".to_owned(),
            assume_role_policy_document: PolicyDocument::assumed_by("states.amazonaws.com"),
            policies: vec![InlinePolicy {
                policy_name: "saga-state-machine".to_owned(),
                policy_document: PolicyDocument::new(vec![
                    Statement::allow(
                        "InvokeStepFunction",
                        vec![actions::LAMBDA_INVOKE_FUNCTION],
                        vec![step_arn.clone(), Expr::sub(format!("${{{}.Arn}}:*", step.logical_id))],
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
    )?;

    let definition = Definition::for_saga(
        &PURCHASE,
        env.functions.by_role[&FunctionRole::Step].timeout,
    );
    stack.add(
        machine.logical_id,
        StateMachine {
            state_machine_type: StateMachineType::Standard,
            definition_string: Expr::sub_with(
                definition.to_json(),
                [(STEP_FUNCTION_ARN_VARIABLE, step_arn)],
            ),
            role_arn: Expr::get_att(role, "Arn"),
            logging_configuration: LoggingConfiguration {
                destinations: vec![LogDestination {
                    cloud_watch_logs_log_group: CloudWatchLogsLogGroup {
                        log_group_arn: Expr::get_att(log_group, "Arn"),
                    },
                }],
                // Inputs hold the purchase request; the execution history keeps them for those
                // allowed to read it, the logs do not.
                include_execution_data: false,
                level: LogLevel::Error,
            },
            tags: stack.tags.list(),
        },
    )?;

    let dimensions = || {
        vec![dimension(
            outputs::STATE_MACHINE_ARN,
            Expr::reference(machine.logical_id),
        )]
    };
    let machine_arn_lookup = stack.stack_output_command(outputs::STATE_MACHINE_ARN);
    // Executions are named by transaction id, so the execution ARN follows from the machine's.
    let execution_arn = format!(
        "\"$({machine_arn_lookup} | sed 's/:stateMachine:/:execution:/'):<transaction_id>\""
    );
    let history = format!(
        "{} --execution-arn {execution_arn}",
        stack.aws("stepfunctions get-execution-history")
    );
    let list_executions = stack.aws("stepfunctions list-executions");
    let list_failed = |status: &str| {
        format!(
            "{list_executions} --status-filter {status} --state-machine-arn \"$({machine_arn_lookup})\""
        )
    };
    // Redrive continues an execution from the Task that did not finish, with the same input
    // and name; Tasks that succeeded are not run again.
    let redrive = [
        "# only when the saga is still RUNNING or COMPENSATING in the state store:".to_owned(),
        format!(
            "{} --execution-arn {execution_arn}",
            stack.aws("stepfunctions redrive-execution")
        ),
    ];
    let step_logs = format!("/aws/lambda/{}-step", stack.stack_name());
    let specs = [
        (
            "ExecutionsFailed",
            "executions-failed",
            "executions failed",
            "A saga execution ended in a Fail state: `SagaCompensated` (a step failed for good and every step done was undone; the purchase was refused) or `CompensationFailed` (a compensation failed after all its retries: money or stock may be out of balance and a human must settle it).",
            "FAILED",
            false,
            vec![
                "The execution's history (name = `transaction_id`): the failed Task, its error and cause, and which compensations ran.".to_owned(),
                format!("The step function's logs for that `transaction_id` in {}.", stack.logs_location(&step_logs)),
                "The saga's row in the state store: COMPENSATED needs no action; COMPENSATION_FAILED does.".to_owned(),
            ],
        ),
        (
            "ExecutionsTimedOut",
            "executions-timed-out",
            "executions timed out",
            "A saga execution ran longer than the worst case of all its Tasks with every retry: something beyond retries is stuck, and the saga may be half done.",
            "TIMED_OUT",
            true,
            vec![
                "The execution's history: the last Task started and whether it ever returned.".to_owned(),
                "The saga's state in the state store: if it is RUNNING or COMPENSATING, fix the cause, then redrive the execution (below) so it continues from the Task that did not finish.".to_owned(),
            ],
        ),
        (
            "ExecutionsAborted",
            "executions-aborted",
            "executions aborted",
            "A saga execution was stopped by someone or something (StopExecution, a deploy): its saga may be half done.",
            "ABORTED",
            true,
            vec![
                "CloudTrail `StopExecution` events: who stopped it.".to_owned(),
                "The saga's state in the state store: if it is RUNNING or COMPENSATING, redrive the execution (below) so it continues from the Task that was stopped.".to_owned(),
            ],
        ),
    ];
    let step_logs_command = stack.filter_logs_command(&step_logs);
    let saga_show = stack.saga_show_command();
    for (metric, anchor, title, meaning, status, redrivable, look_at) in specs {
        let mut commands = vec![
            list_failed(status),
            history.clone(),
            saga_show.clone(),
            step_logs_command.clone(),
        ];
        if redrivable {
            commands.extend(redrive.iter().cloned());
        }
        add_alarm(
            stack,
            AlarmSpec {
                logical_id: format!("StateMachine{metric}Alarm"),
                anchor: anchor.to_owned(),
                title: title.to_owned(),
                meaning: meaning.to_owned(),
                watched: Watched::Metric {
                    namespace: "AWS/States",
                    name: metric,
                    dimensions: dimensions(),
                    statistic: Statistic::Sum,
                },
                threshold: 0.0,
                comparison: ComparisonOperator::GreaterThanThreshold,
                look_at,
                commands,
            },
        )?;
    }

    stack.output(
        outputs::STATE_MACHINE_ARN,
        "ARN of the saga state machine; executions are named by transaction id.",
        Expr::reference(machine.logical_id),
    )?;
    Ok(machine)
}
