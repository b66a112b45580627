//! The typed CloudFormation model and its YAML: key order, intrinsic functions in short form,
//! quoting that survives YAML 1.1 parsers, and logical id rules.

use indexmap::IndexMap;
use sagaform_stacks::cfn::iam::Action;
use sagaform_stacks::cfn::sqs::Queue;
use sagaform_stacks::cfn::{
    CfnError, CheckovSkip, DeletionPolicy, Expr, Output, Parameter, Pseudo, Resource, Template,
    yaml,
};
use sagaform_stacks::fixtures::example_env;
use sagaform_stacks::{Pattern, synthesize};

fn queue() -> Queue {
    Queue {
        queue_name: None,
        fifo_queue: false,
        sqs_managed_sse_enabled: Some(true),
        kms_master_key_id: None,
        visibility_timeout: 30,
        message_retention_period: 60,
        redrive_policy: None,
        redrive_allow_policy: None,
        tags: Vec::new(),
    }
}

fn yaml_of(expr: Expr) -> String {
    yaml::to_string(&IndexMap::from([("V", expr)])).unwrap()
}

#[test]
fn template_sections_come_in_cloudformation_order() {
    let mut template = Template::new("order");
    template
        .add_output(
            "QueueUrl",
            Output::exported("QueueUrl", "url", Expr::reference("Queue")),
        )
        .unwrap();
    template.add_resource("Queue", queue()).unwrap();
    template
        .add_condition(
            "IsProd",
            Expr::Equals(Box::new(Expr::str("a")), Box::new(Expr::str("b"))),
        )
        .unwrap();
    template
        .add_parameter("Bucket", Parameter::string("bucket"))
        .unwrap();
    let yaml = template.to_yaml().unwrap();
    let positions: Vec<usize> = [
        "AWSTemplateFormatVersion:",
        "Description:",
        "Parameters:",
        "Conditions:",
        "Resources:",
        "Outputs:",
    ]
    .iter()
    .map(|key| {
        yaml.find(&format!("\n{key}"))
            .map(|p| p + 1)
            .or_else(|| yaml.starts_with(key).then_some(0))
            .unwrap()
    })
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{yaml}");
    assert!(yaml.starts_with("AWSTemplateFormatVersion: '2010-09-09'\n"));
}

#[test]
fn resource_attributes_come_before_properties_in_cloudformation_order() {
    let mut resource = Resource::new(queue())
        .with_policies(DeletionPolicy::Retain)
        .depends_on(["Other"]);
    resource.condition = Some("IsProd".to_owned());
    resource.metadata = Some(IndexMap::from([("Note".to_owned(), Expr::str("kept"))]));
    let yaml = yaml::to_string(&resource).unwrap();
    let keys: Vec<&str> = yaml
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "Type",
            "Condition",
            "DependsOn",
            "DeletionPolicy",
            "UpdateReplacePolicy",
            "Metadata",
            "Properties"
        ]
    );
    assert!(yaml.starts_with("Type: AWS::SQS::Queue\n"));
}

#[test]
fn checkov_skips_are_written_into_metadata_as_checkov_reads_them_with_their_reasons() {
    let mut resource = Resource::new(queue())
        .with_checkov_skip(CheckovSkip::QueueSseSqs)
        .with_checkov_skip(CheckovSkip::QueueSseSqs);
    resource.metadata = Some(IndexMap::from([("Note".to_owned(), Expr::str("kept"))]));
    let yaml = yaml::to_string(&resource).unwrap();
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(parsed["Metadata"]["Note"].as_str(), Some("kept"), "{yaml}");
    let skips = parsed["Metadata"]["checkov"]["skip"].as_sequence().unwrap();
    assert_eq!(skips.len(), 1, "a repeated skip is written once: {yaml}");
    assert_eq!(skips[0]["id"].as_str(), Some("CKV_AWS_27"));
    assert_eq!(
        skips[0]["comment"].as_str(),
        Some(CheckovSkip::QueueSseSqs.reason().as_str())
    );
    assert!(
        !yaml::to_string(&Resource::new(queue()))
            .unwrap()
            .contains("Metadata"),
        "no skip, no metadata: no Metadata key"
    );
}

#[test]
fn resources_keep_insertion_order() {
    let mut template = Template::new("order");
    for id in ["Zeta", "Alpha", "Mid"] {
        template.add_resource(id, queue()).unwrap();
    }
    let yaml = template.to_yaml().unwrap();
    let (z, a, m) = (
        yaml.find("  Zeta:").unwrap(),
        yaml.find("  Alpha:").unwrap(),
        yaml.find("  Mid:").unwrap(),
    );
    assert!(z < a && a < m);
}

#[test]
fn ref_is_written_as_short_form_ref() {
    assert_eq!(yaml_of(Expr::reference("Queue")), "V: !Ref Queue\n");
}

#[test]
fn pseudo_parameters_are_refs_to_their_aws_names() {
    for (pseudo, name) in [
        (Pseudo::AccountId, "AWS::AccountId"),
        (Pseudo::Region, "AWS::Region"),
        (Pseudo::Partition, "AWS::Partition"),
        (Pseudo::StackName, "AWS::StackName"),
        (Pseudo::StackId, "AWS::StackId"),
        (Pseudo::UrlSuffix, "AWS::URLSuffix"),
        (Pseudo::NoValue, "AWS::NoValue"),
    ] {
        assert_eq!(yaml_of(Expr::pseudo(pseudo)), format!("V: !Ref {name}\n"));
    }
    // A pseudo parameter is no resource of the template.
    assert_eq!(Expr::pseudo(Pseudo::Region).target(), None);
}

#[test]
fn get_att_joins_resource_and_attribute_with_a_dot() {
    assert_eq!(yaml_of(Expr::get_att("Dlq", "Arn")), "V: !GetAtt Dlq.Arn\n");
    assert_eq!(
        yaml_of(Expr::get_att("Cluster", "Endpoint.Address")),
        "V: !GetAtt Cluster.Endpoint.Address\n"
    );
}

#[test]
fn sub_without_variables_is_a_plain_string() {
    assert_eq!(
        yaml_of(Expr::sub("${AWS::StackName}-work")),
        "V: !Sub ${AWS::StackName}-work\n"
    );
}

#[test]
fn sub_with_variables_is_a_template_and_a_map() {
    assert_eq!(
        yaml_of(Expr::sub_with(
            "${Arn}:*",
            [("Arn", Expr::get_att("Fn", "Arn"))]
        )),
        "V: !Sub\n  - ${Arn}:*\n  - Arn: !GetAtt Fn.Arn\n"
    );
}

#[test]
fn join_is_a_delimiter_and_a_list() {
    assert_eq!(
        yaml_of(Expr::Join(
            ",".to_owned(),
            vec![Expr::reference("A"), Expr::str("b")]
        )),
        "V: !Join\n  - ','\n  - - !Ref A\n    - b\n"
    );
}

#[test]
fn if_is_a_condition_name_and_two_values() {
    assert_eq!(
        yaml_of(Expr::If(
            "IsProd".to_owned(),
            Box::new(Expr::Int(1)),
            Box::new(Expr::pseudo(Pseudo::NoValue))
        )),
        "V: !If\n  - IsProd\n  - 1\n  - !Ref AWS::NoValue\n"
    );
}

#[test]
fn select_is_an_index_and_a_list() {
    assert_eq!(
        yaml_of(Expr::Select(0, Box::new(Expr::GetAzs(String::new())))),
        "V: !Select\n  - 0\n  - !GetAZs ''\n"
    );
    assert_eq!(
        yaml_of(Expr::Select(
            1,
            Box::new(Expr::List(vec![Expr::str("a"), Expr::str("b")]))
        )),
        "V: !Select\n  - 1\n  - - a\n    - b\n"
    );
}

#[test]
fn get_azs_names_a_region_or_the_stacks_own() {
    assert_eq!(yaml_of(Expr::GetAzs(String::new())), "V: !GetAZs ''\n");
    assert_eq!(
        yaml_of(Expr::GetAzs("ap-northeast-1".to_owned())),
        "V: !GetAZs ap-northeast-1\n"
    );
}

#[test]
fn cidr_is_a_block_a_count_and_host_bits() {
    assert_eq!(
        yaml_of(Expr::Cidr(
            Box::new(Expr::get_att("Vpc", "CidrBlock")),
            4,
            14
        )),
        "V: !Cidr\n  - !GetAtt Vpc.CidrBlock\n  - 4\n  - 14\n"
    );
}

#[test]
fn import_value_of_a_literal_uses_the_short_form() {
    assert_eq!(
        yaml_of(Expr::ImportValue(Box::new(Expr::str("shared-vpc")))),
        "V: !ImportValue shared-vpc\n"
    );
}

#[test]
fn condition_functions_use_their_short_forms() {
    assert_eq!(
        yaml_of(Expr::Not(Box::new(Expr::Equals(
            Box::new(Expr::reference("Env")),
            Box::new(Expr::str("prod"))
        )))),
        "V: !Not\n  - !Equals\n    - !Ref Env\n    - prod\n"
    );
    assert_eq!(
        yaml_of(Expr::And(vec![
            Expr::Condition("A".to_owned()),
            Expr::Condition("B".to_owned())
        ])),
        "V: !And\n  - !Condition A\n  - !Condition B\n"
    );
    assert_eq!(
        yaml_of(Expr::Or(vec![
            Expr::Condition("A".to_owned()),
            Expr::Equals(Box::new(Expr::str("a")), Box::new(Expr::str("b")))
        ])),
        "V: !Or\n  - !Condition A\n  - !Equals\n    - a\n    - b\n"
    );
}

#[test]
fn literals_keep_their_yaml_types() {
    assert_eq!(yaml_of(Expr::Int(5432)), "V: 5432\n");
    assert_eq!(yaml_of(Expr::Float(2.0)), "V: 2.0\n");
    assert_eq!(yaml_of(Expr::Float(0.5)), "V: 0.5\n");
    assert_eq!(yaml_of(Expr::Bool(true)), "V: true\n");
    // A string that reads as a number stays a string.
    assert_eq!(yaml_of(Expr::str("5432")), "V: '5432'\n");
}

#[test]
fn template_with_parameters_conditions_and_conditional_resources_and_outputs_serializes() {
    let mut template = Template::new("conditions");
    template
        .add_parameter("Env", Parameter::string("env"))
        .unwrap();
    template
        .add_condition(
            "IsProd",
            Expr::Equals(
                Box::new(Expr::reference("Env")),
                Box::new(Expr::str("prod")),
            ),
        )
        .unwrap();
    let mut resource = Resource::new(queue());
    resource.condition = Some("IsProd".to_owned());
    template.add_resource("Queue", resource).unwrap();
    let mut output = Output::exported("QueueUrl", "url", Expr::reference("Queue"));
    output.condition = Some("IsProd".to_owned());
    template.add_output("QueueUrl", output).unwrap();
    let yaml = template.to_yaml().unwrap();
    assert!(
        yaml.contains("Conditions:\n  IsProd: !Equals\n    - !Ref Env\n    - prod\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("  Queue:\n    Type: AWS::SQS::Queue\n    Condition: IsProd\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains(
            "  QueueUrl:\n    Description: url\n    Value: !Ref Queue\n    Export:\n      Name: !Sub ${AWS::StackName}-QueueUrl\n    Condition: IsProd\n"
        ),
        "{yaml}"
    );
}

#[test]
fn import_value_holding_a_short_form_function_uses_the_long_form() {
    let yaml = yaml_of(Expr::ImportValue(Box::new(Expr::sub("${Network}-VpcId"))));
    assert_eq!(yaml, "V:\n  Fn::ImportValue: !Sub ${Network}-VpcId\n");
}

#[test]
fn logical_ids_are_unique_and_alphanumeric() {
    let mut template = Template::new("ids");
    template.add_resource("Queue", queue()).unwrap();
    assert!(
        matches!(template.add_resource("Queue", queue()), Err(CfnError::DuplicateLogicalId(id, "Resources")) if id == "Queue")
    );
    assert!(matches!(
        template.add_resource("Work-Queue", queue()),
        Err(CfnError::InvalidLogicalId(_))
    ));
}

#[test]
fn wildcard_actions_are_recognised() {
    assert!(Action::new("sqs", "*").is_wildcard());
    assert!(Action::new("s3", "Get*").is_wildcard());
    assert!(Action::new("*", "*").is_wildcard());
    assert!(!Action::new("sqs", "SendMessage").is_wildcard());
    assert_eq!(
        Action::new("sqs", "SendMessage").to_string(),
        "sqs:SendMessage"
    );
}

/// Our writer's output, read back by a YAML parser, is the value the model serializes to.
#[test]
fn generated_yaml_reads_back_as_the_model() {
    for env in ["local", "staging", "prod"] {
        let env = example_env(env);
        for pattern in Pattern::ALL {
            let synthesized = synthesize(pattern, &env).unwrap();
            let parsed: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&synthesized.template_yaml).unwrap();
            let expected = serde_yaml_ng::to_value(&synthesized.template).unwrap();
            assert!(
                parsed == expected,
                "{pattern} {}: YAML does not read back as the model",
                env.name
            );
        }
    }
}
