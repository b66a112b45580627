//! The HTTP API of every pattern: its routes, throttling and authorization.

use crate::common;

use sagaform_stacks::Pattern;
use sagaform_stacks::cfn::Properties;
use sagaform_stacks::fixtures::example_env;

use common::{all_examples, picked, template};

#[test]
fn every_stack_has_an_http_api_with_both_routes_and_throttling() {
    for (pattern, env) in all_examples() {
        let template = template(pattern, &env);
        let routes = picked(&template, |properties| match properties {
            Properties::ApiRoute(route) => Some(route.route_key.as_str()),
            _ => None,
        });
        assert_eq!(
            routes,
            ["POST /transactions", "GET /transactions/{id}"],
            "{pattern} {}",
            env.name
        );
        let Properties::ApiStage(stage) = &template.resources["ApiDefaultStage"].properties else {
            panic!()
        };
        assert_eq!(
            stage.default_route_settings.throttling_burst_limit,
            env.api.throttle_burst_limit
        );
        assert!(
            stage
                .access_log_settings
                .destination_arn
                .is_get_att_of("ApiAccessLogGroup", "Arn")
        );
        assert!(template.outputs.contains_key("ApiUrl"));
    }
}

#[test]
fn authorization_follows_env_config() {
    let staging = template(Pattern::Sqs, &example_env("staging"));
    assert!(!staging.resources.contains_key("JwtAuthorizer"));
    assert!(
        staging
            .to_yaml()
            .unwrap()
            .contains("AuthorizationType: AWS_IAM")
    );
    let prod = template(Pattern::Sqs, &example_env("prod"));
    assert_eq!(
        prod.resources["JwtAuthorizer"].resource_type(),
        "AWS::ApiGatewayV2::Authorizer"
    );
    let Properties::ApiRoute(route) = &prod.resources["PostTransactionRoute"].properties else {
        panic!()
    };
    assert!(
        route
            .authorizer_id
            .as_ref()
            .is_some_and(|id| id.is_ref_to("JwtAuthorizer"))
    );
}
