//! The SQS calls every DLQ command builds on: receiving messages while holding them hidden,
//! releasing them again, and reading a queue's message counts and ARN.

use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};

use super::{DEFAULT_HOLD, Dlq};
use crate::OpsError;
use crate::error::aws_error;

/// Received messages this tool holds hidden; released on every path that does not delete them.
#[derive(Default)]
pub(super) struct Held {
    /// Message id and receipt handle of each held receive.
    pub(super) receipts: Vec<(String, String)>,
}

impl Held {
    /// Records a received message as held and returns its id; `None` (nothing held) for a
    /// message without id or receipt handle.
    pub(super) fn hold(&mut self, message: &Message) -> Option<String> {
        let (Some(id), Some(receipt)) = (&message.message_id, &message.receipt_handle) else {
            return None;
        };
        self.receipts.push((id.clone(), receipt.clone()));
        Some(id.clone())
    }
}

impl Dlq {
    /// One ReceiveMessage with every attribute. A one-second long poll asks every SQS server,
    /// so an empty answer means the queue has no visible message (short polls sample a subset).
    pub(super) async fn receive(
        &self,
        count: usize,
        hold: Duration,
    ) -> Result<Vec<Message>, OpsError> {
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
    pub(super) async fn release(&self, held: &mut Held) -> Result<(), OpsError> {
        let receipts = std::mem::take(&mut held.receipts);
        let mut failures = Vec::new();
        for chunk in receipts.chunks(10) {
            let answer = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(release_entries(chunk)))
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
    pub(super) async fn counts(&self) -> Result<(u64, u64), OpsError> {
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

    /// The ARN of the queue at `url`.
    pub(super) async fn queue_arn(&self, url: &str) -> Result<String, OpsError> {
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
}

/// The batch entries making up to ten held messages visible again; each entry's id is its index
/// in `chunk`, which maps a failed entry back to its message.
fn release_entries(chunk: &[(String, String)]) -> Vec<ChangeMessageVisibilityBatchRequestEntry> {
    chunk
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
        .collect()
}
