//! `AWS::ApiGatewayV2::*` resources (HTTP APIs).

use indexmap::IndexMap;
use serde::Serialize;

use super::Expr;

/// `AWS::ApiGatewayV2::Api`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Api {
    /// Name.
    pub name: Expr,
    /// What it serves.
    pub description: String,
    /// Protocol.
    pub protocol_type: ProtocolType,
    /// Tags (a map for this resource type).
    pub tags: IndexMap<String, String>,
}

/// API protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProtocolType {
    /// HTTP API.
    Http,
}

/// `AWS::ApiGatewayV2::Authorizer`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Authorizer {
    /// The API.
    pub api_id: Expr,
    /// Name.
    pub name: String,
    /// Kind.
    pub authorizer_type: AuthorizerType,
    /// Where the token is.
    pub identity_source: Vec<String>,
    /// Issuer and audience.
    pub jwt_configuration: JwtConfiguration,
}

/// Authorizer kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizerType {
    /// JWT validation by API Gateway.
    Jwt,
}

/// JWT settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JwtConfiguration {
    /// Accepted audiences.
    pub audience: Vec<String>,
    /// Issuer URL.
    pub issuer: String,
}

/// `AWS::ApiGatewayV2::Integration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Integration {
    /// The API.
    pub api_id: Expr,
    /// What it does.
    pub description: String,
    /// Kind.
    pub integration_type: IntegrationType,
    /// Function ARN.
    pub integration_uri: Expr,
    /// Event payload version.
    pub payload_format_version: String,
    /// Integration timeout in milliseconds (HTTP APIs allow at most 30 000).
    pub timeout_in_millis: u32,
}

/// Integration kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IntegrationType {
    /// Lambda proxy.
    AwsProxy,
}

/// `AWS::ApiGatewayV2::Route`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Route {
    /// The API.
    pub api_id: Expr,
    /// `METHOD /path`.
    pub route_key: String,
    /// How callers authenticate.
    pub authorization_type: AuthorizationType,
    /// The JWT authorizer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorizer_id: Option<Expr>,
    /// `integrations/<id>`.
    pub target: Expr,
}

/// Route authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationType {
    /// SigV4.
    AwsIam,
    /// JWT authorizer.
    Jwt,
}

/// `AWS::ApiGatewayV2::Stage`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Stage {
    /// The API.
    pub api_id: Expr,
    /// `$default`.
    pub stage_name: String,
    /// Deploy every change.
    pub auto_deploy: bool,
    /// Throttling and metrics of every route.
    pub default_route_settings: RouteSettings,
    /// Access log destination and format.
    pub access_log_settings: AccessLogSettings,
    /// Tags (a map for this resource type).
    pub tags: IndexMap<String, String>,
}

/// Route settings of a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteSettings {
    /// Per-route metrics.
    pub detailed_metrics_enabled: bool,
    /// Burst.
    pub throttling_burst_limit: u32,
    /// Steady-state requests per second.
    pub throttling_rate_limit: f64,
}

/// Access logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessLogSettings {
    /// Log group ARN.
    pub destination_arn: Expr,
    /// Line format (JSON with `$context` variables).
    pub format: String,
}
