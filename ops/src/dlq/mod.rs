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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName,
};
use sagaform_contract::message::TRANSACTION_ID_ATTRIBUTE;
use sagaform_contract::resume::{resume_event, transaction_of_event_or_record};
use sagaform_contract::template::outputs;
use sagaform_deploy::confirm::{Confirm, ConfirmAnswer, Expect};
use sagaform_stacks::Pattern;
use serde::Serialize;
use serde_json::Value;

use crate::error::{aws_error, readable_message};
use crate::time::{now_millis, rfc3339_from_millis};
use crate::{Deployed, OpsError, OpsRefusal};

/// How long a listed or redriven message stays hidden from other consumers while this tool
/// holds it; long enough for one batch, short enough that a crash of the tool releases it soon.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(60);

/// Longest a body summary gets, in characters.
const SUMMARY_CHARS: usize = 160;

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

/// One message on a DLQ, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqMessage {
    /// SQS message id.
    pub message_id: String,
    /// The saga: the `transaction_id` message attribute, else the body's.
    pub transaction_id: Option<String>,
    /// Receives before this listing (SQS's ApproximateReceiveCount less the listing's own).
    pub receive_count: Option<u64>,
    /// When the message was first sent (to the work queue, for a dead-lettered one).
    pub sent_at: Option<String>,
    /// Seconds since it was sent.
    pub age_seconds: Option<i64>,
    /// FIFO message group, when the queue is FIFO.
    pub message_group_id: Option<String>,
    /// String message attributes.
    pub attributes: BTreeMap<String, String>,
    /// The last error, for Lambda invocation records (`condition: errorMessage`).
    pub error: Option<String>,
    /// The body, shortened to one line.
    pub body_summary: String,
}

/// What `dlq list` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqListing {
    /// Queue name.
    pub queue: String,
    /// Queue URL.
    pub queue_url: String,
    /// Messages visible before the listing (SQS's approximation).
    pub approximate_visible: u64,
    /// Messages held by another consumer at the time (they cannot be listed now).
    pub approximate_in_flight: u64,
    /// The messages listed, oldest first; all were released back to the queue.
    pub messages: Vec<DlqMessage>,
    /// Whether `--max` stopped the listing before the queue was exhausted.
    pub truncated: bool,
}

/// How a redrive moves messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedriveMethod {
    /// `StartMessageMoveTask` on AWS; client-side on an emulator without it, with `--max`, or
    /// for the orchestrator's resume queue.
    #[default]
    Auto,
    /// Always receive, send and delete from this machine.
    ClientSide,
}

/// Options of a redrive.
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    /// Move at most this many messages (forces the client-side method).
    pub max: Option<usize>,
    /// How to move them.
    pub method: RedriveMethod,
    /// How long to wait for a `StartMessageMoveTask` to finish before reporting it as running.
    pub wait: Duration,
    /// How often to poll its progress.
    pub poll_interval: Duration,
}

impl Default for RedriveOptions {
    fn default() -> Self {
        RedriveOptions {
            max: None,
            method: RedriveMethod::Auto,
            wait: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// How a redrive was carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedriveMode {
    /// SQS's message move task.
    MessageMoveTask,
    /// Receive, send to the work queue, delete from the DLQ.
    ClientSideMove,
    /// Receive, asynchronous Invoke with the resume event, delete from the DLQ.
    ResumeInvoke,
}

/// What a redrive did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// Queue name.
    pub queue: String,
    /// How.
    pub mode: RedriveMode,
    /// Where the messages went (queue URL or function name).
    pub destination: String,
    /// Messages taken off the DLQ after their destination accepted them.
    pub moved: u64,
    /// The transaction ids redriven, in order (client-side modes).
    pub transaction_ids: Vec<String>,
    /// Messages left on the DLQ on purpose, with the reason (resume records naming no saga).
    pub skipped: Vec<SkippedMessage>,
    /// The move task's handle and final status (message move task mode).
    pub task: Option<MoveTaskStatus>,
    /// Why the preferred method was not used, when it was not.
    pub note: Option<String>,
}

/// A message a redrive left on the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedMessage {
    /// SQS message id.
    pub message_id: String,
    /// Why.
    pub reason: String,
}

/// The state of a message move task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveTaskStatus {
    /// Handle to cancel it with (`aws sqs cancel-message-move-task`).
    pub task_handle: Option<String>,
    /// RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED.
    pub status: String,
    /// Messages moved so far.
    pub moved: i64,
    /// Messages it set out to move.
    pub to_move: Option<i64>,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
}

/// Who may purge, and how to ask.
pub struct PurgeGuard<'a> {
    /// The env's name (for messages).
    pub env_name: &'a str,
    /// Whether the env is production.
    pub production: bool,
    /// `--force-prod` was given.
    pub force_prod: bool,
    /// Asks for the queue name (or approves everything with `--yes`).
    pub confirm: &'a dyn Confirm,
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Queue name.
    pub queue: String,
    /// Messages on the queue just before the purge (SQS's approximation, in flight included).
    pub approximate_purged: u64,
}

/// Received messages this tool holds hidden; released on every path that does not delete them.
struct Held {
    receipts: Vec<(String, String)>,
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

    /// Lists up to `max` messages (all when `None`) and releases them; nothing is consumed.
    pub async fn list(&self, max: Option<usize>) -> Result<DlqListing, OpsError> {
        let (approximate_visible, approximate_in_flight) = self.counts().await?;
        let mut held = Held {
            receipts: Vec::new(),
        };
        let result = self.receive_all(max, &mut held).await;
        let release = self.release(&mut held).await;
        let (messages, truncated) = result?;
        release?;
        let mut listed: Vec<DlqMessage> = messages.iter().map(describe_message).collect();
        listed.sort_by_key(|m| std::cmp::Reverse(m.age_seconds));
        Ok(DlqListing {
            queue: self.queue.name().to_owned(),
            queue_url: self.queue.url.clone(),
            approximate_visible,
            approximate_in_flight,
            messages: listed,
            truncated,
        })
    }

    /// Receives every visible message (or `max` of them), keeping them hidden in `held`.
    async fn receive_all(
        &self,
        max: Option<usize>,
        held: &mut Held,
    ) -> Result<(Vec<Message>, bool), OpsError> {
        let mut messages = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let remaining = max.map_or(10, |max| max.saturating_sub(messages.len()).min(10));
            if remaining == 0 {
                // One more look tells whether --max cut the listing short.
                let more = self.counts().await?.0 > 0;
                return Ok((messages, more));
            }
            let batch = self.receive(remaining, DEFAULT_HOLD).await?;
            if batch.is_empty() {
                return Ok((messages, false));
            }
            for message in batch {
                let (Some(id), Some(receipt)) = (&message.message_id, &message.receipt_handle)
                else {
                    continue;
                };
                held.receipts.push((id.clone(), receipt.clone()));
                if seen.insert(id.clone()) {
                    messages.push(message);
                }
            }
        }
    }

    /// One ReceiveMessage with every attribute. A one-second long poll asks every SQS server,
    /// so an empty answer means the queue has no visible message (short polls sample a subset).
    async fn receive(&self, count: usize, hold: Duration) -> Result<Vec<Message>, OpsError> {
        let answer = self
            .sqs
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(i32::try_from(count).unwrap_or(10))
            .visibility_timeout(i32::try_from(hold.as_secs()).unwrap_or(60))
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(aws_error("SQS.ReceiveMessage"))?;
        Ok(answer.messages.unwrap_or_default())
    }

    /// Makes the held messages visible again at once.
    async fn release(&self, held: &mut Held) -> Result<(), OpsError> {
        let receipts = std::mem::take(&mut held.receipts);
        let mut failures = Vec::new();
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, (_, receipt))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect::<Vec<_>>();
            let answer = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(aws_error("SQS.ChangeMessageVisibilityBatch"))?;
            for failed in answer.failed {
                let message_id = failed
                    .id
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| chunk.get(i))
                    .map_or("?", |(id, _)| id.as_str())
                    .to_owned();
                failures.push(format!(
                    "{message_id}: {}",
                    failed.message.unwrap_or(failed.code)
                ));
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(OpsError::Aws {
            operation: "SQS.ChangeMessageVisibilityBatch",
            message: format!(
                "could not release {} message(s) (they become visible again after {} s): {}",
                failures.len(),
                DEFAULT_HOLD.as_secs(),
                failures.join("; ")
            ),
        })
    }

    /// Visible and in-flight message counts.
    async fn counts(&self) -> Result<(u64, u64), OpsError> {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(aws_error("SQS.GetQueueAttributes"))?
            .attributes
            .unwrap_or_default();
        let count = |name: &QueueAttributeName| {
            attributes
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            count(&QueueAttributeName::ApproximateNumberOfMessages),
            count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    async fn queue_arn(&self, url: &str) -> Result<String, OpsError> {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(aws_error("SQS.GetQueueAttributes"))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| OpsError::Aws {
                operation: "SQS.GetQueueAttributes",
                message: format!("queue {url} has no QueueArn attribute"),
            })
    }

    /// Redrives the DLQ's messages (see the module documentation for what that means per
    /// pattern). `progress` receives one line per notable event.
    pub async fn redrive(
        &self,
        options: &RedriveOptions,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<RedriveReport, OpsError> {
        let work_queue_url = match &self.queue.redrive {
            Redrive::ResumeFunction { function_name } => {
                let function_name = function_name.clone();
                return self
                    .move_client_side(options.max, &Destination::Resume(&function_name), None)
                    .await;
            }
            Redrive::ToWorkQueue { work_queue_url } => work_queue_url.clone(),
        };
        let destination = Destination::Queue(&work_queue_url);
        if options.method == RedriveMethod::ClientSide {
            return self.move_client_side(options.max, &destination, None).await;
        }
        if options.max.is_some() {
            let note =
                "--max limits the count, which StartMessageMoveTask cannot: moved client-side";
            return self
                .move_client_side(options.max, &destination, Some(note.to_owned()))
                .await;
        }
        let source_arn = match &self.queue.arn {
            Some(arn) => arn.clone(),
            None => self.queue_arn(&self.queue.url).await?,
        };
        let destination_arn = self.queue_arn(&work_queue_url).await?;
        let started = self
            .sqs
            .start_message_move_task()
            .source_arn(&source_arn)
            .destination_arn(&destination_arn)
            .send()
            .await;
        let task_handle = match started {
            Ok(answer) => answer.task_handle,
            Err(error) if self.emulator => {
                // Nothing moved when the call failed, so falling back cannot duplicate or lose.
                use aws_sdk_sqs::error::ProvideErrorMetadata;
                // moto answers an unimplemented action with an HTML error page: its status says
                // more than the parse error of the page.
                let answer = match (error.code(), error.raw_response()) {
                    (None, Some(raw)) => format!("HTTP {}", raw.status().as_u16()),
                    _ => readable_message(&error),
                };
                let note = format!(
                    "the emulator does not implement StartMessageMoveTask ({answer}): moved client-side"
                );
                return self.move_client_side(None, &destination, Some(note)).await;
            }
            Err(error) => return Err(aws_error("SQS.StartMessageMoveTask")(error)),
        };
        progress(&format!(
            "message move task started ({}): {} -> {}",
            task_handle.as_deref().unwrap_or("no handle"),
            self.queue.name(),
            work_queue_url.rsplit('/').next().unwrap_or(&work_queue_url)
        ));
        let status = self
            .wait_for_move_task(&source_arn, task_handle.as_deref(), options, progress)
            .await?;
        if status.status == "FAILED" {
            return Err(OpsError::RedriveStopped {
                moved: usize::try_from(status.moved).unwrap_or(0),
                reason: format!(
                    "message move task failed: {}",
                    status
                        .failure_reason
                        .as_deref()
                        .unwrap_or("no reason given")
                ),
            });
        }
        Ok(RedriveReport {
            queue: self.queue.name().to_owned(),
            mode: RedriveMode::MessageMoveTask,
            destination: work_queue_url.clone(),
            moved: u64::try_from(status.moved).unwrap_or(0),
            transaction_ids: Vec::new(),
            skipped: Vec::new(),
            task: Some(status),
            note: None,
        })
    }

    /// Polls ListMessageMoveTasks until the task leaves RUNNING or the wait ends.
    async fn wait_for_move_task(
        &self,
        source_arn: &str,
        task_handle: Option<&str>,
        options: &RedriveOptions,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<MoveTaskStatus, OpsError> {
        let deadline = tokio::time::Instant::now() + options.wait;
        loop {
            let tasks = self
                .sqs
                .list_message_move_tasks()
                .source_arn(source_arn)
                .max_results(10)
                .send()
                .await
                .map_err(aws_error("SQS.ListMessageMoveTasks"))?
                .results
                .unwrap_or_default();
            let task = tasks
                .iter()
                .find(|t| task_handle.is_none() || t.task_handle() == task_handle)
                .or_else(|| tasks.first());
            let status = MoveTaskStatus {
                task_handle: task_handle.map(str::to_owned),
                status: task
                    .and_then(|t| t.status())
                    .unwrap_or("UNKNOWN")
                    .to_owned(),
                moved: task.map_or(0, |t| t.approximate_number_of_messages_moved()),
                to_move: task.and_then(|t| t.approximate_number_of_messages_to_move()),
                failure_reason: task.and_then(|t| t.failure_reason()).map(str::to_owned),
            };
            let running = matches!(status.status.as_str(), "RUNNING" | "CANCELLING");
            if !running || tokio::time::Instant::now() >= deadline {
                if running {
                    progress(&format!(
                        "still running after {} s; follow it with `aws sqs list-message-move-tasks --source-arn {source_arn}`",
                        options.wait.as_secs()
                    ));
                }
                return Ok(status);
            }
            progress(&format!(
                "moving: {} of {} message(s)",
                status.moved,
                status
                    .to_move
                    .map_or_else(|| "?".to_owned(), |n| n.to_string())
            ));
            tokio::time::sleep(options.poll_interval).await;
        }
    }

    /// Receive, hand each message to its destination, delete it from the DLQ once accepted.
    ///
    /// Stops at the first failed hand-over, releasing every message not yet handed over; a
    /// message already seen in this run (it came back to the DLQ because it failed again)
    /// also ends the run, so a redrive never loops.
    async fn move_client_side(
        &self,
        max: Option<usize>,
        destination: &Destination<'_>,
        note: Option<String>,
    ) -> Result<RedriveReport, OpsError> {
        let fifo = matches!(destination, Destination::Queue(url) if url.ends_with(".fifo"));
        let mut report = RedriveReport {
            queue: self.queue.name().to_owned(),
            mode: match destination {
                Destination::Queue(_) => RedriveMode::ClientSideMove,
                Destination::Resume(_) => RedriveMode::ResumeInvoke,
            },
            destination: match destination {
                Destination::Queue(url) | Destination::Resume(url) => (*url).to_owned(),
            },
            moved: 0,
            transaction_ids: Vec::new(),
            skipped: Vec::new(),
            task: None,
            note,
        };
        let mut seen = HashSet::new();
        let mut held = Held {
            receipts: Vec::new(),
        };
        let outcome = async {
            loop {
                let handled = report.moved as usize + report.skipped.len();
                let remaining = max.map_or(10, |max| max.saturating_sub(handled).min(10));
                if remaining == 0 {
                    return Ok(());
                }
                let batch = self.receive(remaining, DEFAULT_HOLD).await?;
                if batch.is_empty() {
                    return Ok(());
                }
                let mut came_back = false;
                for message in &batch {
                    if let (Some(id), Some(receipt)) = (&message.message_id, &message.receipt_handle)
                    {
                        held.receipts.push((id.clone(), receipt.clone()));
                        came_back |= !seen.insert(id.clone());
                    }
                }
                if came_back {
                    return Ok(());
                }
                for message in &batch {
                    let (Some(id), Some(receipt)) = (&message.message_id, &message.receipt_handle)
                    else {
                        continue;
                    };
                    let described = describe_message(message);
                    let handed = match destination {
                        Destination::Queue(url) => self.send_copy(url, message, fifo).await,
                        Destination::Resume(function) => {
                            let Some(transaction_id) = described.transaction_id.clone() else {
                                report.skipped.push(SkippedMessage {
                                    message_id: id.clone(),
                                    reason: "no resume.transaction_id in the invocation record"
                                        .to_owned(),
                                });
                                continue;
                            };
                            self.invoke_resume(function, &transaction_id).await
                        }
                    };
                    if let Err(reason) = handed {
                        return Err(OpsError::RedriveStopped {
                            moved: report.moved as usize,
                            reason: format!(
                                "message {id} was not accepted by {} ({reason}); it and every message not yet moved stay on the DLQ",
                                report.destination
                            ),
                        });
                    }
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue.url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .map_err(|error| OpsError::RedriveStopped {
                            moved: report.moved as usize,
                            reason: format!(
                                "message {id} was handed to {} but could not be deleted from the DLQ ({}): it reappears there after {} s and may be redriven twice, which the saga's idempotency absorbs",
                                report.destination,
                                readable_message(&error),
                                DEFAULT_HOLD.as_secs()
                            ),
                        })?;
                    held.receipts.retain(|(held_id, _)| held_id != id);
                    report.moved += 1;
                    if let Some(transaction_id) = described.transaction_id {
                        report.transaction_ids.push(transaction_id);
                    }
                }
            }
        }
        .await;
        let release = self.release(&mut held).await;
        outcome?;
        release?;
        Ok(report)
    }

    /// Sends a copy of a DLQ message to the work queue: same body and message attributes; on
    /// FIFO the same group and a deduplication id unique to this DLQ message, so the copy is
    /// not swallowed as a duplicate of the original send, yet a retried copy of it is.
    async fn send_copy(
        &self,
        queue_url: &str,
        message: &Message,
        fifo: bool,
    ) -> Result<(), String> {
        let system = message.attributes.clone().unwrap_or_default();
        let mut send = self
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(message.body.clone().unwrap_or_default())
            .set_message_attributes(message.message_attributes.clone().filter(|a| !a.is_empty()));
        if fifo {
            let transaction_id = transaction_id_of(message);
            let group = system
                .get(&MessageSystemAttributeName::MessageGroupId)
                .cloned()
                .or(transaction_id.clone())
                .unwrap_or_else(|| "redrive".to_owned());
            let original = system
                .get(&MessageSystemAttributeName::MessageDeduplicationId)
                .cloned()
                .or(transaction_id)
                .unwrap_or_default();
            let mut deduplication = format!(
                "{original}:redrive:{}",
                message.message_id.as_deref().unwrap_or_default()
            );
            deduplication.truncate(128);
            send = send
                .message_group_id(group)
                .message_deduplication_id(deduplication);
        }
        send.send()
            .await
            .map(|_| ())
            .map_err(|error| readable_message(&error))
    }

    /// The resume event the orchestrator's api function sends itself, invoked asynchronously.
    async fn invoke_resume(&self, function_name: &str, transaction_id: &str) -> Result<(), String> {
        let payload = resume_event(transaction_id);
        let answer = self
            .lambda
            .invoke()
            .function_name(function_name)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|error| {
                use aws_sdk_lambda::error::ProvideErrorMetadata;
                match (error.code(), error.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    _ => aws_sdk_lambda::error::DisplayErrorContext(&error).to_string(),
                }
            })?;
        if answer.status_code != 202 {
            return Err(format!(
                "Lambda.Invoke answered status {} instead of 202 Accepted",
                answer.status_code
            ));
        }
        Ok(())
    }

    /// Deletes every message of the DLQ, after the production and confirmation checks.
    pub async fn purge(&self, guard: &PurgeGuard<'_>) -> Result<PurgeReport, OpsError> {
        let queue = self.queue.name().to_owned();
        if guard.production && !guard.force_prod {
            return Err(OpsRefusal::ProductionProtected {
                env: guard.env_name.to_owned(),
                queue,
            }
            .into());
        }
        let (visible, in_flight) = self.counts().await?;
        let what = format!("purging queue {queue} in env {}", guard.env_name);
        let question = format!(
            "Purge {} message(s) from queue {queue} in env {}? They are deleted for good; their sagas stay as they are.",
            visible + in_flight,
            guard.env_name
        );
        match guard
            .confirm
            .ask(&question, &Expect::Exactly(queue.clone()))
        {
            ConfirmAnswer::Yes => {}
            ConfirmAnswer::No => return Err(OpsRefusal::NotConfirmed { what }.into()),
            ConfirmAnswer::CannotAsk => return Err(OpsRefusal::NeedsConfirmation { what }.into()),
        }
        self.sqs
            .purge_queue()
            .queue_url(&self.queue.url)
            .send()
            .await
            .map_err(aws_error("SQS.PurgeQueue"))?;
        Ok(PurgeReport {
            queue,
            approximate_purged: visible + in_flight,
        })
    }
}

/// Where a client-side redrive hands messages.
enum Destination<'a> {
    /// A queue URL.
    Queue(&'a str),
    /// A function name, invoked with the resume event.
    Resume(&'a str),
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

/// The listing view of a received message.
fn describe_message(message: &Message) -> DlqMessage {
    let system: HashMap<MessageSystemAttributeName, String> =
        message.attributes.clone().unwrap_or_default();
    let number = |name: MessageSystemAttributeName| -> Option<i64> {
        system.get(&name).and_then(|v| v.parse().ok())
    };
    let sent = number(MessageSystemAttributeName::SentTimestamp);
    let body = message.body.as_deref().unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|record| {
        let condition = record.pointer("/requestContext/condition")?.as_str()?;
        let message = record
            .pointer("/responsePayload/errorMessage")
            .and_then(Value::as_str)
            .unwrap_or("no error message");
        Some(format!("{condition}: {message}"))
    });
    let one_line = parsed
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_else(|| body.split_whitespace().collect::<Vec<_>>().join(" "));
    let mut body_summary: String = one_line.chars().take(SUMMARY_CHARS).collect();
    if one_line.chars().count() > SUMMARY_CHARS {
        body_summary.push('…');
    }
    DlqMessage {
        message_id: message.message_id.clone().unwrap_or_default(),
        transaction_id: transaction_id_of(message),
        receive_count: number(MessageSystemAttributeName::ApproximateReceiveCount)
            .map(|count| u64::try_from(count - 1).unwrap_or(0)),
        sent_at: sent.map(rfc3339_from_millis),
        age_seconds: sent.map(|sent| (now_millis() - sent) / 1000),
        message_group_id: system
            .get(&MessageSystemAttributeName::MessageGroupId)
            .cloned(),
        attributes: message
            .message_attributes
            .iter()
            .flatten()
            .filter_map(|(name, value)| Some((name.clone(), value.string_value()?.to_owned())))
            .collect(),
        error,
        body_summary,
    }
}

/// The human-readable form of a listing.
pub fn render_listing(listing: &DlqListing) -> String {
    let mut out = format!(
        "queue {}: {} message(s) listed ({} visible, {} in flight before listing){}\n",
        listing.queue,
        listing.messages.len(),
        listing.approximate_visible,
        listing.approximate_in_flight,
        if listing.truncated {
            "; more remain (raise --max)"
        } else {
            ""
        }
    );
    for message in &listing.messages {
        out.push_str(&format!(
            "- {}  transaction {}  received {} time(s)  age {}  sent {}\n",
            message.message_id,
            message.transaction_id.as_deref().unwrap_or("-"),
            message
                .receive_count
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            message
                .age_seconds
                .map_or_else(|| "?".to_owned(), human_age),
            message.sent_at.as_deref().unwrap_or("?"),
        ));
        if let Some(error) = &message.error {
            out.push_str(&format!("    error: {error}\n"));
        }
        out.push_str(&format!("    body: {}\n", message.body_summary));
    }
    out
}

/// The human-readable form of a redrive.
pub fn render_redrive(report: &RedriveReport) -> String {
    let mut out = String::new();
    if let Some(note) = &report.note {
        out.push_str(&format!("note: {note}\n"));
    }
    let how = match report.mode {
        RedriveMode::MessageMoveTask => "moved by a message move task to",
        RedriveMode::ClientSideMove => "moved to",
        RedriveMode::ResumeInvoke => "resumed by an asynchronous invoke of",
    };
    out.push_str(&format!(
        "queue {}: {} message(s) {how} {}\n",
        report.queue, report.moved, report.destination
    ));
    if let Some(task) = &report.task {
        out.push_str(&format!(
            "task {}: {}{}\n",
            task.task_handle.as_deref().unwrap_or("-"),
            task.status,
            task.failure_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    for transaction_id in &report.transaction_ids {
        out.push_str(&format!("- {transaction_id}\n"));
    }
    for skipped in &report.skipped {
        out.push_str(&format!(
            "left on the queue: {} ({})\n",
            skipped.message_id, skipped.reason
        ));
    }
    out
}

/// The human-readable form of a purge.
pub fn render_purge(report: &PurgeReport) -> String {
    format!(
        "queue {}: purged (about {} message(s))\n",
        report.queue, report.approximate_purged
    )
}

fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}
