//! What holds for every synthesized stack: synthesis is deterministic, outputs are exported
//! under the stack name, every taggable resource is tagged, local stacks read no attribute the
//! emulator ignores, and a policy violation fails synthesis.

use crate::common;

use std::time::Duration;

use sagaform_stacks::cfn::Expr;
use sagaform_stacks::fixtures::example_env;
use sagaform_stacks::{Pattern, SynthError, synthesize};

use common::{all_examples, template};

#[test]
fn synthesis_is_byte_identical_across_runs() {
    for (pattern, env) in all_examples() {
        let first = synthesize(pattern, &env).unwrap();
        let second = synthesize(pattern, &env).unwrap();
        assert_eq!(first.template_yaml, second.template_yaml);
        assert_eq!(first.runbook_markdown, second.runbook_markdown);
        assert!(
            first.template_yaml.starts_with("AWSTemplateFormatVersion:"),
            "the caller adds the header"
        );
        assert!(
            first.runbook_markdown.starts_with("# Runbook"),
            "the caller adds the header"
        );
    }
}

#[test]
fn outputs_are_exported_under_the_stack_name() {
    for (pattern, env) in all_examples() {
        let template = template(pattern, &env);
        for (id, output) in &template.outputs {
            assert_eq!(
                output.export.as_ref().unwrap().name,
                Expr::sub(format!("${{AWS::StackName}}-{id}"))
            );
        }
        assert!(template.outputs.contains_key("AlarmTopicArn"));
    }
}

/// Resource types CloudFormation cannot tag.
const UNTAGGABLE: [&str; 13] = [
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::EC2::Route",
    "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::SubnetRouteTableAssociation",
    "AWS::EC2::VPCGatewayAttachment",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::Permission",
    "AWS::Logs::MetricFilter",
    "AWS::RDS::DBProxyTargetGroup",
    "AWS::SNS::Subscription",
    // A custom resource's properties go to its function, not to a taggable AWS resource.
    "Custom::DatabaseMigrations",
];

#[test]
fn every_taggable_resource_is_tagged_with_env_and_pattern() {
    for (pattern, env) in all_examples() {
        let template = template(pattern, &env);
        for (id, resource) in &template.resources {
            let node = sagaform_stacks::cfn::yaml::to_node(&resource.properties).unwrap();
            let sagaform_stacks::cfn::yaml::Node::Map(entries) = node else {
                panic!()
            };
            let tags = entries.iter().find(|(k, _)| k == "Tags");
            if UNTAGGABLE.contains(&resource.resource_type()) {
                assert!(tags.is_none(), "{id}");
                continue;
            }
            let (_, tags) =
                tags.unwrap_or_else(|| panic!("{pattern} {}: {id} has no Tags", env.name));
            let text = format!("{tags:?}");
            assert!(
                text.contains("\"env\"") && text.contains(&format!("\"{}\"", env.name)),
                "{id}"
            );
            assert!(
                text.contains("\"pattern\"") && text.contains(&format!("\"{}\"", pattern.name())),
                "{id}"
            );
            assert!(text.contains("\"cost-centre\""), "{id}");
        }
    }
}

#[test]
fn local_stacks_never_read_attributes_the_emulator_ignores() {
    // moto's CloudFormation skips these types, so a GetAtt on them fails there.
    let ignored = [
        "AWS::CloudWatch::Alarm",
        "AWS::SecretsManager::Secret",
        "AWS::RDS::DBCluster",
        "AWS::SNS::Subscription",
    ];
    for pattern in Pattern::ALL {
        let template = template(pattern, &example_env("local"));
        let yaml = template.to_yaml().unwrap();
        for (id, resource) in &template.resources {
            if ignored.contains(&resource.resource_type())
                || resource.resource_type().starts_with("AWS::ApiGatewayV2::")
            {
                assert!(
                    !yaml.contains(&format!("!GetAtt {id}.")),
                    "{pattern}: GetAtt on {id}"
                );
                assert!(
                    !yaml.contains(&format!("${{{id}.")),
                    "{pattern}: GetAtt on {id} in a !Sub"
                );
            }
        }
    }
}

#[test]
fn a_policy_violation_fails_synthesis() {
    let mut env = example_env("staging");
    // A config the loader would refuse, given straight to synthesize: the policy catches it too.
    env.queue.visibility_timeout = Duration::from_secs(60);
    let error = synthesize(Pattern::Sqs, &env).unwrap_err();
    let SynthError::PolicyViolations { violations, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(violations.len(), 1);
    assert!(
        error.to_string().contains("visibility timeout of 60 s"),
        "{error}"
    );
}
