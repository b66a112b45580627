//! The dead-letter queues of a stack: list their messages without consuming them, redrive them,
//! purge them.
//!
//! - Pattern `sqs`: the work queue's DLQ. Redrive moves messages back to the work queue, with
//!   SQS's own `StartMessageMoveTask` on AWS, or client-side (receive, send, then delete) where
//!   the emulator lacks it or `--max` limits the count. A message leaves the DLQ only after the
//!   work queue accepted its copy, so nothing is lost; a crash between the two leaves a
//!   duplicate, which the worker handles idempotently.
//! - Pattern `orchestrator`: the `ResumeDeadLetterQueue`, holding Lambda's records of failed
//!   asynchronous self-invocations. Redrive re-sends the resume event the function sends itself
//!   (`{"resume": {"transaction_id": ...}}`, asynchronous Invoke of `<stack>-api`) and deletes
//!   the record once Lambda accepted the invocation; the resume is idempotent, and if it fails
//!   again Lambda puts a fresh record on the queue.
//! - Pattern `stepfunctions` has no DLQ: a failed saga ends in a failed execution, which
//!   `saga show` displays.
//!
//! Listing receives messages with a visibility timeout and releases them at once
//! (`ChangeMessageVisibility` 0); each listing counts as one receive of every message listed.
//!
//! This module holds the queue and its entry point, [`Dlq`]; the commands live in `listing`
//! (`dlq list`), `redrive` (choosing the redrive mode and the message move task) with
//! `client_side` (moving or resuming message by message) and `purge`; `queue` has the SQS calls
//! they share; `window` has the check a redrive makes first, that no saga it resends is older
//! than the providers' idempotency window without an operator's yes.

mod client_side;
mod listing;
mod purge;
mod queue;
mod redrive;
mod window;

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use sagaform_contract::message::TRANSACTION_ID_ATTRIBUTE;
use sagaform_contract::resume::transaction_of_event_or_record;
use sagaform_contract::template::outputs;
use sagaform_stacks::Pattern;
use serde::Serialize;
use serde_json::Value;

use crate::{Deployed, OpsError};

pub use listing::{DlqListing, DlqMessage, render_listing};
pub use purge::{PurgeGuard, PurgeReport, render_purge};
pub use redrive::{
    MoveTaskStatus, RedriveMethod, RedriveMode, RedriveOptions, RedriveReport, SkippedMessage,
    render_redrive,
};
pub use window::{StaleSaga, WindowGuard, smallest_window};

/// How long a listed or redriven message stays hidden from other consumers while this tool
/// holds it; long enough for one batch, short enough that a crash of the tool releases it soon.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(60);

/// What redriving a DLQ's messages means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Redrive {
    /// Move the messages back to the work queue (pattern `sqs`).
    ToWorkQueue {
        /// The work queue's URL.
        work_queue_url: String,
    },
    /// Invoke the function asynchronously with the resume event of each record (pattern
    /// `orchestrator`).
    ResumeFunction {
        /// The api function's name.
        function_name: String,
    },
}

/// A dead-letter queue and what redriving it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterQueue {
    /// Queue URL.
    pub url: String,
    /// Queue ARN, when known (else read from the queue).
    pub arn: Option<String>,
    /// Where redriven messages go.
    pub redrive: Redrive,
}

impl DeadLetterQueue {
    /// The DLQ of a deployed stack, from its outputs.
    pub fn of_stack(deployed: &Deployed) -> Result<DeadLetterQueue, OpsError> {
        match deployed.pattern {
            Pattern::Sqs => Ok(DeadLetterQueue {
                url: deployed
                    .output(outputs::DEAD_LETTER_QUEUE_URL, "the dlq commands")?
                    .to_owned(),
                arn: deployed.outputs.get("DeadLetterQueueArn").cloned(),
                redrive: Redrive::ToWorkQueue {
                    work_queue_url: deployed
                        .output(outputs::WORK_QUEUE_URL, "dlq redrive")?
                        .to_owned(),
                },
            }),
            Pattern::Orchestrator => Ok(DeadLetterQueue {
                url: deployed
                    .output(outputs::RESUME_DEAD_LETTER_QUEUE_URL, "the dlq commands")?
                    .to_owned(),
                arn: deployed.outputs.get("ResumeDeadLetterQueueArn").cloned(),
                redrive: Redrive::ResumeFunction {
                    function_name: deployed.function_name("api"),
                },
            }),
            Pattern::StepFunctions => Err(no_dlq(&deployed.env_name)),
        }
    }

    /// The queue's name (the last part of its URL).
    pub fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }
}

/// Refuses a pattern without a dead-letter queue (stepfunctions: a failed saga ends in a failed
/// execution), pointing at what to use instead; checked before any AWS call.
pub fn require_dlq(pattern: Pattern, env_name: &str) -> Result<(), OpsError> {
    match pattern {
        Pattern::Sqs | Pattern::Orchestrator => Ok(()),
        Pattern::StepFunctions => Err(no_dlq(env_name)),
    }
}

fn no_dlq(env_name: &str) -> OpsError {
    OpsError::NotApplicable(format!(
        "pattern stepfunctions has no dead-letter queue: a failed saga ends in a failed execution; inspect it with `cargo xtask saga show --pattern stepfunctions --env {env_name} <transaction_id>`"
    ))
}

/// A DLQ with the clients to act on it.
#[derive(Debug, Clone)]
pub struct Dlq {
    queue: DeadLetterQueue,
    sqs: aws_sdk_sqs::Client,
    lambda: aws_sdk_lambda::Client,
    emulator: bool,
}

impl Dlq {
    /// A DLQ reached with this AWS configuration; `emulator` enables the fallbacks for what the
    /// emulator lacks.
    pub fn new(aws: &SdkConfig, queue: DeadLetterQueue, emulator: bool) -> Dlq {
        Dlq {
            queue,
            sqs: aws_sdk_sqs::Client::new(aws),
            lambda: aws_sdk_lambda::Client::new(aws),
            emulator,
        }
    }

    /// The DLQ of a deployed stack.
    pub fn of_stack(deployed: &Deployed) -> Result<Dlq, OpsError> {
        Ok(Dlq::new(
            &deployed.aws,
            DeadLetterQueue::of_stack(deployed)?,
            deployed.endpoint_url.is_some(),
        ))
    }

    /// The queue acted on.
    pub fn queue(&self) -> &DeadLetterQueue {
        &self.queue
    }
}

/// The saga of a message: the `transaction_id` attribute, else the body's `transaction_id`,
/// else (a Lambda invocation record) `requestPayload.resume.transaction_id`.
fn transaction_id_of(message: &Message) -> Option<String> {
    let from_attribute = message
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(TRANSACTION_ID_ATTRIBUTE))
        .and_then(MessageAttributeValue::string_value)
        .map(str::to_owned);
    from_attribute.or_else(|| {
        let body: Value = serde_json::from_str(message.body.as_deref()?).ok()?;
        let from_work_message = body.get("transaction_id").and_then(Value::as_str);
        from_work_message
            .or_else(|| transaction_of_event_or_record(&body))
            .map(str::to_owned)
    })
}
