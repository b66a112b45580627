//! `AWS::Lambda::*` resources.

use indexmap::IndexMap;
use serde::Serialize;

use super::iam::Action;
use super::{Expr, Tag};

/// `AWS::Lambda::Function`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Function {
    /// Physical name; fixing it lets the log group be created (with retention) first.
    pub function_name: Expr,
    /// What the function does.
    pub description: String,
    /// Runtime.
    pub runtime: Runtime,
    /// Handler (`bootstrap` for custom runtimes).
    pub handler: String,
    /// Instruction set (one entry).
    pub architectures: Vec<Architecture>,
    /// Where the deployment package is.
    pub code: Code,
    /// Memory in MB.
    pub memory_size: u32,
    /// Timeout in seconds.
    pub timeout: u32,
    /// Reserved concurrency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrent_executions: Option<u32>,
    /// Execution role ARN.
    pub role: Expr,
    /// Environment variables.
    pub environment: Environment,
    /// Log format and destination.
    pub logging_config: LoggingConfig,
    /// Network placement (functions reaching Aurora).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// Lambda runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Runtime {
    /// OS-only runtime on Amazon Linux 2023 (a `bootstrap` binary).
    #[serde(rename = "provided.al2023")]
    ProvidedAl2023,
}

/// Lambda instruction sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Architecture {
    /// Graviton.
    #[serde(rename = "arm64")]
    Arm64,
    /// Intel/AMD.
    #[serde(rename = "x86_64")]
    X86_64,
}

/// A deployment package in S3.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Code {
    /// Bucket.
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Expr,
    /// Object key.
    #[serde(rename = "S3Key")]
    pub s3_key: Expr,
}

/// Environment variables.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    /// Name -> value, in a stable order.
    pub variables: IndexMap<String, Expr>,
}

/// Log configuration of a function.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// Log group name.
    pub log_group: Expr,
}

/// Lambda log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LogFormat {
    /// Structured JSON.
    #[serde(rename = "JSON")]
    Json,
    /// Plain text.
    Text,
}

/// Subnets and security groups of a function in a VPC.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcConfig {
    /// Security groups.
    pub security_group_ids: Vec<Expr>,
    /// Private subnets.
    pub subnet_ids: Vec<Expr>,
}

/// `AWS::Lambda::Permission`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Permission {
    /// What is allowed.
    pub action: Action,
    /// The function.
    pub function_name: Expr,
    /// Who (a service principal).
    pub principal: String,
    /// From which resource.
    pub source_arn: Expr,
}

/// `AWS::Lambda::EventSourceMapping`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventSourceMapping {
    /// The queue.
    pub event_source_arn: Expr,
    /// The function.
    pub function_name: Expr,
    /// Records per invocation.
    pub batch_size: u32,
    /// Seconds to gather a batch (standard queues only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_batching_window_in_seconds: Option<u32>,
    /// How the function reports partial failures.
    pub function_response_types: Vec<FunctionResponseType>,
    /// Concurrency cap.
    pub scaling_config: ScalingConfig,
    /// Whether records are delivered.
    pub enabled: bool,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// Response types of an event source mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FunctionResponseType {
    /// The function returns the ids of the failed records; only those are retried.
    ReportBatchItemFailures,
}

/// Concurrency cap of an SQS event source mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingConfig {
    /// Concurrent invocations (2..=1000).
    pub maximum_concurrency: u32,
}

/// `AWS::Lambda::EventInvokeConfig`: how Lambda retries a function's asynchronous invocations
/// and where it sends those that still fail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventInvokeConfig {
    /// The function (name or ARN).
    pub function_name: Expr,
    /// Version or alias the settings apply to (`$LATEST` for the unpublished function).
    pub qualifier: String,
    /// Retries after the first failed attempt (0..=2).
    pub maximum_retry_attempts: u32,
    /// Seconds an event may wait for an attempt before it is discarded to the destination
    /// (60..=21600).
    pub maximum_event_age_in_seconds: u32,
    /// Where failed events go.
    pub destination_config: DestinationConfig,
}

/// Destinations of asynchronous invocation records.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfig {
    /// Where an event goes once its retries are exhausted or it is too old.
    pub on_failure: OnFailure,
}

/// The on-failure destination of asynchronous invocations.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OnFailure {
    /// ARN of an SQS queue, SNS topic, Lambda function or event bus.
    pub destination: Expr,
}
