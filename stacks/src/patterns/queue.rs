//! Pattern `sqs`: the work queue, its dead-letter queue and the worker's event source mapping.
//!
//! The work queue's visibility timeout covers six worker timeouts plus the batching window (the
//! AWS recommendation, checked again by the policies). The worker retries each step by
//! redelivery and counts the attempts on the step, so the queue's `maxReceiveCount` is the
//! saga's whole redelivery budget plus `max_receive_count`, the deliveries a message may fail
//! for other reasons ([`Saga::max_receive_count`](sagaform_saga::Saga::max_receive_count)); the
//! DLQ keeps messages 14 days (the SQS maximum) and accepts only this work queue as its source. The worker reports partial batch failures so one bad message
//! does not send its whole batch back.

use sagaform_contract::template::outputs;

use crate::cfn::cloudwatch::{ComparisonOperator, Statistic};
use crate::cfn::lambda::{EventSourceMapping, FunctionResponseType, ScalingConfig};
use crate::cfn::sqs::{Queue, RedriveAllowPolicy, RedrivePermission, RedrivePolicy};
use crate::cfn::{CfnError, Expr, Resource};

use super::StackBuilder;
use super::alerting::{AlarmSpec, Watched, add_alarm, add_sustained_alarm, dimension};
use super::functions::FunctionRef;

/// Seconds the DLQ keeps a message: 14 days, the SQS maximum, to leave time to redrive.
pub const DLQ_RETENTION_SECONDS: u32 = 1_209_600;

/// The queues of the stack, by logical id.
#[derive(Debug, Clone)]
pub(crate) struct Queues {
    pub work_queue: &'static str,
    pub dead_letter_queue: &'static str,
}

/// Adds both queues, their alarms and outputs.
pub(super) fn add_queues(stack: &mut StackBuilder<'_>) -> Result<Queues, CfnError> {
    let queues = Queues {
        work_queue: "WorkQueue",
        dead_letter_queue: "DeadLetterQueue",
    };
    let suffix = if stack.env.queue.fifo { ".fifo" } else { "" };
    // The work queue has a fixed name so the DLQ's redrive-allow policy can name its ARN without
    // a dependency cycle (the work queue already depends on the DLQ through its redrive policy).
    let work_queue_name = format!("${{AWS::StackName}}-work{suffix}");
    let worker_logs = format!("/aws/lambda/{}-worker", stack.stack_name());

    add_dead_letter_queue(stack, &queues, suffix, &work_queue_name)?;
    add_dead_letter_queue_alarm(stack, &queues, &worker_logs)?;
    add_work_queue(stack, &queues, &work_queue_name)?;
    add_oldest_message_age_alarm(stack, &queues, &worker_logs)?;
    add_queue_outputs(stack, &queues)?;
    Ok(queues)
}

/// The dead-letter queue, keeping messages as long as SQS allows and accepting only the work
/// queue as its source.
fn add_dead_letter_queue(
    stack: &mut StackBuilder<'_>,
    queues: &Queues,
    suffix: &str,
    work_queue_name: &str,
) -> Result<(), CfnError> {
    let env = stack.env;
    let data_policy = stack.data_policy();
    stack.add(
        queues.dead_letter_queue,
        Resource::new(Queue {
            queue_name: env.queue.fifo.then(|| Expr::sub(format!("${{AWS::StackName}}-dead-letter{suffix}"))),
            fifo_queue: env.queue.fifo,
            sqs_managed_sse_enabled: Some(true),
            kms_master_key_id: None,
            visibility_timeout: seconds(env.queue.visibility_timeout),
            message_retention_period: DLQ_RETENTION_SECONDS,
            redrive_policy: None,
            redrive_allow_policy: Some(RedriveAllowPolicy {
                redrive_permission: RedrivePermission::ByQueue,
                source_queue_arns: vec![Expr::sub(format!(
                    "arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{work_queue_name}"
                ))],
            }),
            tags: stack.tags.list(),
        })
        // The messages are sagas waiting for a human: they outlive the stack outside `local`.
        .with_policies(data_policy),
    )
}

/// The alarm on any message in the dead-letter queue: each is a saga stuck until a human
/// redrives or settles it.
fn add_dead_letter_queue_alarm(
    stack: &mut StackBuilder<'_>,
    queues: &Queues,
    worker_logs: &str,
) -> Result<(), CfnError> {
    let dlq_name = Expr::get_att(queues.dead_letter_queue, "QueueName");
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: "DeadLetterQueueNotEmptyAlarm".to_owned(),
            anchor: "dlq-not-empty".to_owned(),
            title: "DLQ not empty".to_owned(),
            meaning: format!(
                "At least one purchase was received {} times without the worker finishing it ({} deliveries for its steps' own retries, {} more for other failures: a malformed message, a crashed worker, the state store unavailable, or a saga ended COMPENSATION_FAILED) and was moved to the dead-letter queue; its saga is stuck until someone redrives or settles it.",
                stack.saga.max_receive_count(stack.env.queue.max_receive_count),
                stack.saga.redelivery_budget(),
                stack.env.queue.max_receive_count
            ),
            watched: Watched::Metric {
                namespace: "AWS/SQS".to_owned(),
                name: "ApproximateNumberOfMessagesVisible",
                dimensions: vec![dimension("QueueName", dlq_name)],
                statistic: Statistic::Maximum,
            },
            threshold: 0.0,
            comparison: ComparisonOperator::GreaterThanThreshold,
            look_at: vec![
                "The dead-lettered messages: each body and its `transaction_id` message attribute name the saga.".to_owned(),
                format!("The worker's logs for that `transaction_id` in {}: the error of each receive.", stack.logs_location(worker_logs)),
                "The saga's state and steps in the state store: which step failed, and whether compensations ran.".to_owned(),
                "Fix the cause first (a SaaS outage, a bad deploy); a redrive of a message that still fails comes back here.".to_owned(),
            ],
            commands: vec![
                stack.xtask_command("dlq list"),
                stack.saga_show_command(),
                stack.filter_logs_command(worker_logs),
                "# once the cause is fixed (messages move back to the work queue, none is lost):"
                    .to_owned(),
                stack.xtask_command("dlq redrive"),
                "# only for messages whose sagas were settled by hand and must not run again:"
                    .to_owned(),
                stack.dlq_purge_command(),
            ],
        },
    )
}

/// The work queue, under its fixed name, sending a message to the dead-letter queue after the
/// saga's redelivery budget plus `max_receive_count` receives.
fn add_work_queue(
    stack: &mut StackBuilder<'_>,
    queues: &Queues,
    work_queue_name: &str,
) -> Result<(), CfnError> {
    let env = stack.env;
    stack.add(
        queues.work_queue,
        Queue {
            queue_name: Some(Expr::sub(work_queue_name)),
            fifo_queue: env.queue.fifo,
            sqs_managed_sse_enabled: Some(true),
            kms_master_key_id: None,
            visibility_timeout: seconds(env.queue.visibility_timeout),
            message_retention_period: seconds(env.queue.message_retention),
            redrive_policy: Some(RedrivePolicy {
                dead_letter_target_arn: Expr::get_att(queues.dead_letter_queue, "Arn"),
                max_receive_count: stack.saga.max_receive_count(env.queue.max_receive_count),
            }),
            redrive_allow_policy: None,
            tags: stack.tags.list(),
        },
    )
}

/// The alarm on the age of the work queue's oldest message: the worker is falling behind.
fn add_oldest_message_age_alarm(
    stack: &mut StackBuilder<'_>,
    queues: &Queues,
    worker_logs: &str,
) -> Result<(), CfnError> {
    let oldest_message_age = stack.env.alarms.oldest_message_age;
    add_sustained_alarm(
        stack,
        AlarmSpec {
            logical_id: "WorkQueueOldestMessageAgeAlarm".to_owned(),
            anchor: "work-queue-oldest-message-age".to_owned(),
            title: "work queue oldest message age".to_owned(),
            meaning: format!(
                "The oldest message on the work queue is older than {} s: the worker is not keeping up, failing and retrying, or not running.",
                oldest_message_age.as_secs()
            ),
            watched: Watched::Metric {
                namespace: "AWS/SQS".to_owned(),
                name: "ApproximateAgeOfOldestMessage",
                dimensions: vec![dimension(
                    "QueueName",
                    Expr::get_att(queues.work_queue, "QueueName"),
                )],
                statistic: Statistic::Maximum,
            },
            threshold: oldest_message_age.as_secs() as f64,
            comparison: ComparisonOperator::GreaterThanThreshold,
            look_at: vec![
                format!(
                    "The worker's errors and throttles (its alarms) and its logs in {}.",
                    stack.logs_location(worker_logs)
                ),
                "Whether the event source mapping is enabled and at its maximum concurrency."
                    .to_owned(),
                "Sagas stuck in PENDING or RUNNING in the state store.".to_owned(),
            ],
            commands: vec![
                stack.filter_logs_command(worker_logs),
                stack.stuck_sagas_command("PENDING"),
                stack.saga_show_command(),
            ],
        },
    )
}

/// The queues' URLs and the DLQ's ARN, for operators and the ops tools.
fn add_queue_outputs(stack: &mut StackBuilder<'_>, queues: &Queues) -> Result<(), CfnError> {
    stack.output(
        outputs::WORK_QUEUE_URL,
        "URL of the work queue the API sends purchases to.",
        Expr::reference(queues.work_queue),
    )?;
    stack.output(
        outputs::DEAD_LETTER_QUEUE_URL,
        "URL of the dead-letter queue.",
        Expr::reference(queues.dead_letter_queue),
    )?;
    stack.output(
        "DeadLetterQueueArn",
        "ARN of the dead-letter queue.",
        Expr::get_att(queues.dead_letter_queue, "Arn"),
    )
}

/// Connects the worker to the work queue.
pub(super) fn add_worker_mapping(
    stack: &mut StackBuilder<'_>,
    queues: &Queues,
    worker: &FunctionRef,
) -> Result<(), CfnError> {
    let env = stack.env;
    stack.add(
        "WorkerEventSourceMapping",
        EventSourceMapping {
            event_source_arn: Expr::get_att(queues.work_queue, "Arn"),
            function_name: Expr::reference(&worker.logical_id),
            batch_size: env.queue.batch_size,
            // FIFO queues do not support a batching window.
            maximum_batching_window_in_seconds: (!env.queue.fifo)
                .then(|| seconds(env.queue.batching_window)),
            function_response_types: vec![FunctionResponseType::ReportBatchItemFailures],
            scaling_config: ScalingConfig {
                maximum_concurrency: env.queue.maximum_concurrency,
            },
            enabled: true,
            tags: stack.tags.list(),
        },
    )
}

fn seconds(duration: std::time::Duration) -> u32 {
    u32::try_from(super::ceil_seconds(duration)).unwrap_or(u32::MAX)
}
