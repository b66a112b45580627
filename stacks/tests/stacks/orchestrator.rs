//! Pattern `orchestrator`: it answers within the HTTP API's limit and resumes longer sagas in an
//! asynchronous invocation of itself, whose failures land in a queue the runbook explains.

use crate::common;

use sagaform_stacks::cfn::{Expr, Properties};
use sagaform_stacks::fixtures::example_env;
use sagaform_stacks::patterns::RESPONSE_BUDGET_MILLIS;
use sagaform_stacks::{Pattern, synthesize};

use common::{
    action_names, assert_runbook_section_contains, env_var, statements_for, template, types,
};

#[test]
fn orchestrator_answers_within_the_http_api_limit_and_resumes_the_saga_asynchronously() {
    for env_name in ["local", "staging", "prod"] {
        let env = example_env(env_name);
        let template = template(Pattern::Orchestrator, &env);
        let Properties::Function(api) = &template.resources["ApiFunction"].properties else {
            panic!()
        };
        // A fixed name lets the role name the function without depending on it.
        assert_eq!(api.function_name, Expr::sub("${AWS::StackName}-api"));
        let Properties::ApiIntegration(integration) =
            &template.resources["ApiIntegration"].properties
        else {
            panic!()
        };
        assert!(RESPONSE_BUDGET_MILLIS < integration.timeout_in_millis);
        assert_eq!(
            env_var(&template, "ApiFunction", "SAGAFORM_RESPONSE_BUDGET_MS"),
            Some(&Expr::str(RESPONSE_BUDGET_MILLIS.to_string()))
        );

        let invoke = statements_for(&template, "ApiFunctionRole", "lambda");
        assert_eq!(invoke.len(), 1, "{env_name}");
        assert_eq!(action_names(invoke[0]), ["lambda:InvokeFunction"]);
        assert_eq!(
            invoke[0].resource,
            [Expr::sub(
                "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-api"
            )]
        );

        // The asynchronous path ends in an encrypted queue with an alarm.
        let Properties::EventInvokeConfig(config) =
            &template.resources["ApiFunctionEventInvokeConfig"].properties
        else {
            panic!()
        };
        assert!(config.function_name.is_ref_to("ApiFunction"));
        assert_eq!(config.qualifier, "$LATEST");
        assert!(config.maximum_retry_attempts <= 2);
        assert!(
            config
                .destination_config
                .on_failure
                .destination
                .is_get_att_of("ResumeDeadLetterQueue", "Arn")
        );
        let Properties::Queue(queue) = &template.resources["ResumeDeadLetterQueue"].properties
        else {
            panic!()
        };
        assert!(queue.is_encrypted());
        assert_eq!(queue.message_retention_period, 1_209_600);
        let send = statements_for(&template, "ApiFunctionRole", "sqs");
        assert_eq!(send.len(), 1);
        assert_eq!(action_names(send[0]), ["sqs:SendMessage"]);
        assert_eq!(
            send[0].resource,
            [Expr::get_att("ResumeDeadLetterQueue", "Arn")]
        );
        assert!(template.outputs.contains_key("ResumeDeadLetterQueueUrl"));
    }

    // The other patterns answer at once and never invoke themselves.
    for pattern in [Pattern::Sqs, Pattern::StepFunctions] {
        let template = template(pattern, &example_env("staging"));
        assert_eq!(
            env_var(&template, "ApiFunction", "SAGAFORM_RESPONSE_BUDGET_MS"),
            None
        );
        assert!(statements_for(&template, "ApiFunctionRole", "lambda").is_empty());
        assert!(!types(&template).contains(&"AWS::Lambda::EventInvokeConfig"));
    }
}

#[test]
fn resume_failure_runbook_section_resumes_the_saga_with_the_functions_own_event() {
    let synthesized = synthesize(Pattern::Orchestrator, &example_env("staging")).unwrap();
    assert_runbook_section_contains(
        &synthesized.runbook_markdown,
        "orchestrator resume failed",
        &[
            "requestPayload.resume.transaction_id",
            "aws sqs receive-message --region ap-northeast-1 --queue-url",
            "cargo xtask saga show --pattern orchestrator --env staging <transaction_id>",
            "aws lambda invoke --region ap-northeast-1 --function-name sagaform-orchestrator-staging-api --invocation-type Event --cli-binary-format raw-in-base64-out --payload '{\"resume\":{\"transaction_id\":\"<transaction_id>\"}}'",
            "aws sqs purge-queue --region ap-northeast-1 --queue-url",
        ],
    );
}
