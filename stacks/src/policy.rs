//! Policy checks over the typed template: the rules every sagaform stack must follow whatever
//! the pattern and env, checked on the model itself (not on YAML text) so a builder change that
//! breaks one fails `synthesize` and the tests.
//!
//! The rules: every queue has a DLQ and every DLQ an alarm; every function logs to a log group
//! with retention and has an errors alarm; no IAM action is a wildcard; every data store is
//! encrypted; outside `local`, data survives stack deletion and replacement; a queue feeding a
//! function stays invisible for at least six function timeouts plus the batching window; every
//! alarm notifies the stack's SNS topic and names its runbook section. A queue receiving failed
//! asynchronous Lambda invocations counts as a DLQ: it needs the alarm, not a DLQ of its own.

use std::fmt;

use crate::cfn::iam::PolicyDocument;
use crate::cfn::{DeletionPolicy, Expr, Properties, Resource, Template};
use crate::config::EnvConfig;

/// The largest `maxReceiveCount` SQS accepts in a redrive policy.
const SQS_MAX_RECEIVE_COUNT: u32 = 1000;

/// One broken rule, naming the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    /// A queue that is no DLQ has no redrive policy to a queue of the stack.
    QueueWithoutDlq { queue: String },
    /// A DLQ nobody is alerted about.
    DlqWithoutAlarm { queue: String },
    /// A redrive policy's `maxReceiveCount` above what SQS accepts (1000).
    MaxReceiveCountTooHigh {
        queue: String,
        max_receive_count: u32,
    },
    /// A function without an explicit log group of the stack.
    FunctionWithoutLogGroup { function: String },
    /// A log group that keeps events forever.
    LogGroupWithoutRetention { log_group: String },
    /// A function without an `Errors` alarm.
    FunctionWithoutErrorsAlarm { function: String },
    /// An IAM action that is a pattern (`*`, `sqs:*`, `s3:Get*`).
    WildcardAction { resource: String, action: String },
    /// A data store without encryption at rest.
    Unencrypted { resource: String },
    /// A data resource deleted with the stack or on replacement outside `local`.
    DataNotRetained {
        resource: String,
        attribute: &'static str,
    },
    /// A database cluster without a final snapshot on deletion or replacement outside `local`:
    /// `Retain` would keep the cluster and fail deleting its subnets and security groups.
    ClusterNotSnapshotted {
        resource: String,
        attribute: &'static str,
    },
    /// A queue whose messages reappear while the function may still be processing them.
    VisibilityTimeoutTooShort {
        queue: String,
        function: String,
        visibility_seconds: u64,
        required_seconds: u64,
    },
    /// An alarm with no `AlarmActions` or `OKActions`.
    AlarmWithoutActions { alarm: String },
    /// An alarm action that is not the stack's own SNS topic.
    AlarmActionNotStackTopic { alarm: String },
    /// An alarm whose description names no runbook section.
    AlarmWithoutRunbook { alarm: String },
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyViolation::MaxReceiveCountTooHigh {
                queue,
                max_receive_count,
            } => write!(
                f,
                "queue `{queue}` would need maxReceiveCount {max_receive_count} (the saga's redelivery budget plus `[queue] max_receive_count`), above the SQS limit of {SQS_MAX_RECEIVE_COUNT}: lower `max_receive_count` or the saga's retries"
            ),
            PolicyViolation::QueueWithoutDlq { queue } => write!(
                f,
                "queue `{queue}` has no RedrivePolicy to a dead-letter queue"
            ),
            PolicyViolation::DlqWithoutAlarm { queue } => {
                write!(
                    f,
                    "dead-letter queue `{queue}` has no alarm on ApproximateNumberOfMessagesVisible"
                )
            }
            PolicyViolation::FunctionWithoutLogGroup { function } => {
                write!(
                    f,
                    "function `{function}` does not log to a log group of the stack"
                )
            }
            PolicyViolation::LogGroupWithoutRetention { log_group } => {
                write!(f, "log group `{log_group}` has no RetentionInDays")
            }
            PolicyViolation::FunctionWithoutErrorsAlarm { function } => {
                write!(f, "function `{function}` has no Errors alarm")
            }
            PolicyViolation::WildcardAction { resource, action } => {
                write!(f, "`{resource}` grants the wildcard action `{action}`")
            }
            PolicyViolation::Unencrypted { resource } => {
                write!(f, "data store `{resource}` is not encrypted at rest")
            }
            PolicyViolation::DataNotRetained {
                resource,
                attribute,
            } => {
                write!(
                    f,
                    "data resource `{resource}` needs {attribute}: Retain outside local"
                )
            }
            PolicyViolation::ClusterNotSnapshotted {
                resource,
                attribute,
            } => write!(
                f,
                "database cluster `{resource}` needs {attribute}: Snapshot outside local (Retain keeps the cluster, so the stack cannot delete its subnet group, security group and subnets)"
            ),
            PolicyViolation::VisibilityTimeoutTooShort {
                queue,
                function,
                visibility_seconds,
                required_seconds,
            } => write!(
                f,
                "queue `{queue}` has a visibility timeout of {visibility_seconds} s, below 6 x the timeout of `{function}` plus the batching window ({required_seconds} s)"
            ),
            PolicyViolation::AlarmWithoutActions { alarm } => {
                write!(f, "alarm `{alarm}` has no AlarmActions or no OKActions")
            }
            PolicyViolation::AlarmActionNotStackTopic { alarm } => {
                write!(
                    f,
                    "alarm `{alarm}` notifies something other than the stack's SNS topic"
                )
            }
            PolicyViolation::AlarmWithoutRunbook { alarm } => {
                write!(
                    f,
                    "alarm `{alarm}` has no `Runbook: <file>#<section>` in its description"
                )
            }
        }
    }
}

/// Every violation in `template`, in resource order (empty when the template is fine).
pub fn check_policies(template: &Template, env: &EnvConfig) -> Vec<PolicyViolation> {
    let mut violations = Vec::new();
    check_queues(template, &mut violations);
    check_functions(template, &mut violations);
    check_actions(template, &mut violations);
    check_encryption(template, &mut violations);
    if env.retain_data() {
        check_retention(template, &mut violations);
    }
    check_visibility_timeouts(template, &mut violations);
    check_alarms(template, &mut violations);
    violations
}

/// The resource a `!Ref` / `!GetAtt` points at, if it is in the template.
fn target<'t>(template: &'t Template, expr: &Expr) -> Option<(&'t str, &'t Resource)> {
    let (id, _) = expr.target()?;
    template
        .resources
        .get_key_value(id)
        .map(|(k, v)| (k.as_str(), v))
}

fn has_alarm_on(
    template: &Template,
    namespace: &str,
    metric: &str,
    dimension: &str,
    points_at: &str,
) -> bool {
    template
        .resources_of(|p| {
            if let Properties::Alarm(a) = p {
                Some(a)
            } else {
                None
            }
        })
        .any(|(_, _, alarm)| {
            alarm.metrics().iter().any(|(ns, name, dimensions)| {
                *ns == namespace
                    && *name == metric
                    && dimensions.iter().any(|d| {
                        d.name == dimension
                            && d.value.target().is_some_and(|(id, _)| id == points_at)
                    })
            })
        })
}

/// The queues of `template` that are queues of its resources: (logical id, queue).
fn queues(template: &Template) -> Vec<(&str, &crate::cfn::sqs::Queue)> {
    template
        .resources_of(|p| {
            if let Properties::Queue(q) = p {
                Some(q)
            } else {
                None
            }
        })
        .map(|(id, _, queue)| (id, queue))
        .collect()
}

/// Dead-letter queues: the targets of redrive policies, and the queues Lambda sends failed
/// asynchronous invocations to.
fn dead_letter_queues(template: &Template) -> Vec<&str> {
    let queues = queues(template);
    let redrive_targets = queues
        .iter()
        .filter_map(|(_, q)| q.redrive_policy.as_ref())
        .map(|policy| &policy.dead_letter_target_arn);
    let failure_destinations = template
        .resources_of(|p| {
            if let Properties::EventInvokeConfig(c) = p {
                Some(c)
            } else {
                None
            }
        })
        .map(|(_, _, config)| &config.destination_config.on_failure.destination);
    redrive_targets
        .chain(failure_destinations)
        .filter_map(|arn| target(template, arn))
        .filter(|(_, r)| matches!(r.properties, Properties::Queue(_)))
        .map(|(id, _)| id)
        .collect()
}

fn check_queues(template: &Template, violations: &mut Vec<PolicyViolation>) {
    let dead_letter_queues = dead_letter_queues(template);
    for (id, queue) in queues(template) {
        if let Some(policy) = &queue.redrive_policy
            && policy.max_receive_count > SQS_MAX_RECEIVE_COUNT
        {
            violations.push(PolicyViolation::MaxReceiveCountTooHigh {
                queue: id.to_owned(),
                max_receive_count: policy.max_receive_count,
            });
        }
        if dead_letter_queues.contains(&id) {
            if !has_alarm_on(
                template,
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "QueueName",
                id,
            ) {
                violations.push(PolicyViolation::DlqWithoutAlarm {
                    queue: id.to_owned(),
                });
            }
        } else {
            let has_dlq = queue
                .redrive_policy
                .as_ref()
                .and_then(|policy| target(template, &policy.dead_letter_target_arn))
                .is_some_and(|(_, r)| matches!(r.properties, Properties::Queue(_)));
            if !has_dlq {
                violations.push(PolicyViolation::QueueWithoutDlq {
                    queue: id.to_owned(),
                });
            }
        }
    }
}

fn check_functions(template: &Template, violations: &mut Vec<PolicyViolation>) {
    for (id, _, function) in template.resources_of(|p| {
        if let Properties::Function(f) = p {
            Some(f)
        } else {
            None
        }
    }) {
        match target(template, &function.logging_config.log_group) {
            Some((
                log_group_id,
                Resource {
                    properties: Properties::LogGroup(log_group),
                    ..
                },
            )) => {
                if log_group.retention_in_days.is_none() {
                    violations.push(PolicyViolation::LogGroupWithoutRetention {
                        log_group: log_group_id.to_owned(),
                    });
                }
            }
            _ => violations.push(PolicyViolation::FunctionWithoutLogGroup {
                function: id.to_owned(),
            }),
        }
        if !has_alarm_on(template, "AWS/Lambda", "Errors", "FunctionName", id) {
            violations.push(PolicyViolation::FunctionWithoutErrorsAlarm {
                function: id.to_owned(),
            });
        }
    }
    for (id, _, log_group) in template.resources_of(|p| {
        if let Properties::LogGroup(l) = p {
            Some(l)
        } else {
            None
        }
    }) {
        let already_reported = violations
            .iter()
            .any(|v| matches!(v, PolicyViolation::LogGroupWithoutRetention { log_group } if log_group == id));
        if log_group.retention_in_days.is_none() && !already_reported {
            violations.push(PolicyViolation::LogGroupWithoutRetention {
                log_group: id.to_owned(),
            });
        }
    }
}

fn check_actions(template: &Template, violations: &mut Vec<PolicyViolation>) {
    let check_document =
        |violations: &mut Vec<PolicyViolation>, resource: &str, document: &PolicyDocument| {
            for statement in &document.statement {
                for action in statement.action.iter().filter(|a| a.is_wildcard()) {
                    violations.push(PolicyViolation::WildcardAction {
                        resource: resource.to_owned(),
                        action: action.to_string(),
                    });
                }
            }
        };
    for (id, resource) in &template.resources {
        match &resource.properties {
            Properties::Role(role) => {
                check_document(violations, id, &role.assume_role_policy_document);
                for policy in &role.policies {
                    check_document(violations, id, &policy.policy_document);
                }
            }
            Properties::Permission(permission) if permission.action.is_wildcard() => {
                violations.push(PolicyViolation::WildcardAction {
                    resource: id.clone(),
                    action: permission.action.to_string(),
                });
            }
            _ => {}
        }
    }
}

fn check_encryption(template: &Template, violations: &mut Vec<PolicyViolation>) {
    for (id, resource) in &template.resources {
        let encrypted = match &resource.properties {
            Properties::Table(table) => table.sse_specification.sse_enabled,
            Properties::Queue(queue) => queue.is_encrypted(),
            Properties::DbCluster(cluster) => cluster.storage_encrypted,
            Properties::Topic(topic) => topic.kms_master_key_id.is_some(),
            _ => true,
        };
        if !encrypted {
            violations.push(PolicyViolation::Unencrypted {
                resource: id.clone(),
            });
        }
    }
}

/// Data stores, and the dead-letter queues whose messages are sagas waiting for a human, must
/// outlive their stack and any replacement: retained, or for a database cluster, snapshotted.
fn check_retention(template: &Template, violations: &mut Vec<PolicyViolation>) {
    let dead_letter_queues = dead_letter_queues(template);
    for (id, resource) in &template.resources {
        if let Properties::DbCluster(_) = resource.properties {
            for (attribute, policy) in [
                ("DeletionPolicy", resource.deletion_policy),
                ("UpdateReplacePolicy", resource.update_replace_policy),
            ] {
                if policy != Some(DeletionPolicy::Snapshot) {
                    violations.push(PolicyViolation::ClusterNotSnapshotted {
                        resource: id.clone(),
                        attribute,
                    });
                }
            }
            continue;
        }
        let holds_data = match resource.properties {
            Properties::Table(_) => true,
            Properties::Queue(_) => dead_letter_queues.contains(&id.as_str()),
            _ => false,
        };
        if !holds_data {
            continue;
        }
        if resource.deletion_policy != Some(DeletionPolicy::Retain) {
            violations.push(PolicyViolation::DataNotRetained {
                resource: id.clone(),
                attribute: "DeletionPolicy",
            });
        }
        if resource.update_replace_policy != Some(DeletionPolicy::Retain) {
            violations.push(PolicyViolation::DataNotRetained {
                resource: id.clone(),
                attribute: "UpdateReplacePolicy",
            });
        }
    }
}

fn check_visibility_timeouts(template: &Template, violations: &mut Vec<PolicyViolation>) {
    for (_, _, mapping) in template.resources_of(|p| {
        if let Properties::EventSourceMapping(m) = p {
            Some(m)
        } else {
            None
        }
    }) {
        let Some((
            queue_id,
            Resource {
                properties: Properties::Queue(queue),
                ..
            },
        )) = target(template, &mapping.event_source_arn)
        else {
            continue;
        };
        let Some((
            function_id,
            Resource {
                properties: Properties::Function(function),
                ..
            },
        )) = target(template, &mapping.function_name)
        else {
            continue;
        };
        let required = 6 * u64::from(function.timeout)
            + u64::from(mapping.maximum_batching_window_in_seconds.unwrap_or(0));
        let visibility = u64::from(queue.visibility_timeout);
        if visibility < required {
            violations.push(PolicyViolation::VisibilityTimeoutTooShort {
                queue: queue_id.to_owned(),
                function: function_id.to_owned(),
                visibility_seconds: visibility,
                required_seconds: required,
            });
        }
    }
}

fn check_alarms(template: &Template, violations: &mut Vec<PolicyViolation>) {
    for (id, _, alarm) in template.resources_of(|p| {
        if let Properties::Alarm(a) = p {
            Some(a)
        } else {
            None
        }
    }) {
        if alarm.alarm_actions.is_empty() || alarm.ok_actions.is_empty() {
            violations.push(PolicyViolation::AlarmWithoutActions {
                alarm: id.to_owned(),
            });
        }
        let is_stack_topic = |action: &Expr| {
            matches!(action, Expr::Ref(_))
                && target(template, action)
                    .is_some_and(|(_, r)| matches!(r.properties, Properties::Topic(_)))
        };
        if !alarm
            .alarm_actions
            .iter()
            .chain(&alarm.ok_actions)
            .all(is_stack_topic)
        {
            violations.push(PolicyViolation::AlarmActionNotStackTopic {
                alarm: id.to_owned(),
            });
        }
        let names_section =
            alarm
                .alarm_description
                .split_once("Runbook: ")
                .is_some_and(|(_, rest)| {
                    rest.split_once('#')
                        .is_some_and(|(file, anchor)| file.ends_with(".md") && !anchor.is_empty())
                });
        if !names_section {
            violations.push(PolicyViolation::AlarmWithoutRunbook {
                alarm: id.to_owned(),
            });
        }
    }
}
