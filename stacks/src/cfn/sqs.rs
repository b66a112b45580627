//! `AWS::SQS::Queue`.

use serde::Serialize;

use super::{Expr, Tag, is_false};

/// `AWS::SQS::Queue`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Queue {
    /// Name; fixed where another resource must know the ARN before the queue exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<Expr>,
    /// FIFO queue (the name then ends with `.fifo`).
    #[serde(skip_serializing_if = "is_false")]
    pub fifo_queue: bool,
    /// Server-side encryption with SQS-owned keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqs_managed_sse_enabled: Option<bool>,
    /// Server-side encryption with a KMS key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_master_key_id: Option<Expr>,
    /// Seconds a received message stays invisible.
    pub visibility_timeout: u32,
    /// Seconds a message is kept.
    pub message_retention_period: u32,
    /// Where messages go after too many receives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_policy: Option<RedrivePolicy>,
    /// Which queues may use this one as their DLQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_allow_policy: Option<RedriveAllowPolicy>,
    /// Tags.
    pub tags: Vec<Tag>,
}

impl Queue {
    /// Whether messages are encrypted at rest.
    pub fn is_encrypted(&self) -> bool {
        self.sqs_managed_sse_enabled == Some(true) || self.kms_master_key_id.is_some()
    }
}

/// The redrive policy of a source queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedrivePolicy {
    /// ARN of the DLQ.
    pub dead_letter_target_arn: Expr,
    /// Receives before a message moves to the DLQ.
    pub max_receive_count: u32,
}

/// The redrive-allow policy of a DLQ.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveAllowPolicy {
    /// Who may use the queue as DLQ.
    pub redrive_permission: RedrivePermission,
    /// The allowed source queues.
    pub source_queue_arns: Vec<Expr>,
}

/// Redrive permissions of a DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RedrivePermission {
    /// Only the queues listed in `sourceQueueArns`.
    ByQueue,
    /// No queue.
    DenyAll,
}
