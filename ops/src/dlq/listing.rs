//! `dlq list`: receiving a DLQ's messages without consuming them (each is released at once),
//! describing each one for a person or a script, and rendering the listing.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde::Serialize;
use serde_json::Value;

use super::queue::Held;
use super::{DEFAULT_HOLD, Dlq, transaction_id_of};
use crate::OpsError;
use crate::time::{now_millis, rfc3339_from_millis};

/// Longest a body summary gets, in characters.
const SUMMARY_CHARS: usize = 160;

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

impl Dlq {
    /// Lists up to `max` messages (all when `None`) and releases them; nothing is consumed.
    pub async fn list(&self, max: Option<usize>) -> Result<DlqListing, OpsError> {
        let (approximate_visible, approximate_in_flight) = self.counts().await?;
        let mut held = Held::default();
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
                let Some(id) = held.hold(&message) else {
                    continue;
                };
                if seen.insert(id) {
                    messages.push(message);
                }
            }
        }
    }
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
        error: parsed.as_ref().and_then(invocation_error),
        body_summary: summarize_body(body, parsed.as_ref()),
    }
}

/// The failure a Lambda invocation record carries, as `condition: errorMessage`; `None` for a
/// body that is not such a record.
fn invocation_error(record: &Value) -> Option<String> {
    let condition = record.pointer("/requestContext/condition")?.as_str()?;
    let message = record
        .pointer("/responsePayload/errorMessage")
        .and_then(Value::as_str)
        .unwrap_or("no error message");
    Some(format!("{condition}: {message}"))
}

/// The body on one line (compact JSON when it parses), cut at [`SUMMARY_CHARS`] with an ellipsis.
fn summarize_body(body: &str, parsed: Option<&Value>) -> String {
    let one_line = parsed
        .map(Value::to_string)
        .unwrap_or_else(|| body.split_whitespace().collect::<Vec<_>>().join(" "));
    let mut body_summary: String = one_line.chars().take(SUMMARY_CHARS).collect();
    if one_line.chars().count() > SUMMARY_CHARS {
        body_summary.push('…');
    }
    body_summary
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

/// An age in the largest unit that keeps it readable: seconds, minutes, hours, then days.
fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}
