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
    /// Hash of the migrations: a schema change changes it, so CloudFormation runs the step again.
    pub migrations_hash: String,
}
