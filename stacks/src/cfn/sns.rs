//! `AWS::SNS::*` resources.

use serde::Serialize;

use super::{Expr, Tag};

/// `AWS::SNS::Topic`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Topic {
    /// Display name (the sender name of email notifications).
    pub display_name: String,
    /// The KMS key encrypting messages at rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_master_key_id: Option<Expr>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// `AWS::SNS::Subscription`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Subscription {
    /// The topic.
    pub topic_arn: Expr,
    /// Delivery protocol.
    pub protocol: SubscriptionProtocol,
    /// Address.
    pub endpoint: String,
}

/// SNS delivery protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SubscriptionProtocol {
    /// Plain-text email (the address must confirm the subscription).
    #[serde(rename = "email")]
    Email,
}
