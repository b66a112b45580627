//! Alarms and runbooks: every failure path has an alarm that notifies the one topic and links its
//! runbook section, and runbook commands are sagaform's or the AWS CLI's, aimed at the env.

use crate::common;

use sagaform_contract::log;
use sagaform_stacks::cfn::{Expr, Properties};
use sagaform_stacks::fixtures::example_env;
use sagaform_stacks::runbook::heading_anchor;
use sagaform_stacks::{Pattern, synthesize};

use common::{all_examples, assert_runbook_section_contains, picked, template, types};

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

/// A saga parked IN_DOUBT, and one ending COMPENSATION_FAILED, is counted from the line the
/// engine writes (the contract's `outcome` field) by a metric filter on the log group of the
/// function that drives sagas (the orchestrator's asynchronous resume included), and the alarm
/// on that metric goes off at the first one, with a runbook section saying what to do.
#[test]
fn a_saga_left_for_a_human_raises_its_alarm_at_the_first_one_in_every_pattern() {
    let outcomes = [
        (
            log::SAGA_IN_DOUBT,
            "SagaInDoubtAlarm",
            "saga-in-doubt",
            "saga in doubt",
            "saga retry",
        ),
        (
            log::SAGA_COMPENSATION_FAILED,
            "SagaCompensationFailedAlarm",
            "saga-compensation-failed",
            "saga compensation failed",
            "saga show",
        ),
    ];
    for (pattern, env) in all_examples() {
        let synthesized = synthesize(pattern, &env).unwrap();
        let template = &synthesized.template;
        let at = format!("{pattern} {}", env.name);
        let saga_driver = match pattern {
            Pattern::Orchestrator => "ApiFunction",
            Pattern::Sqs => "WorkerFunction",
            Pattern::StepFunctions => "StepFunction",
        };
        let filters = picked(template, |p| match p {
            Properties::MetricFilter(filter) => Some(filter),
            _ => None,
        });
        assert_eq!(filters.len(), outcomes.len(), "{at}");
        for (outcome, alarm_id, anchor, heading, command) in outcomes {
            let filter = filters
                .iter()
                .find(|f| f.filter_pattern == log::outcome_filter_pattern(outcome))
                .unwrap_or_else(|| panic!("{at}: no filter counting {outcome}"));
            assert_eq!(
                filter.log_group_name,
                Expr::reference(format!("{saga_driver}LogGroup")),
                "{at}"
            );
            let counted = &filter.metric_transformations[0];
            let Properties::Alarm(alarm) = &template.resources[alarm_id].properties else {
                panic!("{at}: no {alarm_id}")
            };
            assert_eq!(
                alarm.namespace.as_deref(),
                Some(counted.metric_namespace.as_str()),
                "{at}"
            );
            assert_eq!(
                alarm.metric_name.as_deref(),
                Some(counted.metric_name.as_str()),
                "{at}"
            );
            assert_eq!(counted.metric_value, "1", "{at}");
            assert_eq!(alarm.threshold, 1.0, "{at}");
            assert_eq!(alarm.datapoints_to_alarm, Some(1), "{at}");
            assert!(
                alarm.alarm_description.ends_with(&format!("#{anchor}")),
                "{at}: {}",
                alarm.alarm_description
            );
            assert_runbook_section_contains(
                &synthesized.runbook_markdown,
                heading,
                &[&format!(
                    "cargo xtask {command} --pattern {pattern} --env {} <transaction_id>",
                    env.name
                )],
            );
        }
    }
}

/// Alarms on levels that matter only when they last: every evaluated period must breach.
const SUSTAINED_ALARMS: [&str; 3] = [
    "DatabaseCapacityAlarm",
    "DatabaseConnectionsAlarm",
    "WorkQueueOldestMessageAgeAlarm",
];

/// Every alarm counting events (errors, throttles, 5xx, failed executions, DLQ messages, sagas
/// left for a human) goes off on the first breaching period in every env, whatever the env's
/// evaluation periods; its description states the condition CloudWatch evaluates.
#[test]
fn every_event_count_alarm_goes_off_on_the_first_event_in_every_env() {
    for (pattern, env) in all_examples() {
        let template = template(pattern, &env);
        let period = env.alarms.period.as_secs();
        let periods = env.alarms.evaluation_periods;
        let alarms = picked(&template, |p| match p {
            Properties::Alarm(alarm) => Some(alarm),
            _ => None,
        });
        let ids: Vec<&String> = template
            .resources
            .iter()
            .filter(|(_, r)| matches!(r.properties, Properties::Alarm(_)))
            .map(|(id, _)| id)
            .collect();
        for (id, alarm) in ids.into_iter().zip(alarms) {
            let at = format!("{pattern} {} {id}", env.name);
            let sustained = SUSTAINED_ALARMS.contains(&id.as_str());
            let expected = if sustained { None } else { Some(1) };
            assert_eq!(alarm.datapoints_to_alarm, expected, "{at}");
            assert_eq!(alarm.evaluation_periods, periods, "{at}");
            let when = match (sustained, periods) {
                (_, 1) => format!("in a {period} s period."),
                (false, n) => format!("in any one of the last {n} periods of {period} s."),
                (true, n) => format!("in each of the last {n} periods of {period} s."),
            };
            assert!(
                alarm.alarm_description.contains(&when),
                "{at}: {}",
                alarm.alarm_description
            );
            assert!(
                alarm.alarm_description.len() <= 1024,
                "{at}: CloudWatch refuses descriptions over 1024 characters"
            );
        }
    }
}

/// A compensated Step Functions saga is not a failed execution: the failed-executions alarm
/// says which endings it counts, and none of them is the compensated one.
#[test]
fn the_failed_executions_alarm_does_not_count_compensated_sagas() {
    for env in ["staging", "prod"] {
        let template = template(Pattern::StepFunctions, &example_env(env));
        let Properties::Alarm(alarm) =
            &template.resources["StateMachineExecutionsFailedAlarm"].properties
        else {
            panic!("no StateMachineExecutionsFailedAlarm")
        };
        assert!(
            alarm
                .alarm_description
                .contains("A compensated saga is not a failed execution"),
            "{}",
            alarm.alarm_description
        );
        assert!(!alarm.alarm_description.contains("SagaCompensated"));
    }
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
    assert_runbook_section_contains(
        &synthesized.runbook_markdown,
        "DLQ not empty",
        &[
            "cargo xtask dlq list --pattern sqs --env staging",
            "cargo xtask dlq redrive --pattern sqs --env staging",
            "cargo xtask saga show --pattern sqs --env staging <transaction_id>",
            "aws logs filter-log-events --region ap-northeast-1 --log-group-name /aws/lambda/sagaform-sqs-staging-worker",
        ],
    );
}

#[test]
fn every_alarm_notifies_the_topic_and_links_an_existing_runbook_section() {
    for (pattern, env) in all_examples() {
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
    let endpoints = picked(&template, |properties| match properties {
        Properties::Subscription(s) => Some(s.endpoint.as_str()),
        _ => None,
    });
    assert_eq!(endpoints, ["oncall@example.com", "team@example.com"]);
}

/// The functions create a saga and complete its idempotency record in one TransactWriteItems;
/// DynamoDB reports that operation's system errors under its own dimension, on both tables.
#[test]
fn table_system_error_alarms_cover_every_operation_the_functions_run() {
    for (pattern, env) in [(Pattern::Sqs, "staging"), (Pattern::StepFunctions, "prod")] {
        let template = template(pattern, &example_env(env));
        for (alarm_id, operations) in [
            (
                "SagaTableSystemErrorsAlarm",
                [
                    "GetItem",
                    "PutItem",
                    "UpdateItem",
                    "Query",
                    "TransactWriteItems",
                ],
            ),
            (
                "IdempotencyTableSystemErrorsAlarm",
                [
                    "GetItem",
                    "PutItem",
                    "UpdateItem",
                    "DeleteItem",
                    "TransactWriteItems",
                ],
            ),
        ] {
            let Properties::Alarm(alarm) = &template.resources[alarm_id].properties else {
                panic!("{pattern}: no {alarm_id}")
            };
            let watched: Vec<String> = alarm
                .metrics
                .iter()
                .filter_map(|query| query.metric_stat.as_ref())
                .map(|stat| {
                    assert_eq!(stat.metric.metric_name, "SystemErrors");
                    let operation = stat
                        .metric
                        .dimensions
                        .iter()
                        .find(|d| d.name == "Operation")
                        .expect("an Operation dimension");
                    match &operation.value {
                        Expr::Str(name) => name.clone(),
                        other => panic!("{other:?}"),
                    }
                })
                .collect();
            assert_eq!(watched, operations, "{pattern} {alarm_id}");
        }
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
        "GlobalSecondaryIndexName=open-by-status".to_owned(),
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

/// Commands a runbook may give: sagaform's own (built or planned) and the AWS CLI.
const RUNBOOK_COMMAND_PREFIXES: [&str; 13] = [
    "cargo xtask saga show ",
    "cargo xtask saga retry ",
    "cargo xtask dlq list ",
    "cargo xtask dlq redrive ",
    "cargo xtask dlq purge ",
    "cargo xtask local logs ",
    "cargo xtask synth",
    "cargo xtask deploy ",
    "aws ",
    // The sharded index of open sagas: the table's name once, then one query per shard.
    "table=\"$(aws cloudformation describe-stacks ",
    "PGPASSWORD=\"$(aws secretsmanager get-secret-value ",
    "export PGPASSWORD=\"$(aws secretsmanager get-secret-value ",
    "psql postgres://postgres@127.0.0.1:5432/",
];

#[test]
fn runbook_commands_are_sagaform_or_aws_cli_commands_aimed_at_the_env() {
    for (pattern, env) in all_examples() {
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
