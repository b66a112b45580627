//! The policy checks: the generated stacks pass them, and each check reports a template built to
//! break it.

use sagaform_stacks::cfn::iam::Action;
use sagaform_stacks::cfn::{DeletionPolicy, Expr, Properties, Template};
use sagaform_stacks::config::EnvConfig;
use sagaform_stacks::fixtures::example_env;
use sagaform_stacks::patterns::build;
use sagaform_stacks::{Pattern, PolicyViolation, check_policies};

fn built(pattern: Pattern, env: &EnvConfig) -> Template {
    build(pattern, env).unwrap().0
}

fn properties<'t>(template: &'t mut Template, id: &str) -> &'t mut Properties {
    &mut template
        .resources
        .get_mut(id)
        .unwrap_or_else(|| panic!("no resource {id}"))
        .properties
}

#[test]
fn every_generated_stack_passes_every_policy() {
    for env in ["local", "staging", "prod"] {
        let env = example_env(env);
        for pattern in Pattern::ALL {
            assert_eq!(
                check_policies(&built(pattern, &env), &env),
                [],
                "{pattern} {}",
                env.name
            );
        }
    }
}

#[test]
fn queue_without_dlq_is_reported() {
    let env = example_env("staging");
    let mut template = built(Pattern::Sqs, &env);
    let Properties::Queue(queue) = properties(&mut template, "WorkQueue") else {
        panic!()
    };
    queue.redrive_policy = None;
    let violations = check_policies(&template, &env);
    assert!(
        violations.contains(&PolicyViolation::QueueWithoutDlq {
            queue: "WorkQueue".into()
        }),
        "{violations:?}"
    );
}

#[test]
fn a_receive_count_above_the_sqs_limit_is_reported() {
    let env = example_env("staging");
    let mut template = built(Pattern::Sqs, &env);
    let Properties::Queue(queue) = properties(&mut template, "WorkQueue") else {
        panic!()
    };
    queue.redrive_policy.as_mut().unwrap().max_receive_count = 1001;
    let violations = check_policies(&template, &env);
    assert!(
        violations.contains(&PolicyViolation::MaxReceiveCountTooHigh {
            queue: "WorkQueue".into(),
            max_receive_count: 1001
        }),
        "{violations:?}"
    );
}

#[test]
fn dlq_without_alarm_is_reported() {
    let env = example_env("staging");
    let mut template = built(Pattern::Sqs, &env);
    template
        .resources
        .shift_remove("DeadLetterQueueNotEmptyAlarm");
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::DlqWithoutAlarm {
            queue: "DeadLetterQueue".into()
        }]
    );
}

#[test]
fn failed_async_invocation_queue_is_a_dlq_and_needs_its_alarm() {
    let env = example_env("staging");
    let mut template = built(Pattern::Orchestrator, &env);
    // It needs no DLQ of its own: it is the end of the orchestrator's asynchronous path.
    assert_eq!(check_policies(&template, &env), []);
    template
        .resources
        .shift_remove("ResumeDeadLetterQueueNotEmptyAlarm");
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::DlqWithoutAlarm {
            queue: "ResumeDeadLetterQueue".into()
        }]
    );

    // Without the invocation config pointing at it, it is an ordinary queue lacking a DLQ.
    let mut template = built(Pattern::Orchestrator, &env);
    template
        .resources
        .shift_remove("ApiFunctionEventInvokeConfig");
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::QueueWithoutDlq {
            queue: "ResumeDeadLetterQueue".into()
        }]
    );
}

#[test]
fn function_without_errors_alarm_is_reported() {
    let env = example_env("staging");
    let mut template = built(Pattern::StepFunctions, &env);
    template.resources.shift_remove("StepFunctionErrorsAlarm");
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::FunctionWithoutErrorsAlarm {
            function: "StepFunction".into()
        }]
    );
}

#[test]
fn function_logging_nowhere_or_forever_is_reported() {
    let env = example_env("staging");
    let mut template = built(Pattern::Orchestrator, &env);
    let Properties::LogGroup(log_group) = properties(&mut template, "ApiFunctionLogGroup") else {
        panic!()
    };
    log_group.retention_in_days = None;
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::LogGroupWithoutRetention {
            log_group: "ApiFunctionLogGroup".into()
        }]
    );

    let mut template = built(Pattern::Orchestrator, &env);
    let Properties::Function(function) = properties(&mut template, "ApiFunction") else {
        panic!()
    };
    function.logging_config.log_group =
        sagaform_stacks::cfn::Expr::str("/aws/lambda/somewhere-else");
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::FunctionWithoutLogGroup {
            function: "ApiFunction".into()
        }]
    );
}

#[test]
fn wildcard_iam_actions_are_refused() {
    let env = example_env("staging");
    for wildcard in [
        Action::new("*", "*"),
        Action::new("sqs", "*"),
        Action::new("dynamodb", "Get*"),
    ] {
        let mut template = built(Pattern::Sqs, &env);
        let Properties::Role(role) = properties(&mut template, "WorkerFunctionRole") else {
            panic!()
        };
        role.policies[0].policy_document.statement[0]
            .action
            .push(wildcard.clone());
        assert_eq!(
            check_policies(&template, &env),
            [PolicyViolation::WildcardAction {
                resource: "WorkerFunctionRole".into(),
                action: wildcard.to_string()
            }]
        );
    }
}

#[test]
fn unencrypted_data_stores_are_reported() {
    let env = example_env("staging");
    let mut template = built(Pattern::Sqs, &env);
    let Properties::Table(table) = properties(&mut template, "SagaTable") else {
        panic!()
    };
    table.sse_specification.sse_enabled = false;
    let Properties::Queue(queue) = properties(&mut template, "DeadLetterQueue") else {
        panic!()
    };
    queue.sqs_managed_sse_enabled = None;
    assert_eq!(
        check_policies(&template, &env),
        [
            PolicyViolation::Unencrypted {
                resource: "SagaTable".into()
            },
            PolicyViolation::Unencrypted {
                resource: "DeadLetterQueue".into()
            }
        ]
    );

    let mut template = built(Pattern::Sqs, &env);
    let Properties::Topic(topic) = properties(&mut template, "AlarmTopic") else {
        panic!()
    };
    topic.kms_master_key_id = None;
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::Unencrypted {
            resource: "AlarmTopic".into()
        }]
    );

    let mut template = built(Pattern::Orchestrator, &env);
    let Properties::DbCluster(cluster) = properties(&mut template, "DatabaseCluster") else {
        panic!()
    };
    cluster.storage_encrypted = false;
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::Unencrypted {
            resource: "DatabaseCluster".into()
        }]
    );
}

#[test]
fn data_resources_are_retained_outside_local() {
    let staging = example_env("staging");
    let mut template = built(Pattern::Sqs, &staging);
    template
        .resources
        .get_mut("SagaTable")
        .unwrap()
        .deletion_policy = Some(DeletionPolicy::Delete);
    template
        .resources
        .get_mut("IdempotencyTable")
        .unwrap()
        .update_replace_policy = None;
    assert_eq!(
        check_policies(&template, &staging),
        [
            PolicyViolation::DataNotRetained {
                resource: "SagaTable".into(),
                attribute: "DeletionPolicy"
            },
            PolicyViolation::DataNotRetained {
                resource: "IdempotencyTable".into(),
                attribute: "UpdateReplacePolicy"
            },
        ]
    );

    // A database cluster keeps a final snapshot instead: retained, it would hold on to its
    // subnet group, security group and subnets, and the stack's deletion would fail.
    let mut template = built(Pattern::Orchestrator, &staging);
    assert_eq!(check_policies(&template, &staging), []);
    template
        .resources
        .get_mut("DatabaseCluster")
        .unwrap()
        .deletion_policy = Some(DeletionPolicy::Retain);
    template
        .resources
        .get_mut("DatabaseCluster")
        .unwrap()
        .update_replace_policy = Some(DeletionPolicy::Delete);
    assert_eq!(
        check_policies(&template, &staging),
        [
            PolicyViolation::ClusterNotSnapshotted {
                resource: "DatabaseCluster".into(),
                attribute: "DeletionPolicy"
            },
            PolicyViolation::ClusterNotSnapshotted {
                resource: "DatabaseCluster".into(),
                attribute: "UpdateReplacePolicy"
            },
        ]
    );

    // A dead-letter queue holds sagas waiting for a human.
    let mut template = built(Pattern::Sqs, &staging);
    template
        .resources
        .get_mut("DeadLetterQueue")
        .unwrap()
        .deletion_policy = Some(DeletionPolicy::Delete);
    assert_eq!(
        check_policies(&template, &staging),
        [PolicyViolation::DataNotRetained {
            resource: "DeadLetterQueue".into(),
            attribute: "DeletionPolicy"
        }]
    );

    // `local` is thrown away: Delete is what it should use.
    let local = example_env("local");
    let template = built(Pattern::Sqs, &local);
    assert_eq!(
        template.resources["SagaTable"].deletion_policy,
        Some(DeletionPolicy::Delete)
    );
    assert_eq!(check_policies(&template, &local), []);
}

#[test]
fn visibility_timeout_must_cover_six_worker_timeouts_and_the_batching_window() {
    let env = example_env("staging");
    let mut template = built(Pattern::Sqs, &env);
    let Properties::Queue(queue) = properties(&mut template, "WorkQueue") else {
        panic!()
    };
    // Worker timeout 150 s, batching window 5 s: 905 s needed.
    queue.visibility_timeout = 904;
    assert_eq!(
        check_policies(&template, &env),
        [PolicyViolation::VisibilityTimeoutTooShort {
            queue: "WorkQueue".into(),
            function: "WorkerFunction".into(),
            visibility_seconds: 904,
            required_seconds: 905,
        }]
    );
    let Properties::Queue(queue) = properties(&mut template, "WorkQueue") else {
        panic!()
    };
    queue.visibility_timeout = 905;
    assert_eq!(check_policies(&template, &env), []);
}

#[test]
fn alarms_must_notify_and_name_a_runbook_section() {
    let env = example_env("staging");
    let mut template = built(Pattern::Sqs, &env);
    let Properties::Alarm(alarm) = properties(&mut template, "WorkQueueOldestMessageAgeAlarm")
    else {
        panic!()
    };
    alarm.ok_actions.clear();
    alarm.alarm_description = "The queue is slow.".to_owned();
    assert_eq!(
        check_policies(&template, &env),
        [
            PolicyViolation::AlarmWithoutActions {
                alarm: "WorkQueueOldestMessageAgeAlarm".into()
            },
            PolicyViolation::AlarmWithoutRunbook {
                alarm: "WorkQueueOldestMessageAgeAlarm".into()
            },
        ]
    );
}

#[test]
fn alarms_must_notify_the_stacks_own_topic() {
    let env = example_env("staging");
    let mut template = built(Pattern::Sqs, &env);
    let Properties::Alarm(alarm) = properties(&mut template, "DeadLetterQueueNotEmptyAlarm") else {
        panic!()
    };
    alarm.alarm_actions = vec![Expr::str(
        "arn:aws:sns:ap-northeast-1:111122223333:someone-elses-topic",
    )];
    let Properties::Alarm(alarm) = properties(&mut template, "WorkerFunctionErrorsAlarm") else {
        panic!()
    };
    // A reference, but to something that is not a topic.
    alarm.ok_actions = vec![Expr::reference("WorkQueue")];
    assert_eq!(
        check_policies(&template, &env),
        [
            PolicyViolation::AlarmActionNotStackTopic {
                alarm: "DeadLetterQueueNotEmptyAlarm".into()
            },
            PolicyViolation::AlarmActionNotStackTopic {
                alarm: "WorkerFunctionErrorsAlarm".into()
            },
        ]
    );
}

#[test]
fn violations_read_as_sentences_naming_the_resource() {
    let violation = PolicyViolation::WildcardAction {
        resource: "WorkerFunctionRole".into(),
        action: "sqs:*".into(),
    };
    assert_eq!(
        violation.to_string(),
        "`WorkerFunctionRole` grants the wildcard action `sqs:*`"
    );
}
