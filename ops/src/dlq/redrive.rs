//! `dlq redrive`: its options, choosing how the messages go back (SQS's message move task on
//! AWS, client-side moves elsewhere, resume invokes for the orchestrator's queue), driving the
//! move task, and reporting what was done.

use std::time::Duration;

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::start_message_move_task::StartMessageMoveTaskError;
use aws_sdk_sqs::types::ListMessageMoveTasksResultEntry;
use serde::Serialize;

use super::client_side::Destination;
use super::{Dlq, Redrive};
use crate::OpsError;
use crate::error::aws_error;
use sagaform_deploy::ProvideMessage;

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

impl Dlq {
    /// Redrives the DLQ's messages (see the module documentation for what that means per
    /// pattern). `progress` receives one line per notable event.
    pub async fn redrive(
        &self,
        options: &RedriveOptions,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<RedriveReport, OpsError> {
        let work_queue_url = match &self.queue.redrive {
            Redrive::ResumeFunction { function_name } => {
                return self
                    .move_client_side(options.max, &Destination::Resume(function_name), None)
                    .await;
            }
            Redrive::ToWorkQueue { work_queue_url } => work_queue_url,
        };
        let destination = Destination::Queue(work_queue_url);
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
        self.redrive_by_move_task(work_queue_url, options, progress)
            .await
    }

    /// Moves every message to the work queue with SQS's `StartMessageMoveTask` and waits for it;
    /// on an emulator that lacks the action, moves them client-side instead.
    async fn redrive_by_move_task(
        &self,
        work_queue_url: &str,
        options: &RedriveOptions,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<RedriveReport, OpsError> {
        let source_arn = match &self.queue.arn {
            Some(arn) => arn.clone(),
            None => self.queue_arn(&self.queue.url).await?,
        };
        let destination_arn = self.queue_arn(work_queue_url).await?;
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
                let note = emulator_lacks_move_task(&error);
                let destination = Destination::Queue(work_queue_url);
                return self.move_client_side(None, &destination, Some(note)).await;
            }
            Err(error) => return Err(aws_error("SQS.StartMessageMoveTask")(error)),
        };
        progress(&format!(
            "message move task started ({}): {} -> {}",
            task_handle.as_deref().unwrap_or("no handle"),
            self.queue.name(),
            work_queue_url.rsplit('/').next().unwrap_or(work_queue_url)
        ));
        let status = self
            .wait_for_move_task(&source_arn, task_handle.as_deref(), options, progress)
            .await?;
        self.move_task_report(work_queue_url, status)
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
            let status = move_task_status(&tasks, task_handle);
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

    /// The report of a finished (or still running) move task; a failed one stops the redrive.
    fn move_task_report(
        &self,
        work_queue_url: &str,
        status: MoveTaskStatus,
    ) -> Result<RedriveReport, OpsError> {
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
            destination: work_queue_url.to_owned(),
            moved: u64::try_from(status.moved).unwrap_or(0),
            transaction_ids: Vec::new(),
            skipped: Vec::new(),
            task: Some(status),
            note: None,
        })
    }
}

/// The note explaining the client-side fallback when the emulator refused
/// `StartMessageMoveTask`.
fn emulator_lacks_move_task(error: &SdkError<StartMessageMoveTaskError, HttpResponse>) -> String {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    // moto answers an unimplemented action with an HTML error page: its status says more than
    // the parse error of the page.
    let answer = match (error.code(), error.raw_response()) {
        (None, Some(raw)) => format!("HTTP {}", raw.status().as_u16()),
        _ => error.readable_message(),
    };
    format!("the emulator does not implement StartMessageMoveTask ({answer}): moved client-side")
}

/// The status of the task `task_handle` among the listed ones (the newest when it is not
/// listed, or when no handle is known).
fn move_task_status(
    tasks: &[ListMessageMoveTasksResultEntry],
    task_handle: Option<&str>,
) -> MoveTaskStatus {
    let task = tasks
        .iter()
        .find(|t| task_handle.is_none() || t.task_handle() == task_handle)
        .or_else(|| tasks.first());
    MoveTaskStatus {
        task_handle: task_handle.map(str::to_owned),
        status: task
            .and_then(|t| t.status())
            .unwrap_or("UNKNOWN")
            .to_owned(),
        moved: task.map_or(0, |t| t.approximate_number_of_messages_moved()),
        to_move: task.and_then(|t| t.approximate_number_of_messages_to_move()),
        failure_reason: task.and_then(|t| t.failure_reason()).map(str::to_owned),
    }
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
