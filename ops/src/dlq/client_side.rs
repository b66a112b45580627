//! Redriving message by message from this machine: receive a batch, hand each message to its
//! destination (a copy sent to the work queue, or the orchestrator's resume event invoked
//! asynchronously), and delete it from the DLQ only once the destination accepted it.

use std::collections::HashSet;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use sagaform_contract::resume::resume_event;

use super::queue::Held;
use super::redrive::{RedriveMode, RedriveReport, SkippedMessage};
use super::{DEFAULT_HOLD, Dlq, transaction_id_of};
use crate::OpsError;
use sagaform_deploy::ProvideMessage;

/// Where a client-side redrive hands messages.
pub(super) enum Destination<'a> {
    /// A queue URL.
    Queue(&'a str),
    /// A function name, invoked with the resume event.
    Resume(&'a str),
}

impl Dlq {
    /// Receive, hand each message to its destination, delete it from the DLQ once accepted.
    ///
    /// Stops at the first failed hand-over, releasing every message not yet handed over; a
    /// message already seen in this run (it came back to the DLQ because it failed again)
    /// also ends the run, so a redrive never loops.
    pub(super) async fn move_client_side(
        &self,
        max: Option<usize>,
        destination: &Destination<'_>,
        note: Option<String>,
    ) -> Result<RedriveReport, OpsError> {
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
        let mut held = Held::default();
        let outcome = self
            .move_batches(max, destination, &mut report, &mut held)
            .await;
        let release = self.release(&mut held).await;
        outcome?;
        release?;
        Ok(report)
    }

    /// Moves batch after batch until the DLQ is empty, `max` is reached or a message comes back.
    async fn move_batches(
        &self,
        max: Option<usize>,
        destination: &Destination<'_>,
        report: &mut RedriveReport,
        held: &mut Held,
    ) -> Result<(), OpsError> {
        let fifo = matches!(destination, Destination::Queue(url) if url.ends_with(".fifo"));
        let mut seen = HashSet::new();
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
                if let Some(id) = held.hold(message) {
                    came_back |= !seen.insert(id);
                }
            }
            if came_back {
                return Ok(());
            }
            for message in &batch {
                self.move_one(message, destination, fifo, report, held)
                    .await?;
            }
        }
    }

    /// Hands one held message to the destination and deletes it from the DLQ; a resume record
    /// naming no saga is left on the DLQ and reported as skipped.
    async fn move_one(
        &self,
        message: &Message,
        destination: &Destination<'_>,
        fifo: bool,
        report: &mut RedriveReport,
        held: &mut Held,
    ) -> Result<(), OpsError> {
        let (Some(id), Some(receipt)) = (&message.message_id, &message.receipt_handle) else {
            return Ok(());
        };
        let transaction_id = transaction_id_of(message);
        let handed = match destination {
            Destination::Queue(url) => self.send_copy(url, message, fifo).await,
            Destination::Resume(function) => {
                let Some(transaction_id) = transaction_id.as_deref() else {
                    report.skipped.push(SkippedMessage {
                        message_id: id.clone(),
                        reason: "no resume.transaction_id in the invocation record".to_owned(),
                    });
                    return Ok(());
                };
                self.invoke_resume(function, transaction_id).await
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
        self.delete_handed(id, receipt, report).await?;
        held.receipts.retain(|(held_id, _)| held_id != id);
        report.moved += 1;
        if let Some(transaction_id) = transaction_id {
            report.transaction_ids.push(transaction_id);
        }
        Ok(())
    }

    /// Deletes a message its destination accepted; a failure stops the redrive, warning that
    /// the message reappears and may be redriven twice.
    async fn delete_handed(
        &self,
        id: &str,
        receipt: &str,
        report: &RedriveReport,
    ) -> Result<(), OpsError> {
        self.sqs
            .delete_message()
            .queue_url(&self.queue.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|error| OpsError::RedriveStopped {
                moved: report.moved as usize,
                reason: format!(
                    "message {id} was handed to {} but could not be deleted from the DLQ ({}): it reappears there after {} s and may be redriven twice, which the saga's idempotency absorbs",
                    report.destination,
                    error.readable_message(),
                    DEFAULT_HOLD.as_secs()
                ),
            })
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
        let mut send = self
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(message.body.clone().unwrap_or_default())
            .set_message_attributes(message.message_attributes.clone().filter(|a| !a.is_empty()));
        if fifo {
            let (group, deduplication) = fifo_copy_ids(message);
            send = send
                .message_group_id(group)
                .message_deduplication_id(deduplication);
        }
        send.send()
            .await
            .map(|_| ())
            .map_err(|error| error.readable_message())
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
}

/// The message group and deduplication id of a FIFO copy: the original's group (else the saga,
/// else `redrive`) and the original's deduplication id suffixed with this DLQ message's id, cut
/// to SQS's 128 characters.
fn fifo_copy_ids(message: &Message) -> (String, String) {
    let system = message.attributes.clone().unwrap_or_default();
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
    (group, deduplication)
}
