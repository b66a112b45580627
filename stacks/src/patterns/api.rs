//! The HTTP API (API Gateway v2) in front of the `api` function: `POST /transactions` and
//! `GET /transactions/{id}`, IAM or JWT authorization from the env config, throttling on the
//! default stage, JSON access logs, and an alarm on 5xx answers.

use sagaform_contract::template::outputs;

use crate::cfn::apigatewayv2::{
    AccessLogSettings, Api, AuthorizationType, Authorizer, AuthorizerType, Integration,
    IntegrationType, JwtConfiguration, ProtocolType, Route, RouteSettings, Stage,
};
use crate::cfn::cloudwatch::{ComparisonOperator, Statistic};
use crate::cfn::iam::actions;
use crate::cfn::lambda::Permission;
use crate::cfn::logs::LogGroup;
use crate::cfn::{CfnError, Expr};
use crate::config::ApiAuth;

use super::StackBuilder;
use super::alerting::{AlarmSpec, Watched, add_alarm, dimension};
use super::functions::FunctionRef;

/// Logical id of the HTTP API.
pub const HTTP_API: &str = "HttpApi";
/// The routes, `METHOD /path`, with their logical ids.
pub const ROUTES: [(&str, &str); 2] = [
    ("PostTransactionRoute", "POST /transactions"),
    ("GetTransactionRoute", "GET /transactions/{id}"),
];
/// API Gateway gives an HTTP API integration 30 s at most, then answers 503 itself.
pub(crate) const INTEGRATION_TIMEOUT_MILLIS: u32 = 30_000;

/// One access log line: the request, its outcome and the integration's error, as JSON.
const ACCESS_LOG_FORMAT: &str = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","httpMethod":"$context.httpMethod","routeKey":"$context.routeKey","status":"$context.status","protocol":"$context.protocol","responseLength":"$context.responseLength","integrationStatus":"$context.integrationStatus","integrationLatency":"$context.integrationLatency","integrationError":"$context.integrationErrorMessage","authorizerError":"$context.authorizer.error"}"#;

/// Adds the API, its routes, stage, access logs, permission, alarm and URL output.
pub(super) fn add_http_api(
    stack: &mut StackBuilder<'_>,
    function: &FunctionRef,
) -> Result<(), CfnError> {
    add_api(stack)?;
    let authorization = add_authorization(stack)?;
    add_routes(stack, function, &authorization)?;
    add_stage(stack)?;
    add_invoke_permission(stack, function)?;
    add_5xx_alarm(stack, function)?;
    stack.output(
        outputs::API_URL,
        "Base URL of the HTTP API (POST /transactions, GET /transactions/{id}).",
        Expr::sub(format!(
            "https://${{{HTTP_API}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/"
        )),
    )
}

/// How every route is authorized: the type, and the JWT authorizer when there is one.
struct RouteAuthorization {
    authorization_type: AuthorizationType,
    authorizer_id: Option<Expr>,
}

/// The HTTP API itself, named after the stack.
fn add_api(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    stack.add(
        HTTP_API,
        Api {
            name: Expr::sub("${AWS::StackName}"),
            description: format!(
                "Purchase saga API ({} pattern, env {}).",
                stack.pattern, stack.env.name
            ),
            protocol_type: ProtocolType::Http,
            tags: stack.tags.map(),
        },
    )
}

/// The authorization the env config asks for: IAM needs nothing more, JWT adds its authorizer.
fn add_authorization(stack: &mut StackBuilder<'_>) -> Result<RouteAuthorization, CfnError> {
    let env = stack.env;
    match &env.api.auth {
        ApiAuth::Iam => Ok(RouteAuthorization {
            authorization_type: AuthorizationType::AwsIam,
            authorizer_id: None,
        }),
        ApiAuth::Jwt { issuer, audience } => {
            stack.add(
                "JwtAuthorizer",
                Authorizer {
                    api_id: Expr::reference(HTTP_API),
                    name: "jwt".to_owned(),
                    authorizer_type: AuthorizerType::Jwt,
                    identity_source: vec!["$request.header.Authorization".to_owned()],
                    jwt_configuration: JwtConfiguration {
                        audience: audience.clone(),
                        issuer: issuer.clone(),
                    },
                },
            )?;
            Ok(RouteAuthorization {
                authorization_type: AuthorizationType::Jwt,
                authorizer_id: Some(Expr::reference("JwtAuthorizer")),
            })
        }
    }
}

/// The integration with `function` and the routes going to it, each authorized alike.
fn add_routes(
    stack: &mut StackBuilder<'_>,
    function: &FunctionRef,
    authorization: &RouteAuthorization,
) -> Result<(), CfnError> {
    stack.add(
        "ApiIntegration",
        Integration {
            api_id: Expr::reference(HTTP_API),
            description: format!("Every route goes to the {} function.", function.role.name()),
            integration_type: IntegrationType::AwsProxy,
            integration_uri: Expr::get_att(&function.logical_id, "Arn"),
            payload_format_version: "2.0".to_owned(),
            timeout_in_millis: INTEGRATION_TIMEOUT_MILLIS,
        },
    )?;
    for (logical_id, route_key) in ROUTES {
        stack.add(
            logical_id,
            Route {
                api_id: Expr::reference(HTTP_API),
                route_key: route_key.to_owned(),
                authorization_type: authorization.authorization_type,
                authorizer_id: authorization.authorizer_id.clone(),
                target: Expr::sub("integrations/${ApiIntegration}"),
            },
        )?;
    }
    Ok(())
}

/// The access log group and the auto-deployed default stage writing to it, with the env's
/// throttling limits.
fn add_stage(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    let env = stack.env;
    stack.add(
        "ApiAccessLogGroup",
        LogGroup {
            log_group_name: Expr::sub("/aws/apigateway/${AWS::StackName}"),
            retention_in_days: Some(env.log_retention_days),
            tags: stack.tags.list(),
        },
    )?;
    stack.add(
        "ApiDefaultStage",
        Stage {
            api_id: Expr::reference(HTTP_API),
            stage_name: "$default".to_owned(),
            auto_deploy: true,
            default_route_settings: RouteSettings {
                detailed_metrics_enabled: true,
                throttling_burst_limit: env.api.throttle_burst_limit,
                throttling_rate_limit: env.api.throttle_rate_limit,
            },
            access_log_settings: AccessLogSettings {
                destination_arn: Expr::get_att("ApiAccessLogGroup", "Arn"),
                format: ACCESS_LOG_FORMAT.to_owned(),
            },
            tags: stack.tags.map(),
        },
    )
}

/// Lets this API, and no other, invoke `function`.
fn add_invoke_permission(
    stack: &mut StackBuilder<'_>,
    function: &FunctionRef,
) -> Result<(), CfnError> {
    stack.add(
        &format!("{}ApiPermission", function.logical_id),
        Permission {
            action: actions::LAMBDA_INVOKE_FUNCTION,
            function_name: Expr::get_att(&function.logical_id, "Arn"),
            principal: "apigateway.amazonaws.com".to_owned(),
            source_arn: Expr::sub(format!(
                "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{HTTP_API}}}/*"
            )),
        },
    )
}

/// The alarm on 5xx answers of the default stage, with its runbook section.
fn add_5xx_alarm(stack: &mut StackBuilder<'_>, function: &FunctionRef) -> Result<(), CfnError> {
    let env = stack.env;
    let api_logs = format!("/aws/apigateway/{}", stack.stack_name());
    let function_logs = format!(
        "/aws/lambda/{}-{}",
        stack.stack_name(),
        function.role.name()
    );
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: "Api5xxAlarm".to_owned(),
            anchor: "api-5xx".to_owned(),
            title: "API 5xx".to_owned(),
            meaning: format!(
                "The HTTP API answered 5xx at least {} time(s) in a period: the {} function failed, timed out or was throttled, or API Gateway could not reach it.",
                env.alarms.api_5xx,
                function.role.name()
            ),
            watched: Watched::Metric {
                namespace: "AWS/ApiGateway".to_owned(),
                name: "5xx",
                dimensions: vec![
                    dimension("ApiId", Expr::reference(HTTP_API)),
                    dimension("Stage", Expr::str("$default")),
                ],
                statistic: Statistic::Sum,
            },
            threshold: f64::from(env.alarms.api_5xx),
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            look_at: vec![
                format!(
                    "The access logs in {}: `status`, `integrationStatus` and `integrationError` per request.",
                    stack.logs_location(&api_logs)
                ),
                format!(
                    "The {} function's logs in {} and its errors and throttles alarms.",
                    function.role.name(),
                    stack.logs_location(&function_logs)
                ),
                "The saga of a failed request, by the `transaction_id` the API returned or logged."
                    .to_owned(),
            ],
            commands: api_5xx_commands(stack, &api_logs, &function_logs),
        },
    )
}

/// What to run on an API 5xx alarm: the 5xx access log lines (not in `local`, which serves the
/// API on this machine without CloudWatch access logs), the function's logs and the saga.
fn api_5xx_commands(stack: &StackBuilder<'_>, api_logs: &str, function_logs: &str) -> Vec<String> {
    let mut commands = Vec::new();
    if !stack.env.is_local() {
        commands.push(format!(
            "{} --log-group-name {api_logs} --start-time {} --filter-pattern '{{ $.status = \"5*\" }}'",
            stack.aws("logs filter-log-events"),
            super::LAST_HOUR_MILLIS
        ));
    }
    commands.push(stack.filter_logs_command(function_logs));
    commands.push(stack.saga_show_command());
    commands
}
