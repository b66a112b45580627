//! `AWS::Logs::LogGroup` and `AWS::Logs::MetricFilter`.

use serde::Serialize;

use super::{Expr, Tag};

/// `AWS::Logs::LogGroup`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogGroup {
    /// Name; fixed so functions and state machines can point at it before they exist.
    pub log_group_name: Expr,
    /// Days events are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_in_days: Option<u32>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// `AWS::Logs::MetricFilter`: counts the log events of a group that match a pattern into a
/// CloudWatch metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricFilter {
    /// The log group whose events are matched.
    pub log_group_name: Expr,
    /// The filter pattern, e.g. `{ $.outcome = "saga_in_doubt" }`.
    pub filter_pattern: String,
    /// The metric each matching event adds to (CloudFormation takes exactly one).
    pub metric_transformations: Vec<MetricTransformation>,
}

/// What a matching event adds to which metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricTransformation {
    /// Metric namespace.
    pub metric_namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// What a matching event adds, e.g. `1`.
    pub metric_value: String,
    /// What a period without a matching event reports; `0` keeps the metric continuous.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_value: Option<f64>,
    /// Unit of the metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
}
