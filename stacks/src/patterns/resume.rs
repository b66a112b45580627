//! Pattern `orchestrator`: the asynchronous continuation of sagas that outlast the HTTP API.
//!
//! API Gateway cuts an HTTP API integration off after 30 s, while the saga's worst case (every
//! step and compensation with all retries) is far longer. So the api function answers within
//! [`RESPONSE_BUDGET_MILLIS`] (passed to it as `SAGAFORM_RESPONSE_BUDGET_MS`): when the saga is
//! not terminal by then, it answers `202 Accepted` with the status URL and invokes itself
//! asynchronously (`InvocationType: Event`) with `{"resume": {"transaction_id": "..."}}`, and
//! that invocation runs the saga to its end under the function's full timeout.
//!
//! That asynchronous path must end somewhere a human sees, like every other one: Lambda retries
//! a failed resume [`MAXIMUM_RETRY_ATTEMPTS`] times, then sends the invocation record (the
//! resume event, the error) to the resume dead-letter queue, which has an alarm and a runbook
//! section. The function's name is fixed (`${AWS::StackName}-api`), so its role can name its own
//! ARN without a reference to the function, which would be a dependency cycle.

use sagaform_contract::template::outputs;

use crate::cfn::cloudwatch::{ComparisonOperator, Statistic};
use crate::cfn::iam::{Statement, actions};
use crate::cfn::lambda::{DestinationConfig, EventInvokeConfig, OnFailure};
use crate::cfn::sqs::Queue;
use crate::cfn::{CfnError, Expr, Resource};
use crate::config::FunctionRole;

use super::StackBuilder;
use super::alerting::{AlarmSpec, Watched, add_alarm, dimension};
use super::api::INTEGRATION_TIMEOUT_MILLIS;
use super::functions::FunctionRef;
use super::queue::DLQ_RETENTION_SECONDS;

/// How long the orchestrator's api function may work on a request before it answers: the HTTP
/// API's 30 s limit minus room for a cold start, the state write and the response.
pub const RESPONSE_BUDGET_MILLIS: u32 = 25_000;
const _: () = assert!(RESPONSE_BUDGET_MILLIS + 5_000 <= INTEGRATION_TIMEOUT_MILLIS);

/// Retries Lambda makes of a failed resume invocation (the most it allows); the saga runtime
/// resumes from the state store, so a retry repeats no step that already succeeded.
pub const MAXIMUM_RETRY_ATTEMPTS: u32 = 2;

/// Seconds a resume event may wait for an attempt (throttling) before it goes to the
/// dead-letter queue: a purchase a player waits on for an hour needs a human, not more waiting.
pub const MAXIMUM_EVENT_AGE_SECONDS: u32 = 3_600;

/// Logical id of the queue receiving failed resume invocations.
pub const RESUME_DEAD_LETTER_QUEUE: &str = "ResumeDeadLetterQueue";

/// The queue of failed resumes, added before the function that sends to it.
#[derive(Debug, Clone)]
pub(super) struct ResumeQueue {
    pub logical_id: &'static str,
}

impl ResumeQueue {
    /// The role statements the api function needs to resume sagas: invoke itself, and let
    /// Lambda deliver failed invocation records (it uses the function's role to send them).
    pub fn statements(&self) -> Vec<Statement> {
        vec![
            Statement::allow(
                "ResumeSagaInvokingItself",
                vec![actions::LAMBDA_INVOKE_FUNCTION],
                vec![Expr::sub(format!(
                    "arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:${{AWS::StackName}}-{}",
                    FunctionRole::Api.name()
                ))],
            ),
            Statement::allow(
                "SendFailedResumesToDeadLetterQueue",
                vec![actions::SQS_SEND_MESSAGE],
                vec![Expr::get_att(self.logical_id, "Arn")],
            ),
        ]
    }
}

/// Adds the dead-letter queue of failed resumes, its alarm, runbook section and outputs.
pub(super) fn add_resume_dead_letter_queue(
    stack: &mut StackBuilder<'_>,
) -> Result<ResumeQueue, CfnError> {
    let queue = ResumeQueue {
        logical_id: RESUME_DEAD_LETTER_QUEUE,
    };
    let data_policy = stack.data_policy();
    stack.add(
        queue.logical_id,
        Resource::new(Queue {
            queue_name: None,
            fifo_queue: false,
            sqs_managed_sse_enabled: Some(true),
            kms_master_key_id: None,
            // Nothing consumes it automatically; a human reads it with the runbook's commands.
            visibility_timeout: 60,
            message_retention_period: DLQ_RETENTION_SECONDS,
            redrive_policy: None,
            redrive_allow_policy: None,
            tags: stack.tags.list(),
        })
        // The messages are sagas waiting for a human: they outlive the stack outside `local`.
        .with_policies(data_policy),
    )?;
    add_resume_failed_alarm(stack, &queue)?;
    stack.output(
        outputs::RESUME_DEAD_LETTER_QUEUE_URL,
        "URL of the queue holding resume invocations of the api function that failed for good.",
        Expr::reference(queue.logical_id),
    )?;
    stack.output(
        "ResumeDeadLetterQueueArn",
        "ARN of the queue holding failed resume invocations.",
        Expr::get_att(queue.logical_id, "Arn"),
    )?;
    Ok(queue)
}

/// The alarm on any failed resume in the queue: each is a saga stuck until a human resumes or
/// settles it.
fn add_resume_failed_alarm(
    stack: &mut StackBuilder<'_>,
    queue: &ResumeQueue,
) -> Result<(), CfnError> {
    let api_logs = format!(
        "/aws/lambda/{}-{}",
        stack.stack_name(),
        FunctionRole::Api.name()
    );
    let commands = resume_failed_commands(stack, &api_logs);
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: format!("{RESUME_DEAD_LETTER_QUEUE}NotEmptyAlarm"),
            anchor: "orchestrator-resume-failed".to_owned(),
            title: "orchestrator resume failed".to_owned(),
            meaning: format!(
                "A saga that outlasted the HTTP API's response budget was handed to an asynchronous invocation of the api function, which failed {} times or waited over {} s; the saga is stuck until someone resumes or settles it.",
                MAXIMUM_RETRY_ATTEMPTS + 1,
                MAXIMUM_EVENT_AGE_SECONDS
            ),
            watched: Watched::Metric {
                namespace: "AWS/SQS".to_owned(),
                name: "ApproximateNumberOfMessagesVisible",
                dimensions: vec![dimension(
                    "QueueName",
                    Expr::get_att(queue.logical_id, "QueueName"),
                )],
                statistic: Statistic::Maximum,
            },
            threshold: 0.0,
            comparison: ComparisonOperator::GreaterThanThreshold,
            look_at: vec![
                "The invocation records on the queue: `requestPayload.resume.transaction_id` names the saga, `responsePayload` holds the function's last error, `requestContext.condition` says whether retries ran out or the event grew too old.".to_owned(),
                format!("The api function's logs for that `transaction_id` in {}: the error of each attempt.", stack.logs_location(&api_logs)),
                "The saga's state and steps in the state store: which step it reached, and whether compensations ran.".to_owned(),
                "Fix the cause first (a SaaS outage, a bad deploy, throttling); a resume that still fails comes back here.".to_owned(),
            ],
            commands,
        },
    )
}

/// What to run on a failed resume: read the queue, show the saga, read the api function's
/// logs, resume the saga as the function does itself, and purge the queue once all are handled.
fn resume_failed_commands(stack: &StackBuilder<'_>, api_logs: &str) -> Vec<String> {
    let function_name = format!("{}-{}", stack.stack_name(), FunctionRole::Api.name());
    let queue_url = stack.stack_output_command(outputs::RESUME_DEAD_LETTER_QUEUE_URL);
    vec![
        format!(
            "{} --queue-url \"$({queue_url})\" --max-number-of-messages 10 --visibility-timeout 0 --query 'Messages[].Body' --output text",
            stack.aws("sqs receive-message")
        ),
        stack.saga_show_command(),
        stack.filter_logs_command(api_logs),
        "# once the cause is fixed, resume each saga (the same event the function sends itself):"
            .to_owned(),
        format!(
            "{} --function-name {function_name} --invocation-type Event --cli-binary-format raw-in-base64-out --payload '{{\"resume\":{{\"transaction_id\":\"<transaction_id>\"}}}}' /dev/null",
            stack.aws("lambda invoke")
        ),
        "# only when every saga on the queue is resumed or settled by hand:".to_owned(),
        format!(
            "{} --queue-url \"$({queue_url})\"",
            stack.aws("sqs purge-queue")
        ),
    ]
}

/// Bounds the api function's asynchronous retries and sends what still fails to the queue.
pub(super) fn add_event_invoke_config(
    stack: &mut StackBuilder<'_>,
    function: &FunctionRef,
    queue: &ResumeQueue,
) -> Result<(), CfnError> {
    stack.add(
        &format!("{}EventInvokeConfig", function.logical_id),
        EventInvokeConfig {
            function_name: Expr::reference(&function.logical_id),
            qualifier: "$LATEST".to_owned(),
            maximum_retry_attempts: MAXIMUM_RETRY_ATTEMPTS,
            maximum_event_age_in_seconds: MAXIMUM_EVENT_AGE_SECONDS,
            destination_config: DestinationConfig {
                on_failure: OnFailure {
                    destination: Expr::get_att(queue.logical_id, "Arn"),
                },
            },
        },
    )
}
