//! `AWS::StepFunctions::StateMachine`.

use serde::Serialize;

use super::{Expr, Tag};

/// `AWS::StepFunctions::StateMachine`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateMachine {
    /// Standard or Express.
    pub state_machine_type: StateMachineType,
    /// The ASL definition as JSON text (usually a `!Sub` filling in ARNs).
    pub definition_string: Expr,
    /// Role the executions run as.
    pub role_arn: Expr,
    /// Execution logs.
    pub logging_configuration: LoggingConfiguration,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// State machine types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateMachineType {
    /// Exactly-once, up to a year, full history.
    Standard,
    /// At-least-once, up to five minutes.
    Express,
}

/// Execution logging.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingConfiguration {
    /// Where.
    pub destinations: Vec<LogDestination>,
    /// Whether inputs and outputs are logged (off: they hold request data).
    pub include_execution_data: bool,
    /// Which events.
    pub level: LogLevel,
}

/// A log destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogDestination {
    /// The log group.
    pub cloud_watch_logs_log_group: CloudWatchLogsLogGroup,
}

/// A CloudWatch Logs log group, by ARN.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloudWatchLogsLogGroup {
    /// Log group ARN.
    pub log_group_arn: Expr,
}

/// Step Functions log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    /// Every event.
    All,
    /// Errors only.
    Error,
    /// Fatal errors only.
    Fatal,
    /// Nothing.
    Off,
}
