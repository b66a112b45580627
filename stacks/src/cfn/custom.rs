//! sagaform's custom resources: `Custom::DatabaseMigrations`, which CloudFormation hands to the
//! migrate function (its properties are the contract's
//! `sagaform_contract::custom_resource::DatabaseMigrationsProperties`, plus `ServiceToken`).

use serde::Serialize;

use super::Expr;

/// `Custom::DatabaseMigrations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatabaseMigrations {
    /// The migrate function's ARN.
    pub service_token: Expr,
    /// Seconds CloudFormation waits for the step's answer before it fails the resource, instead
    /// of its default hour: a step that could not answer then fails the deploy in minutes.
    pub service_timeout: u32,
    /// Hash of the migrations: a schema change changes it, so CloudFormation runs the step again.
    pub migrations_hash: String,
    /// The cluster: a replaced cluster is empty, and the step must run on it.
    pub cluster_id: Expr,
    /// The application role's secret: a new password must reach the role.
    pub app_secret_arn: Expr,
    /// The migrate function's package (named by its content hash): a change in how the step
    /// grants the role takes effect on the deploy that ships it.
    pub migrate_code_key: Expr,
}
