//! `AWS::RDS::*` resources: an Aurora cluster and the RDS Proxy in front of it.

use serde::Serialize;

use super::{Expr, Tag};

/// `AWS::RDS::DBCluster`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DbCluster {
    /// Engine.
    pub engine: Engine,
    /// Engine version.
    pub engine_version: String,
    /// Initial database.
    pub database_name: String,
    /// Master user name.
    pub master_username: String,
    /// Let RDS create and rotate the master password in Secrets Manager.
    pub manage_master_user_password: bool,
    /// Encryption at rest.
    pub storage_encrypted: bool,
    /// Refuse deletion.
    pub deletion_protection: bool,
    /// Serverless v2 capacity range.
    pub serverless_v2_scaling_configuration: ServerlessV2ScalingConfiguration,
    /// Subnets.
    #[serde(rename = "DBSubnetGroupName")]
    pub db_subnet_group_name: Expr,
    /// Security groups.
    pub vpc_security_group_ids: Vec<Expr>,
    /// Days of automated backups.
    pub backup_retention_period: u32,
    /// Snapshots carry the cluster's tags.
    pub copy_tags_to_snapshot: bool,
    /// Tags.
    pub tags: Vec<Tag>,
}

impl DbCluster {
    /// The attribute holding the ARN of the managed master secret.
    pub const SECRET_ARN_ATTRIBUTE: &'static str = "MasterUserSecret.SecretArn";
}

/// Database engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Engine {
    /// Aurora PostgreSQL.
    #[serde(rename = "aurora-postgresql")]
    AuroraPostgresql,
}

/// Serverless v2 capacity range, in ACUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerlessV2ScalingConfiguration {
    /// Lowest capacity.
    pub min_capacity: f64,
    /// Highest capacity.
    pub max_capacity: f64,
}

/// `AWS::RDS::DBInstance` (a Serverless v2 instance of a cluster).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbInstance {
    /// `db.serverless`.
    #[serde(rename = "DBInstanceClass")]
    pub db_instance_class: String,
    /// Engine (same as the cluster).
    #[serde(rename = "Engine")]
    pub engine: Engine,
    /// The cluster.
    #[serde(rename = "DBClusterIdentifier")]
    pub db_cluster_identifier: Expr,
    /// Never reachable from the internet.
    #[serde(rename = "PubliclyAccessible")]
    pub publicly_accessible: bool,
    /// Performance Insights, which the runbooks send operators to for the queries holding
    /// capacity or connections.
    #[serde(rename = "EnablePerformanceInsights")]
    pub enable_performance_insights: bool,
    /// Days Performance Insights keeps its data (7 is the free tier); only with it enabled.
    #[serde(
        rename = "PerformanceInsightsRetentionPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub performance_insights_retention_period: Option<u32>,
    /// Seconds between enhanced monitoring samples (OS metrics of the instance, which
    /// CloudWatch's database metrics lack).
    #[serde(rename = "MonitoringInterval")]
    pub monitoring_interval: u32,
    /// The role RDS publishes the enhanced monitoring samples with.
    #[serde(rename = "MonitoringRoleArn")]
    pub monitoring_role_arn: Expr,
    /// Failover order: the writer is tier 0, readers come after it.
    #[serde(rename = "PromotionTier", skip_serializing_if = "Option::is_none")]
    pub promotion_tier: Option<u32>,
    /// Tags.
    #[serde(rename = "Tags")]
    pub tags: Vec<Tag>,
}

/// `AWS::RDS::DBSubnetGroup`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbSubnetGroup {
    /// What it is.
    #[serde(rename = "DBSubnetGroupDescription")]
    pub description: String,
    /// Private subnets in at least two availability zones.
    #[serde(rename = "SubnetIds")]
    pub subnet_ids: Vec<Expr>,
    /// Tags.
    #[serde(rename = "Tags")]
    pub tags: Vec<Tag>,
}

/// `AWS::RDS::DBProxy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbProxy {
    /// Name (letters, digits, hyphens).
    #[serde(rename = "DBProxyName")]
    pub name: Expr,
    /// Engine family.
    #[serde(rename = "EngineFamily")]
    pub engine_family: EngineFamily,
    /// How the proxy logs in to the database.
    #[serde(rename = "Auth")]
    pub auth: Vec<ProxyAuth>,
    /// Role that reads the secret.
    #[serde(rename = "RoleArn")]
    pub role_arn: Expr,
    /// Subnets.
    #[serde(rename = "VpcSubnetIds")]
    pub vpc_subnet_ids: Vec<Expr>,
    /// Security groups.
    #[serde(rename = "VpcSecurityGroupIds")]
    pub vpc_security_group_ids: Vec<Expr>,
    /// Clients must use TLS.
    #[serde(rename = "RequireTLS")]
    pub require_tls: bool,
    /// Tags.
    #[serde(rename = "Tags")]
    pub tags: Vec<Tag>,
}

/// Engine families of RDS Proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EngineFamily {
    /// PostgreSQL.
    Postgresql,
}

/// One way the proxy authenticates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyAuth {
    /// Kind.
    #[serde(rename = "AuthScheme")]
    pub auth_scheme: AuthScheme,
    /// The secret holding user name and password.
    #[serde(rename = "SecretArn")]
    pub secret_arn: Expr,
    /// Whether clients must use IAM authentication.
    #[serde(rename = "IAMAuth")]
    pub iam_auth: IamAuth,
}

/// Proxy authentication schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthScheme {
    /// A Secrets Manager secret.
    Secrets,
}

/// Proxy IAM authentication settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IamAuth {
    /// Clients log in with the secret's password.
    Disabled,
    /// Clients need an IAM token.
    Required,
}

/// `AWS::RDS::DBProxyTargetGroup`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbProxyTargetGroup {
    /// The proxy.
    #[serde(rename = "DBProxyName")]
    pub proxy_name: Expr,
    /// Always `default`.
    #[serde(rename = "TargetGroupName")]
    pub target_group_name: String,
    /// The cluster behind the proxy.
    #[serde(rename = "DBClusterIdentifiers")]
    pub db_cluster_identifiers: Vec<Expr>,
    /// Pool sizing.
    #[serde(rename = "ConnectionPoolConfigurationInfo")]
    pub connection_pool: ConnectionPoolConfiguration,
}

/// Pool sizing of a proxy target group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionPoolConfiguration {
    /// Share of the database's `max_connections` the proxy may open.
    pub max_connections_percent: u32,
    /// Share it keeps open while idle.
    pub max_idle_connections_percent: u32,
    /// Seconds a client waits for a pooled connection.
    pub connection_borrow_timeout: u32,
}
