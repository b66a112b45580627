//! `AWS::CloudWatch::Alarm`.

use serde::Serialize;

use super::{Expr, Tag};

/// `AWS::CloudWatch::Alarm` on one metric or on a metric-math expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alarm {
    /// What the alarm means and `Runbook: <path>#<anchor>`.
    pub alarm_description: String,
    /// Namespace of a single-metric alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Metric of a single-metric alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    /// Dimensions of a single-metric alarm.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<Dimension>,
    /// Statistic of a single-metric alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<Statistic>,
    /// Period in seconds of a single-metric alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
    /// Metric-math queries (instead of a single metric).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricDataQuery>,
    /// Periods evaluated.
    pub evaluation_periods: u32,
    /// How many of the evaluated periods must breach; unset, all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datapoints_to_alarm: Option<u32>,
    /// Threshold.
    pub threshold: f64,
    /// How the value compares to the threshold.
    pub comparison_operator: ComparisonOperator,
    /// What missing data means.
    pub treat_missing_data: TreatMissingData,
    /// Notified on ALARM.
    pub alarm_actions: Vec<Expr>,
    /// Notified on return to OK.
    #[serde(rename = "OKActions")]
    pub ok_actions: Vec<Expr>,
    /// Tags.
    pub tags: Vec<Tag>,
}

impl Alarm {
    /// The metric of a single-metric alarm, or of every metric of a metric-math alarm.
    pub fn metrics(&self) -> Vec<(&str, &str, &[Dimension])> {
        let mut found = Vec::new();
        if let (Some(namespace), Some(name)) = (&self.namespace, &self.metric_name) {
            found.push((
                namespace.as_str(),
                name.as_str(),
                self.dimensions.as_slice(),
            ));
        }
        for query in &self.metrics {
            if let Some(stat) = &query.metric_stat {
                let metric = &stat.metric;
                found.push((
                    metric.namespace.as_str(),
                    metric.metric_name.as_str(),
                    metric.dimensions.as_slice(),
                ));
            }
        }
        found
    }
}

/// A metric dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension {
    /// Dimension name.
    pub name: String,
    /// Its value.
    pub value: Expr,
}

/// One query of a metric-math alarm.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricDataQuery {
    /// Id, referenced by expressions (lower-case first letter).
    pub id: String,
    /// Metric-math expression (instead of a metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// Label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A metric (instead of an expression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<MetricStat>,
    /// Whether this query is the alarm's value (exactly one is).
    pub return_data: bool,
}

/// A metric with its statistic.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricStat {
    /// The metric.
    pub metric: Metric,
    /// Period in seconds.
    pub period: u32,
    /// Statistic.
    pub stat: Statistic,
}

/// A metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metric {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub metric_name: String,
    /// Dimensions.
    pub dimensions: Vec<Dimension>,
}

/// Statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Statistic {
    /// Sum.
    Sum,
    /// Maximum.
    Maximum,
    /// Average.
    Average,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ComparisonOperator {
    /// `>`.
    GreaterThanThreshold,
    /// `>=`.
    GreaterThanOrEqualToThreshold,
    /// `<`.
    LessThanThreshold,
    /// `<=`.
    LessThanOrEqualToThreshold,
}

/// How an alarm treats periods without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TreatMissingData {
    /// As good: no traffic is not a failure.
    NotBreaching,
    /// As bad.
    Breaching,
    /// Keep the current state.
    Ignore,
    /// INSUFFICIENT_DATA.
    Missing,
}
