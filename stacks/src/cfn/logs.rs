//! `AWS::Logs::LogGroup`.

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
