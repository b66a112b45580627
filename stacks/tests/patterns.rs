//! The three pattern stacks: what each contains, how env config shapes it, the alarms and their
//! runbook sections, outputs, tags, determinism, and the errors `synthesize` gives.

use std::time::Duration;

use sagaform_stacks::cfn::iam::Statement;
use sagaform_stacks::cfn::{DeletionPolicy, Expr, Properties, Template};
use sagaform_stacks::config::{EnvConfig, FunctionRole, StateStoreKind};
use sagaform_stacks::fixtures::example_env;
use sagaform_stacks::patterns::RESPONSE_BUDGET_MILLIS;
use sagaform_stacks::runbook::heading_anchor;
use sagaform_stacks::{Pattern, SynthError, synthesize};

fn template(pattern: Pattern, env: &EnvConfig) -> Template {
    synthesize(pattern, env).unwrap().template
}

fn types(template: &Template) -> Vec<&'static str> {
    template
        .resources
        .values()
        .map(|r| r.resource_type())
        .collect()
}

fn env_var<'t>(template: &'t Template, function: &str, name: &str) -> Option<&'t Expr> {
    match &template.resources[function].properties {
        Properties::Function(f) => f.environment.variables.get(name),
        _ => panic!("{function} is not a function"),
    }
}

/// The statements of a role's inline policies.
fn statements<'t>(template: &'t Template, role: &str) -> Vec<&'t Statement> {
    let Properties::Role(role) = &template.resources[role].properties else {
        panic!("{role} is not a role")
    };
    role.policies
        .iter()
        .flat_map(|p| &p.policy_document.statement)
        .collect()
}

/// The statements of a role granting any action of `service`.
fn statements_for<'t>(template: &'t Template, role: &str, service: &str) -> Vec<&'t Statement> {
    statements(template, role)
        .into_iter()
        .filter(|s| s.action.iter().any(|a| a.service == service))
        .collect()
}

fn action_names(statement: &Statement) -> Vec<String> {
    statement.action.iter().map(ToString::to_string).collect()
}

fn all() -> Vec<(Pattern, EnvConfig)> {
    let mut all = Vec::new();
    for env in ["local", "staging", "prod"] {
        for pattern in Pattern::ALL {
            all.push((pattern, example_env(env)));
        }
    }
    all
}

#[test]
fn synthesis_is_byte_identical_across_runs() {
    for (pattern, env) in all() {
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
fn every_stack_has_an_http_api_with_both_routes_and_throttling() {
    for (pattern, env) in all() {
        let template = template(pattern, &env);
        let routes: Vec<&str> = template
            .resources
            .values()
            .filter_map(|r| {
                if let Properties::ApiRoute(route) = &r.properties {
                    Some(route.route_key.as_str())
                } else {
                    None
                }
            })
            .collect();
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

#[test]
fn functions_run_provided_al2023_from_the_artifact_bucket_with_config_settings() {
    for env_name in ["staging", "prod"] {
        let env = example_env(env_name);
        let template = template(Pattern::Sqs, &env);
        let Properties::Function(worker) = &template.resources["WorkerFunction"].properties else {
            panic!()
        };
        let settings = &env.functions.by_role[&FunctionRole::Worker];
        assert_eq!(
            serde_json::to_value(worker.runtime).unwrap(),
            "provided.al2023"
        );
        let architecture = serde_json::to_value(&worker.architectures).unwrap();
        assert_eq!(
            architecture,
            serde_json::json!([if env_name == "prod" {
                "x86_64"
            } else {
                "arm64"
            }])
        );
        assert!(worker.code.s3_bucket.is_ref_to("ArtifactBucket"));
        assert!(worker.code.s3_key.is_ref_to("WorkerCodeKey"));
        assert_eq!(worker.memory_size, settings.memory_mb);
        assert_eq!(u64::from(worker.timeout), settings.timeout.as_secs());
        assert_eq!(
            worker.reserved_concurrent_executions,
            settings.reserved_concurrency
        );
        assert_eq!(
            serde_json::to_value(worker.logging_config.log_format).unwrap(),
            "JSON"
        );
        assert!(
            template.parameters.contains_key("ApiCodeKey")
                && !template.parameters.contains_key("StepCodeKey")
        );
    }
}

#[test]
fn environment_variables_hold_only_non_secret_config() {
    for (pattern, env) in all() {
        let template = template(pattern, &env);
        for (id, resource) in &template.resources {
            let Properties::Function(function) = &resource.properties else {
                continue;
            };
            for (name, value) in &function.environment.variables {
                assert!(
                    !name.contains("PASSWORD") && !name.ends_with("_SECRET"),
                    "{id}: {name}"
                );
                if let Some(text) = value.as_str() {
                    assert!(!text.to_lowercase().contains("password"), "{id}: {name}");
                }
            }
            assert_eq!(
                env_var(&template, id, "SAGAFORM_PATTERN"),
                Some(&Expr::str(pattern.name()))
            );
        }
    }
}

#[test]
fn store_variables_follow_the_contract() {
    let staging = example_env("staging");
    let sqs = template(Pattern::Sqs, &staging);
    assert!(
        env_var(&sqs, "WorkerFunction", "SAGAFORM_SAGA_TABLE")
            .unwrap()
            .is_ref_to("SagaTable")
    );
    assert!(
        env_var(&sqs, "WorkerFunction", "SAGAFORM_IDEMPOTENCY_TABLE")
            .unwrap()
            .is_ref_to("IdempotencyTable")
    );
    assert_eq!(
        env_var(&sqs, "WorkerFunction", "SAGAFORM_SAGA_TTL_SECONDS"),
        Some(&Expr::str("2592000"))
    );
    assert_eq!(
        env_var(
            &sqs,
            "WorkerFunction",
            "SAGAFORM_SAAS_PAYMENTS_REQUEST_TIMEOUT_MS"
        ),
        Some(&Expr::str("5000"))
    );
    assert!(
        env_var(&sqs, "ApiFunction", "SAGAFORM_QUEUE_URL")
            .unwrap()
            .is_ref_to("WorkQueue")
    );

    let orchestrator = template(Pattern::Orchestrator, &staging);
    assert!(
        env_var(&orchestrator, "ApiFunction", "SAGAFORM_DB_HOST")
            .unwrap()
            .is_get_att_of("DatabaseProxy", "Endpoint")
    );
    assert!(
        env_var(&orchestrator, "ApiFunction", "SAGAFORM_DB_SECRET_ARN")
            .unwrap()
            .is_get_att_of("DatabaseCluster", "MasterUserSecret.SecretArn")
    );
    assert_eq!(
        env_var(&orchestrator, "ApiFunction", "SAGAFORM_STORE"),
        Some(&Expr::str("aurora"))
    );

    let steps = template(Pattern::StepFunctions, &staging);
    assert!(
        env_var(&steps, "ApiFunction", "SAGAFORM_STATE_MACHINE_ARN")
            .unwrap()
            .is_ref_to("StateMachine")
    );
}

#[test]
fn dynamodb_tables_follow_the_contract() {
    let template = template(Pattern::Sqs, &example_env("staging"));
    let yaml = template.to_yaml().unwrap();
    let Properties::Table(saga) = &template.resources["SagaTable"].properties else {
        panic!()
    };
    assert_eq!(saga.key_schema[0].attribute_name, "transaction_id");
    assert_eq!(saga.time_to_live_specification.attribute_name, "expires_at");
    assert_eq!(saga.global_secondary_indexes[0].index_name, "by-status");
    assert!(
        saga.point_in_time_recovery_specification
            .point_in_time_recovery_enabled
            && saga.sse_specification.sse_enabled
    );
    let Properties::Table(idempotency) = &template.resources["IdempotencyTable"].properties else {
        panic!()
    };
    assert_eq!(idempotency.key_schema[0].attribute_name, "id");
    assert_eq!(
        idempotency.time_to_live_specification.attribute_name,
        "expiration"
    );
    assert!(yaml.contains("BillingMode: PAY_PER_REQUEST"));
}

#[test]
fn data_resources_keep_their_data_outside_local_only() {
    for (pattern, env) in all() {
        let template = template(pattern, &env);
        for (id, resource) in &template.resources {
            if matches!(
                resource.properties,
                Properties::Table(_) | Properties::DbCluster(_)
            ) {
                let expected = if env.is_local() {
                    DeletionPolicy::Delete
                } else {
                    DeletionPolicy::Retain
                };
                assert_eq!(
                    resource.deletion_policy,
                    Some(expected),
                    "{pattern} {} {id}",
                    env.name
                );
                assert_eq!(
                    resource.update_replace_policy,
                    Some(expected),
                    "{pattern} {} {id}",
                    env.name
                );
            }
        }
    }
}

#[test]
fn aurora_runs_serverless_v2_behind_rds_proxy_in_a_created_vpc() {
    let env = example_env("staging");
    let template = template(Pattern::Orchestrator, &env);
    let types = types(&template);
    for expected in [
        "AWS::EC2::VPC",
        "AWS::EC2::NatGateway",
        "AWS::RDS::DBSubnetGroup",
        "AWS::RDS::DBCluster",
        "AWS::RDS::DBInstance",
        "AWS::RDS::DBProxy",
        "AWS::RDS::DBProxyTargetGroup",
    ] {
        assert!(types.contains(&expected), "missing {expected}");
    }
    assert_eq!(
        types.iter().filter(|t| **t == "AWS::EC2::Subnet").count(),
        4
    );
    let Properties::DbCluster(cluster) = &template.resources["DatabaseCluster"].properties else {
        panic!()
    };
    assert!(
        cluster.manage_master_user_password
            && cluster.storage_encrypted
            && !cluster.deletion_protection
    );
    let Properties::DbInstance(instance) = &template.resources["DatabaseInstance"].properties
    else {
        panic!()
    };
    assert_eq!(instance.db_instance_class, "db.serverless");
    let Properties::Function(api) = &template.resources["ApiFunction"].properties else {
        panic!()
    };
    let vpc = api
        .vpc_config
        .as_ref()
        .expect("the api function reaches the proxy from the VPC");
    assert!(vpc.security_group_ids[0].is_ref_to("FunctionSecurityGroup"));
    assert!(
        template.outputs.contains_key("DatabaseProxyEndpoint")
            && template.outputs.contains_key("DatabaseClusterEndpoint")
    );
}

#[test]
fn aurora_in_production_uses_the_existing_network_and_deletion_protection() {
    let env = example_env("prod");
    assert_eq!(env.store(Pattern::Orchestrator), StateStoreKind::Aurora);
    let template = template(Pattern::Orchestrator, &env);
    assert!(!types(&template).contains(&"AWS::EC2::VPC"));
    let Properties::DbCluster(cluster) = &template.resources["DatabaseCluster"].properties else {
        panic!()
    };
    assert!(cluster.deletion_protection);
    let Properties::DbSubnetGroup(group) = &template.resources["DatabaseSubnetGroup"].properties
    else {
        panic!()
    };
    assert_eq!(
        group.subnet_ids,
        [
            Expr::str("subnet-0123456789abcdef0"),
            Expr::str("subnet-0fedcba9876543210")
        ]
    );
}

#[test]
fn aurora_in_local_is_the_local_postgresql_server() {
    let template = template(Pattern::Orchestrator, &example_env("local"));
    assert!(
        !types(&template)
            .iter()
            .any(|t| t.starts_with("AWS::RDS::") || t.starts_with("AWS::EC2::"))
    );
    assert!(
        env_var(&template, "ApiFunction", "SAGAFORM_DATABASE_URL")
            .unwrap()
            .is_ref_to("LocalDatabaseUrl")
    );
    let default = template.parameters["LocalDatabaseUrl"]
        .default
        .as_deref()
        .unwrap();
    assert_eq!(
        default, "postgres://postgres@127.0.0.1:5432/sagaform_orchestrator",
        "one database per pattern"
    );
}

#[test]
fn sqs_has_work_queue_dlq_and_a_partial_batch_mapping() {
    let env = example_env("staging");
    let template = template(Pattern::Sqs, &env);
    let Properties::Queue(dlq) = &template.resources["DeadLetterQueue"].properties else {
        panic!()
    };
    assert_eq!(dlq.message_retention_period, 1_209_600);
    assert_eq!(dlq.sqs_managed_sse_enabled, Some(true));
    let allow = dlq.redrive_allow_policy.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(allow.redrive_permission).unwrap(),
        "byQueue"
    );
    assert_eq!(
        allow.source_queue_arns,
        [Expr::sub(
            "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-work"
        )]
    );
    let Properties::Queue(work) = &template.resources["WorkQueue"].properties else {
        panic!()
    };
    assert_eq!(work.queue_name, Some(Expr::sub("${AWS::StackName}-work")));
    let redrive = work.redrive_policy.as_ref().unwrap();
    assert!(
        redrive
            .dead_letter_target_arn
            .is_get_att_of("DeadLetterQueue", "Arn")
    );
    assert_eq!(redrive.max_receive_count, env.queue.max_receive_count);
    let Properties::EventSourceMapping(mapping) =
        &template.resources["WorkerEventSourceMapping"].properties
    else {
        panic!()
    };
    assert_eq!(
        serde_json::to_value(&mapping.function_response_types).unwrap(),
        serde_json::json!(["ReportBatchItemFailures"])
    );
    assert_eq!(mapping.batch_size, env.queue.batch_size);
    assert_eq!(mapping.maximum_batching_window_in_seconds, Some(5));
    assert_eq!(
        mapping.scaling_config.maximum_concurrency,
        env.queue.maximum_concurrency
    );
    for output in ["WorkQueueUrl", "DeadLetterQueueUrl"] {
        assert!(
            matches!(template.outputs[output].value, Expr::Ref(_)),
            "{output} must use !Ref, not GetAtt QueueUrl"
        );
    }
}

#[test]
fn fifo_queues_get_fifo_names_and_no_batching_window() {
    let env = example_env("prod");
    assert!(env.queue.fifo);
    let template = template(Pattern::Sqs, &env);
    let Properties::Queue(work) = &template.resources["WorkQueue"].properties else {
        panic!()
    };
    assert!(work.fifo_queue);
    assert_eq!(
        work.queue_name,
        Some(Expr::sub("${AWS::StackName}-work.fifo"))
    );
    let Properties::Queue(dlq) = &template.resources["DeadLetterQueue"].properties else {
        panic!()
    };
    assert!(dlq.fifo_queue);
    let Properties::EventSourceMapping(mapping) =
        &template.resources["WorkerEventSourceMapping"].properties
    else {
        panic!()
    };
    assert_eq!(mapping.maximum_batching_window_in_seconds, None);
}

#[test]
fn state_machine_is_standard_and_generated_from_the_saga() {
    let template = template(Pattern::StepFunctions, &example_env("staging"));
    let Properties::StateMachine(machine) = &template.resources["StateMachine"].properties else {
        panic!()
    };
    assert_eq!(
        serde_json::to_value(machine.state_machine_type).unwrap(),
        "STANDARD"
    );
    let Expr::SubWith(definition, variables) = &machine.definition_string else {
        panic!("definition is not a !Sub with variables")
    };
    assert!(variables["StepFunctionArn"].is_get_att_of("StepFunction", "Arn"));
    let json: serde_json::Value = serde_json::from_str(definition).unwrap();
    assert_eq!(json["StartAt"], "Execute stock");
    assert!(!machine.logging_configuration.include_execution_data);
    assert!(
        machine.logging_configuration.destinations[0]
            .cloud_watch_logs_log_group
            .log_group_arn
            .is_get_att_of("StateMachineLogGroup", "Arn")
    );
}

#[test]
fn state_machine_role_invokes_only_the_step_function() {
    let template = template(Pattern::StepFunctions, &example_env("staging"));
    let Properties::Role(role) = &template.resources["StateMachineRole"].properties else {
        panic!()
    };
    let statements = &role.policies[0].policy_document.statement;
    let invoke: Vec<_> = statements
        .iter()
        .filter(|s| s.action.iter().any(|a| a.service == "lambda"))
        .collect();
    assert_eq!(invoke.len(), 1);
    assert_eq!(invoke[0].action.len(), 1);
    assert!(invoke[0].resource.iter().all(
        |r| r.is_get_att_of("StepFunction", "Arn") || *r == Expr::sub("${StepFunction.Arn}:*")
    ));
}

#[test]
fn every_failure_path_has_its_alarm() {
    let expect = |pattern, env: &str, alarms: &[&str]| {
        let template = template(pattern, &example_env(env));
        for alarm in alarms {
            assert_eq!(
                template.resources.get(*alarm).map(|r| r.resource_type()),
                Some("AWS::CloudWatch::Alarm"),
                "{pattern} {env} {alarm}"
            );
        }
    };
    let function_alarms = |role: &str| {
        [
            format!("{role}FunctionErrorsAlarm"),
            format!("{role}FunctionThrottlesAlarm"),
        ]
    };
    let api: Vec<String> = function_alarms("Api")
        .into_iter()
        .chain(["Api5xxAlarm".to_owned()])
        .collect();
    let api: Vec<&str> = api.iter().map(String::as_str).collect();
    expect(
        Pattern::Orchestrator,
        "staging",
        &[
            &api[..],
            &[
                "DatabaseCapacityAlarm",
                "DatabaseConnectionsAlarm",
                "ResumeDeadLetterQueueNotEmptyAlarm",
            ],
        ]
        .concat(),
    );
    expect(
        Pattern::Sqs,
        "staging",
        &[
            &api[..],
            &[
                "DeadLetterQueueNotEmptyAlarm",
                "WorkQueueOldestMessageAgeAlarm",
                "WorkerFunctionErrorsAlarm",
                "WorkerFunctionThrottlesAlarm",
                "SagaTableThrottlesAlarm",
                "SagaTableSystemErrorsAlarm",
                "IdempotencyTableThrottlesAlarm",
                "IdempotencyTableSystemErrorsAlarm",
            ],
        ]
        .concat(),
    );
    expect(
        Pattern::StepFunctions,
        "staging",
        &[
            &api[..],
            &[
                "StateMachineExecutionsFailedAlarm",
                "StateMachineExecutionsTimedOutAlarm",
                "StateMachineExecutionsAbortedAlarm",
                "StepFunctionErrorsAlarm",
                "StepFunctionThrottlesAlarm",
            ],
        ]
        .concat(),
    );
}

#[test]
fn dlq_alarm_names_its_runbook_section() {
    let synthesized = synthesize(Pattern::Sqs, &example_env("staging")).unwrap();
    let Properties::Alarm(alarm) =
        &synthesized.template.resources["DeadLetterQueueNotEmptyAlarm"].properties
    else {
        panic!()
    };
    assert!(
        alarm
            .alarm_description
            .ends_with("Runbook: templates/sqs/staging.md#dlq-not-empty"),
        "{}",
        alarm.alarm_description
    );
    let section = synthesized
        .runbook_markdown
        .split("\n## DLQ not empty\n")
        .nth(1)
        .expect("runbook has the DLQ section");
    let section = section.split("\n## ").next().unwrap();
    for command in [
        "cargo xtask dlq list --pattern sqs --env staging",
        "cargo xtask dlq redrive --pattern sqs --env staging",
        "cargo xtask saga show --pattern sqs --env staging <transaction_id>",
        "aws logs filter-log-events --region ap-northeast-1 --log-group-name /aws/lambda/sagaform-sqs-staging-worker",
    ] {
        assert!(
            section.contains(command),
            "missing {command:?} in {section}"
        );
    }
}

#[test]
fn every_alarm_notifies_the_topic_and_links_an_existing_runbook_section() {
    for (pattern, env) in all() {
        let synthesized = synthesize(pattern, &env).unwrap();
        let anchors: Vec<String> = synthesized
            .runbook_markdown
            .lines()
            .filter_map(|line| line.strip_prefix("## "))
            .map(heading_anchor)
            .collect();
        let mut alarms = 0;
        for (id, resource) in &synthesized.template.resources {
            let Properties::Alarm(alarm) = &resource.properties else {
                continue;
            };
            alarms += 1;
            assert_eq!(alarm.alarm_actions, [Expr::reference("AlarmTopic")], "{id}");
            assert_eq!(alarm.ok_actions, [Expr::reference("AlarmTopic")], "{id}");
            assert_eq!(
                serde_json::to_value(alarm.treat_missing_data).unwrap(),
                "notBreaching"
            );
            let (_, link) = alarm.alarm_description.split_once("Runbook: ").unwrap();
            let (file, anchor) = link.split_once('#').unwrap();
            assert_eq!(
                file,
                format!("templates/{}/{}.md", pattern.name(), env.name),
                "{id}"
            );
            assert!(
                anchors.iter().any(|a| a == anchor),
                "{pattern} {}: {id} links #{anchor}, not in {anchors:?}",
                env.name
            );
        }
        assert_eq!(
            anchors.len(),
            alarms + 1,
            "one section per alarm plus the alarm index"
        );
    }
}

#[test]
fn alarm_emails_subscribe_to_the_one_topic() {
    let template = template(Pattern::Sqs, &example_env("prod"));
    let topics = types(&template)
        .iter()
        .filter(|t| **t == "AWS::SNS::Topic")
        .count();
    assert_eq!(topics, 1);
    let endpoints: Vec<&str> = template
        .resources
        .values()
        .filter_map(|r| {
            if let Properties::Subscription(s) = &r.properties {
                Some(s.endpoint.as_str())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(endpoints, ["oncall@example.com", "team@example.com"]);
}

#[test]
fn outputs_are_exported_under_the_stack_name() {
    for (pattern, env) in all() {
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
const UNTAGGABLE: [&str; 11] = [
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::EC2::Route",
    "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::SubnetRouteTableAssociation",
    "AWS::EC2::VPCGatewayAttachment",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::Permission",
    "AWS::RDS::DBProxyTargetGroup",
    "AWS::SNS::Subscription",
];

#[test]
fn every_taggable_resource_is_tagged_with_env_and_pattern() {
    for (pattern, env) in all() {
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
fn orchestrator_whose_saga_outlasts_the_api_timeout_is_refused() {
    let mut env = example_env("staging");
    env.functions
        .by_role
        .get_mut(&FunctionRole::Api)
        .unwrap()
        .timeout = Duration::from_secs(60);
    let error = synthesize(Pattern::Orchestrator, &env).unwrap_err();
    assert!(
        matches!(
            error,
            SynthError::OrchestratorBudgetExceeded {
                timeout_seconds: 60,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(
            "env/staging.toml: functions.api.timeout_seconds: 60 is shorter than the saga's worst case of 130 s"
        ),
        "{message}"
    );
    assert!(!message.ends_with('.'), "{message}");
    // The other patterns do not run the saga in the api function.
    assert!(synthesize(Pattern::Sqs, &env).is_ok());
}

#[test]
fn step_function_shorter_than_a_step_attempt_is_refused() {
    let mut env = example_env("staging");
    env.functions
        .by_role
        .get_mut(&FunctionRole::Step)
        .unwrap()
        .timeout = Duration::from_secs(4);
    let error = synthesize(Pattern::StepFunctions, &env).unwrap_err();
    assert!(
        matches!(&error, SynthError::StepTimeoutTooShort { step, .. } if step == "payment"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "env/staging.toml: functions.step.timeout_seconds: 4 is shorter than one attempt of step payment (5 s)"
    );
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

/// Actions AWS authorizes only on `*`: they act on no resource of the stack.
const STAR_ONLY_ACTIONS: [&str; 10] = [
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
];

#[test]
fn iam_statements_name_this_stacks_resources_except_where_aws_allows_only_star() {
    for (pattern, env) in all() {
        let template = template(pattern, &env);
        for (role_id, resource) in &template.resources {
            if !matches!(resource.properties, Properties::Role(_)) {
                continue;
            }
            for statement in statements(&template, role_id) {
                let sid = statement.sid.as_deref().unwrap_or_default();
                let at = format!("{pattern} {} {role_id} {sid}", env.name);
                assert!(!statement.resource.is_empty(), "{at}: no resource");
                for target in &statement.resource {
                    match target {
                        Expr::Str(star) if star == "*" => {
                            for action in action_names(statement) {
                                assert!(
                                    STAR_ONLY_ACTIONS.contains(&action.as_str()),
                                    "{at}: {action} on *"
                                );
                            }
                        }
                        Expr::Ref(_) | Expr::GetAtt { .. } => {
                            let (id, _) = target.target().unwrap();
                            assert!(template.resources.contains_key(id), "{at}: {id}");
                        }
                        Expr::Sub(text) => {
                            let own_resource = text
                                .strip_prefix("${")
                                .and_then(|rest| rest.split_once('.'))
                                .is_some_and(|(id, _)| template.resources.contains_key(id));
                            let own_name = text.contains(":${AWS::AccountId}:")
                                && text.contains("${AWS::StackName}-");
                            // Lambda creates network interfaces before their ids exist: the
                            // account and region are as narrow as its documentation allows.
                            let network_interfaces = text
                                == "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:*/*"
                                && action_names(statement)
                                    .iter()
                                    .all(|a| a.starts_with("ec2:"));
                            assert!(
                                own_resource || own_name || network_interfaces,
                                "{at}: {text}"
                            );
                        }
                        other => panic!("{at}: unexpected resource {other:?}"),
                    }
                }
            }
        }
    }
}

#[test]
fn api_role_grants_exactly_what_its_pattern_needs() {
    let staging = example_env("staging");

    let sqs = template(Pattern::Sqs, &staging);
    let send = statements_for(&sqs, "ApiFunctionRole", "sqs");
    assert_eq!(send.len(), 1);
    assert_eq!(action_names(send[0]), ["sqs:SendMessage"]);
    assert_eq!(send[0].resource, [Expr::get_att("WorkQueue", "Arn")]);
    assert!(statements_for(&sqs, "ApiFunctionRole", "states").is_empty());
    assert!(statements_for(&sqs, "ApiFunctionRole", "lambda").is_empty());

    let steps = template(Pattern::StepFunctions, &staging);
    let start = statements_for(&steps, "ApiFunctionRole", "states");
    assert_eq!(start.len(), 1);
    assert_eq!(action_names(start[0]), ["states:StartExecution"]);
    assert_eq!(start[0].resource, [Expr::reference("StateMachine")]);
    assert!(statements_for(&steps, "ApiFunctionRole", "sqs").is_empty());
    let step_role = statements(&steps, "StepFunctionRole");
    assert!(
        step_role.iter().all(|s| s
            .action
            .iter()
            .all(|a| ["logs", "dynamodb"].contains(&&*a.service))),
        "the step function only logs and reads and writes the tables"
    );

    for (pattern, template) in [(Pattern::Sqs, &sqs), (Pattern::StepFunctions, &steps)] {
        for role in ["ApiFunctionRole", "WorkerFunctionRole", "StepFunctionRole"] {
            if !template.resources.contains_key(role) {
                continue;
            }
            for statement in statements_for(template, role, "dynamodb") {
                for target in &statement.resource {
                    assert!(
                        target.is_get_att_of("SagaTable", "Arn")
                            || target.is_get_att_of("IdempotencyTable", "Arn")
                            || *target == Expr::sub("${SagaTable.Arn}/index/by-status"),
                        "{pattern} {role}: {target:?}"
                    );
                }
            }
        }
    }
}

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
    let section = synthesized
        .runbook_markdown
        .split("\n## orchestrator resume failed\n")
        .nth(1)
        .expect("runbook has the resume section");
    let section = section.split("\n## ").next().unwrap();
    for expected in [
        "requestPayload.resume.transaction_id",
        "aws sqs receive-message --region ap-northeast-1 --queue-url",
        "cargo xtask saga show --pattern orchestrator --env staging <transaction_id>",
        "aws lambda invoke --region ap-northeast-1 --function-name sagaform-orchestrator-staging-api --invocation-type Event --cli-binary-format raw-in-base64-out --payload '{\"resume\":{\"transaction_id\":\"<transaction_id>\"}}'",
        "aws sqs purge-queue --region ap-northeast-1 --queue-url",
    ] {
        assert!(
            section.contains(expected),
            "missing {expected:?} in {section}"
        );
    }
}

#[test]
fn vpc_functions_reach_only_the_proxy_https_and_the_saas_ports() {
    let mut env = example_env("staging");
    env.saas.get_mut("payments").unwrap().url = "https://payments.example.com:8443/v1".to_owned();
    let orchestrator = template(Pattern::Orchestrator, &env);
    let Properties::SecurityGroup(group) =
        &orchestrator.resources["FunctionSecurityGroup"].properties
    else {
        panic!()
    };
    let rules: Vec<(&str, Option<i32>, Option<&str>, bool)> = group
        .security_group_egress
        .iter()
        .map(|e| {
            (
                e.ip_protocol.as_str(),
                e.from_port,
                e.cidr_ip.as_deref(),
                e.destination_security_group_id
                    .as_ref()
                    .is_some_and(|g| g.is_ref_to("ProxySecurityGroup")),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("tcp", Some(5432), None, true),
            ("tcp", Some(443), Some("0.0.0.0/0"), false),
            ("tcp", Some(8443), Some("0.0.0.0/0"), false),
        ]
    );
    // Nothing is open to the world inbound: ingress only ever names a security group.
    for (pattern, env) in all() {
        for resource in template(pattern, &env).resources.values() {
            if let Properties::SecurityGroupIngress(ingress) = &resource.properties {
                assert!(matches!(ingress.source_security_group_id, Expr::Ref(_)));
            }
        }
    }
    let Properties::DbProxy(proxy) = &orchestrator.resources["DatabaseProxy"].properties else {
        panic!()
    };
    assert!(proxy.require_tls);
    let secret_readers = ["ApiFunctionRole", "DatabaseProxyRole"].map(|role| {
        statements_for(&orchestrator, role, "secretsmanager")
            .iter()
            .flat_map(|s| s.resource.clone())
            .collect::<Vec<_>>()
    });
    for resources in secret_readers {
        assert_eq!(
            resources,
            [Expr::get_att(
                "DatabaseCluster",
                "MasterUserSecret.SecretArn"
            )]
        );
    }
}

/// Commands a runbook may give: sagaform's own (built or planned) and the AWS CLI.
const RUNBOOK_COMMAND_PREFIXES: [&str; 10] = [
    "cargo xtask saga show ",
    "cargo xtask dlq list ",
    "cargo xtask dlq redrive ",
    "cargo xtask dlq purge ",
    "cargo xtask local logs ",
    "cargo xtask synth",
    "cargo xtask deploy ",
    "aws ",
    "PGPASSWORD=\"$(aws secretsmanager get-secret-value ",
    "psql postgres://postgres@127.0.0.1:5432/",
];

#[test]
fn runbook_commands_are_sagaform_or_aws_cli_commands_aimed_at_the_env() {
    for (pattern, env) in all() {
        let synthesized = synthesize(pattern, &env).unwrap();
        let mut in_block = false;
        let mut commands = 0;
        for line in synthesized.runbook_markdown.lines() {
            if line.starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if !in_block || line.starts_with("# ") {
                continue;
            }
            commands += 1;
            let at = format!("{pattern} {}: {line}", env.name);
            assert!(
                RUNBOOK_COMMAND_PREFIXES.iter().any(|p| line.starts_with(p)),
                "{at}"
            );
            if line.starts_with("cargo xtask") && !line.starts_with("cargo xtask local") {
                assert!(
                    line == "cargo xtask synth"
                        || line.contains(&format!("--pattern {pattern} --env {}", env.name)),
                    "{at}"
                );
            }
            // Every aws call of the line goes to the env's region, and in local to the emulator.
            for call in line.split("aws ").skip(1) {
                let call = call.split(')').next().unwrap();
                assert!(call.contains(&format!("--region {}", env.region())), "{at}");
                assert_eq!(
                    call.contains("--endpoint-url http://127.0.0.1:4566"),
                    env.is_local(),
                    "{at}"
                );
            }
            if env.is_local() {
                assert!(!line.contains("aws logs"), "{at}: local logs stay local");
            }
        }
        assert!(commands > 0);
    }
}

#[test]
fn table_throttle_alarms_count_the_status_index_too() {
    let template = template(Pattern::Sqs, &example_env("staging"));
    let watched = |alarm: &str| -> Vec<(String, Vec<String>)> {
        let Properties::Alarm(alarm) = &template.resources[alarm].properties else {
            panic!()
        };
        alarm
            .metrics()
            .into_iter()
            .map(|(_, name, dimensions)| {
                let values = dimensions
                    .iter()
                    .map(|d| match &d.value {
                        Expr::Ref(id) => format!("{}={id}", d.name),
                        Expr::Str(text) => format!("{}={text}", d.name),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                (name.to_owned(), values)
            })
            .collect()
    };
    let table = |name: &str| vec![format!("TableName={name}")];
    let index = vec![
        "TableName=SagaTable".to_owned(),
        "GlobalSecondaryIndexName=by-status".to_owned(),
    ];
    assert_eq!(
        watched("SagaTableThrottlesAlarm"),
        [
            ("ReadThrottleEvents".to_owned(), table("SagaTable")),
            ("WriteThrottleEvents".to_owned(), table("SagaTable")),
            ("ReadThrottleEvents".to_owned(), index.clone()),
            ("WriteThrottleEvents".to_owned(), index),
        ]
    );
    assert_eq!(
        watched("IdempotencyTableThrottlesAlarm"),
        [
            ("ReadThrottleEvents".to_owned(), table("IdempotencyTable")),
            ("WriteThrottleEvents".to_owned(), table("IdempotencyTable")),
        ]
    );
}
