//! `AWS::DynamoDB::Table`.

use serde::Serialize;

use super::{Expr, Tag};

/// `AWS::DynamoDB::Table`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Table {
    /// Name; usually left to CloudFormation so a retained table never blocks a redeploy (the
    /// stack outputs and the functions' environment carry the generated name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_name: Option<Expr>,
    /// Capacity mode.
    pub billing_mode: BillingMode,
    /// Types of the key attributes (of the table and its indexes).
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// Primary key.
    pub key_schema: Vec<KeySchemaElement>,
    /// Global secondary indexes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    /// Expiry attribute.
    pub time_to_live_specification: TimeToLiveSpecification,
    /// Continuous backups.
    pub point_in_time_recovery_specification: PointInTimeRecoverySpecification,
    /// Encryption at rest.
    #[serde(rename = "SSESpecification")]
    pub sse_specification: SseSpecification,
    /// Refuse `DeleteTable` (production).
    pub deletion_protection_enabled: bool,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// DynamoDB capacity modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillingMode {
    /// On demand.
    PayPerRequest,
    /// Provisioned throughput.
    Provisioned,
}

/// The type of a key attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    /// Attribute.
    pub attribute_name: String,
    /// Its type.
    pub attribute_type: AttributeType,
}

/// DynamoDB key attribute types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AttributeType {
    /// String.
    #[serde(rename = "S")]
    String,
    /// Number.
    #[serde(rename = "N")]
    Number,
    /// Binary.
    #[serde(rename = "B")]
    Binary,
}

/// One element of a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeySchemaElement {
    /// Attribute.
    pub attribute_name: String,
    /// Its role in the key.
    pub key_type: KeyType,
}

/// Roles of key attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyType {
    /// Partition key.
    Hash,
    /// Sort key.
    Range,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlobalSecondaryIndex {
    /// Name.
    pub index_name: String,
    /// Key.
    pub key_schema: Vec<KeySchemaElement>,
    /// Attributes copied into the index.
    pub projection: Projection,
}

/// The projection of an index.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    /// Which attributes.
    pub projection_type: ProjectionType,
}

/// Index projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProjectionType {
    /// Every attribute.
    All,
    /// Keys only.
    KeysOnly,
}

/// TTL settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeToLiveSpecification {
    /// Attribute holding the expiry time (epoch seconds).
    pub attribute_name: String,
    /// Whether expired items are deleted.
    pub enabled: bool,
}

/// PITR settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PointInTimeRecoverySpecification {
    /// Whether continuous backups are on.
    pub point_in_time_recovery_enabled: bool,
}

/// Encryption settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SseSpecification {
    /// `true`: the AWS managed KMS key (`aws/dynamodb`), auditable in CloudTrail.
    #[serde(rename = "SSEEnabled")]
    pub sse_enabled: bool,
    /// Key type.
    #[serde(rename = "SSEType")]
    pub sse_type: SseType,
}

/// Server-side encryption types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SseType {
    /// KMS.
    #[serde(rename = "KMS")]
    Kms,
}
