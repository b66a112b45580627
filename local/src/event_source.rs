//! SQS event source mappings, polled here as Lambda's pollers do (moto never delivers them:
//! the sagaform launcher switches its own delivery off).
//!
//! Per mapping, up to `ScalingConfig.MaximumConcurrency` pollers (capped by the function's
//! process cap) receive batches of up to `BatchSize` records, gathering for
//! `MaximumBatchingWindowInSeconds` when it is set, and invoke the function with an SQS event.
//! Messages are received with the queue's own visibility timeout. After the invocation:
//! - success without `ReportBatchItemFailures`: every record is deleted;
//! - success with it: the records not named in `batchItemFailures` are deleted; a malformed
//!   answer (an item without an id, or with an id not in the batch, or not JSON) fails the whole
//!   batch, as on Lambda;
//! - a function error: nothing is deleted.
//!
//! Records left in the queue become visible again after the visibility timeout; the emulator
//! counts receives and moves a message to the dead-letter queue on the receive after
//! `maxReceiveCount`, as SQS does, so redelivery and the DLQ follow the queue's RedrivePolicy.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::LocalError;
use crate::runtime::{InvokeOutcome, LocalFunction};

/// SQS's longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// Pause after a failed receive, so a missing queue does not spin.
const RECEIVE_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// An SQS event source mapping, with the settings the poller honours.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SqsMapping {
    /// The mapping's UUID (as listed by Lambda).
    pub uuid: String,
    /// The queue ARN (`eventSourceARN` of the records).
    pub queue_arn: String,
    /// The queue URL to poll.
    pub queue_url: String,
    /// The function (name).
    pub function: String,
    /// Records per invocation at most.
    pub batch_size: u32,
    /// How long to gather records before invoking (0: invoke with what one receive returns).
    pub batching_window_seconds: u32,
    /// Whether the function reports partial batch failures.
    pub report_batch_item_failures: bool,
    /// Concurrent invocations at most (`ScalingConfig.MaximumConcurrency`), if set.
    pub maximum_concurrency: Option<u32>,
    /// The queue's visibility timeout in seconds, as read when polling started (informative:
    /// receives use the queue's current setting).
    pub visibility_timeout_seconds: Option<u32>,
    /// Whether the mapping is enabled.
    pub enabled: bool,
}

impl SqsMapping {
    /// How many pollers run: the mapping's maximum concurrency (Lambda's default is "as many as
    /// needed"), never more than the function has processes.
    pub fn pollers(&self, max_processes: usize) -> usize {
        let wanted = self
            .maximum_concurrency
            .map_or(max_processes, |c| c as usize);
        wanted.clamp(1, max_processes.max(1))
    }
}

/// Reads the queue's visibility timeout (for status reports).
pub async fn visibility_timeout(client: &Client, queue_url: &str) -> Result<u32, LocalError> {
    let attributes = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(|e| LocalError::aws(format!("GetQueueAttributes {queue_url}"), &e))?;
    Ok(attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse().ok())
        .unwrap_or(30))
}

/// Starts the pollers of `mapping`; they stop when `stop` turns true.
pub fn spawn_pollers(
    mapping: SqsMapping,
    client: Client,
    function: LocalFunction,
    region: String,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    if !mapping.enabled {
        return Vec::new();
    }
    let count = mapping.pollers(function.spec().max_processes);
    (0..count)
        .map(|_| {
            let poller = Poller {
                mapping: mapping.clone(),
                client: client.clone(),
                function: function.clone(),
                region: region.clone(),
            };
            let stop = stop.clone();
            tokio::spawn(async move { poller.run(stop).await })
        })
        .collect()
}

struct Poller {
    mapping: SqsMapping,
    client: Client,
    function: LocalFunction,
    region: String,
}

impl Poller {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let batch = tokio::select! {
                batch = self.collect_batch() => batch,
                _ = stop.changed() => return,
            };
            match batch {
                Ok(messages) if messages.is_empty() => {}
                Ok(messages) => self.deliver(messages).await,
                Err(error) => {
                    tracing::warn!(queue = %self.mapping.queue_url, %error, "receive failed");
                    tokio::time::sleep(RECEIVE_RETRY_PAUSE).await;
                }
            }
        }
    }

    /// One batch: a long poll for the first records, then, with a batching window, more
    /// receives until the batch is full or the window has passed since the first record.
    async fn collect_batch(&self) -> Result<Vec<Message>, LocalError> {
        let batch_size = self.mapping.batch_size.max(1) as usize;
        let mut messages = self.receive(batch_size, MAX_WAIT).await?;
        if messages.is_empty() || self.mapping.batching_window_seconds == 0 {
            return Ok(messages);
        }
        let window_end =
            Instant::now() + Duration::from_secs(self.mapping.batching_window_seconds.into());
        while messages.len() < batch_size {
            let left = window_end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Whole seconds only: SQS waits in seconds; below one second, poll once.
            let wait = Duration::from_secs(left.as_secs());
            let more = self.receive(batch_size - messages.len(), wait).await?;
            if more.is_empty() && wait.is_zero() {
                tokio::time::sleep(left.min(Duration::from_millis(200))).await;
            }
            messages.extend(more);
        }
        Ok(messages)
    }

    async fn receive(&self, wanted: usize, wait: Duration) -> Result<Vec<Message>, LocalError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.mapping.queue_url)
            .max_number_of_messages(wanted.min(10) as i32)
            .wait_time_seconds(wait.min(MAX_WAIT).as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| {
                LocalError::aws(format!("ReceiveMessage {}", self.mapping.queue_url), &e)
            })?;
        Ok(output.messages.unwrap_or_default())
    }

    async fn deliver(&self, messages: Vec<Message>) {
        let event = sqs_event(&messages, &self.mapping.queue_arn, &self.region);
        let outcome = self.function.invoke(Bytes::from(event.to_string())).await;
        let succeeded: Vec<&Message> = match outcome {
            Ok(InvokeOutcome::Success(output)) if self.mapping.report_batch_item_failures => {
                match failed_message_ids(&output, &messages) {
                    Ok(failed) => messages
                        .iter()
                        .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
                        .collect(),
                    Err(reason) => {
                        tracing::warn!(
                            function = %self.mapping.function,
                            %reason,
                            "invalid batchItemFailures: the whole batch is retried"
                        );
                        Vec::new()
                    }
                }
            }
            Ok(InvokeOutcome::Success(_)) => messages.iter().collect(),
            Ok(InvokeOutcome::FunctionError(error)) => {
                tracing::debug!(
                    function = %self.mapping.function,
                    error_type = %error.error_type,
                    "function error: the whole batch is retried"
                );
                Vec::new()
            }
            Err(error) => {
                tracing::debug!(%error, "invocation not run: the batch is retried");
                Vec::new()
            }
        };
        if let Err(error) = self.delete(&succeeded).await {
            tracing::warn!(queue = %self.mapping.queue_url, %error, "delete failed");
        }
    }

    async fn delete(&self, messages: &[&Message]) -> Result<(), LocalError> {
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, message)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(message.receipt_handle().unwrap_or_default())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| LocalError::aws("DeleteMessageBatch entry", &e))?;
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.mapping.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    LocalError::aws(format!("DeleteMessageBatch {}", self.mapping.queue_url), &e)
                })?;
            if let Some(failed) = output.failed().first() {
                return Err(LocalError::Aws {
                    operation: format!("DeleteMessageBatch {}", self.mapping.queue_url),
                    detail: format!("{}: {}", failed.code(), failed.message().unwrap_or("")),
                });
            }
        }
        Ok(())
    }
}

/// The ids a `ReportBatchItemFailures` answer names, or why the answer fails the whole batch.
/// Lambda treats as complete success: `null`, `{}`, and an empty or null `batchItemFailures`;
/// as complete failure: anything not JSON, an item without a non-empty string
/// `itemIdentifier`, or an id that is not in the batch.
pub fn failed_message_ids(output: &[u8], batch: &[Message]) -> Result<HashSet<String>, String> {
    let document: Value = if output.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(output).map_err(|e| format!("the answer is not JSON: {e}"))?
    };
    let failures = match &document {
        Value::Null => return Ok(HashSet::new()),
        Value::Object(object) => match object.get("batchItemFailures") {
            None | Some(Value::Null) => return Ok(HashSet::new()),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(format!("batchItemFailures is not a list: {other}")),
        },
        other => return Err(format!("the answer is not an object: {other}")),
    };
    let in_batch: HashSet<&str> = batch.iter().filter_map(Message::message_id).collect();
    let mut failed = HashSet::new();
    for item in failures {
        let id = item
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("an item has no itemIdentifier: {item}"))?;
        if !in_batch.contains(id) {
            return Err(format!("itemIdentifier {id} is not a message of the batch"));
        }
        failed.insert(id.to_owned());
    }
    Ok(failed)
}

/// The SQS event Lambda sends for these messages (`aws_lambda_events::sqs::SqsEvent` shape).
pub fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|message| {
            let attributes: BTreeMap<String, String> = message
                .attributes()
                .map(|map| {
                    map.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let mut message_attributes = Map::new();
            if let Some(map) = message.message_attributes() {
                for (name, value) in map {
                    let binary = value.binary_value().map(|b| BASE64.encode(b.as_ref()));
                    message_attributes.insert(
                        name.clone(),
                        json!({
                            "stringValue": value.string_value(),
                            "binaryValue": binary,
                            "stringListValues": value.string_list_values(),
                            "binaryListValues": value
                                .binary_list_values()
                                .iter()
                                .map(|b| BASE64.encode(b.as_ref()))
                                .collect::<Vec<_>>(),
                            "dataType": value.data_type(),
                        }),
                    );
                }
            }
            let mut record = json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": message.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            });
            if let Some(md5) = message.md5_of_message_attributes() {
                record["md5OfMessageAttributes"] = json!(md5);
            }
            record
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: &[&str]) -> Vec<Message> {
        ids.iter()
            .map(|id| Message::builder().message_id(*id).build())
            .collect()
    }

    #[test]
    fn empty_answers_mean_the_whole_batch_succeeded() {
        let messages = batch(&["a", "b"]);
        for answer in [
            "",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert!(
                failed_message_ids(answer.as_bytes(), &messages)
                    .unwrap()
                    .is_empty(),
                "{answer}"
            );
        }
    }

    #[test]
    fn named_items_fail_and_the_others_succeed() {
        let messages = batch(&["a", "b", "c"]);
        let failed = failed_message_ids(
            br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#,
            &messages,
        )
        .unwrap();
        assert_eq!(failed, HashSet::from(["b".to_owned()]));
    }

    #[test]
    fn malformed_items_fail_the_whole_batch() {
        let messages = batch(&["a"]);
        for answer in [
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"id":"a"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
            "not json",
            r#""ok""#,
        ] {
            assert!(
                failed_message_ids(answer.as_bytes(), &messages).is_err(),
                "{answer}"
            );
        }
    }

    #[test]
    fn pollers_follow_maximum_concurrency_within_the_process_cap() {
        let mut mapping = SqsMapping {
            uuid: "u".into(),
            queue_arn: "arn".into(),
            queue_url: "url".into(),
            function: "f".into(),
            batch_size: 10,
            batching_window_seconds: 0,
            report_batch_item_failures: true,
            maximum_concurrency: Some(2),
            visibility_timeout_seconds: None,
            enabled: true,
        };
        assert_eq!(mapping.pollers(4), 2);
        mapping.maximum_concurrency = Some(10);
        assert_eq!(mapping.pollers(4), 4);
        mapping.maximum_concurrency = None;
        assert_eq!(mapping.pollers(3), 3);
    }
}
