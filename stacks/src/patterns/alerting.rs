//! The stack's alarm topic with its email subscriptions, and the one way alarms are added: each
//! alarm notifies the topic on ALARM and on OK, names its runbook section in its description,
//! and adds that section to the runbook.

use crate::cfn::cloudwatch::{
    Alarm, ComparisonOperator, Dimension, MetricDataQuery, Statistic, TreatMissingData,
};
use crate::cfn::iam::{Action, Effect, PolicyDocument, Principal, Statement};
use crate::cfn::kms::Key;
use crate::cfn::sns::{Subscription, SubscriptionProtocol, Topic};
use crate::cfn::{CfnError, Expr};
use crate::runbook::RunbookSection;

use super::StackBuilder;

/// Logical id of the stack's alarm topic.
pub const ALARM_TOPIC: &str = "AlarmTopic";

/// Logical id of the key encrypting the alarm topic.
pub const ALARM_TOPIC_KEY: &str = "AlarmTopicKey";

/// Adds the alarm topic, encrypted with its own key, one email subscription per configured
/// address, and its output.
pub(super) fn add_alarm_topic(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    stack.add(ALARM_TOPIC_KEY, alarm_topic_key(stack))?;
    stack.add(
        ALARM_TOPIC,
        Topic {
            display_name: format!("sagaform {} {} alarms", stack.pattern, stack.env.name),
            kms_master_key_id: Some(Expr::reference(ALARM_TOPIC_KEY)),
            tags: stack.tags.list(),
        },
    )?;
    for (index, email) in stack.env.alarms.emails.clone().iter().enumerate() {
        stack.add(
            &format!("AlarmTopicEmailSubscription{}", index + 1),
            Subscription {
                topic_arn: Expr::reference(ALARM_TOPIC),
                protocol: SubscriptionProtocol::Email,
                endpoint: email.clone(),
            },
        )?;
    }
    stack.output(
        "AlarmTopicArn",
        "SNS topic every alarm of the stack notifies.",
        Expr::reference(ALARM_TOPIC),
    )
}

/// The key of the alarm topic. A customer managed key, because the AWS managed key of SNS
/// (`alias/aws/sns`) cannot let CloudWatch in: an alarm publishing to a topic encrypted with it
/// fails silently, and nobody is paged. The account administers the key through IAM, as with
/// the default key policy; CloudWatch may only make the data keys it publishes with. The key
/// encrypts nothing but this topic.
fn alarm_topic_key(stack: &StackBuilder<'_>) -> Key {
    let kms = |name| Action::new("kms", name);
    Key {
        description: format!(
            "Encrypts the {} {} alarm topic; CloudWatch alarms may publish to it.",
            stack.pattern, stack.env.name
        ),
        enable_key_rotation: true,
        pending_window_in_days: 7,
        key_policy: PolicyDocument::new(vec![
            Statement {
                sid: Some("AccountAdministersTheKey".to_owned()),
                effect: Effect::Allow,
                principal: Some(Principal::this_account()),
                action: vec![kms("*")],
                resource: vec![Expr::str("*")],
                condition: None,
            },
            Statement {
                sid: Some("CloudWatchAlarmsPublish".to_owned()),
                effect: Effect::Allow,
                principal: Some(Principal::service("cloudwatch.amazonaws.com")),
                action: vec![kms("Decrypt"), kms("GenerateDataKey*")],
                resource: vec![Expr::str("*")],
                condition: None,
            },
        ]),
        tags: stack.tags.list(),
    }
}

/// What an alarm watches.
pub(super) enum Watched {
    /// One metric.
    Metric {
        namespace: String,
        name: &'static str,
        dimensions: Vec<Dimension>,
        statistic: Statistic,
    },
    /// Several metrics summed by metric math (`SUM(METRICS())`).
    SumOf {
        namespace: String,
        metrics: Vec<(String, Vec<Dimension>)>,
        statistic: Statistic,
        label: String,
    },
}

/// An alarm and its runbook section.
pub(super) struct AlarmSpec {
    /// Logical id, e.g. `DeadLetterQueueNotEmptyAlarm`.
    pub logical_id: String,
    /// Runbook anchor, e.g. `dlq-not-empty`.
    pub anchor: String,
    /// Runbook heading.
    pub title: String,
    /// What it means, one or two sentences.
    pub meaning: String,
    /// The metric.
    pub watched: Watched,
    /// Threshold.
    pub threshold: f64,
    /// Comparison.
    pub comparison: ComparisonOperator,
    /// What to look at, as Markdown list items.
    pub look_at: Vec<String>,
    /// Recovery commands, one per line.
    pub commands: Vec<String>,
}

/// Adds the alarm on events of which one is already too many (errors, throttles, 5xx, failed
/// executions, sagas left for a human, messages on a DLQ), and its runbook section: it goes
/// off on the first breaching period among those it evaluates, which a quiet period after would
/// otherwise hide.
pub(super) fn add_alarm(stack: &mut StackBuilder<'_>, spec: AlarmSpec) -> Result<(), CfnError> {
    add_alarm_needing(stack, spec, Breaching::First)
}

/// Adds the alarm on a level that matters only when it lasts (capacity in use, connections,
/// the age of the oldest message), and its runbook section: every evaluated period must breach.
pub(super) fn add_sustained_alarm(
    stack: &mut StackBuilder<'_>,
    spec: AlarmSpec,
) -> Result<(), CfnError> {
    add_alarm_needing(stack, spec, Breaching::Every)
}

/// How many of an alarm's evaluated periods must breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaching {
    /// One (`DatapointsToAlarm: 1`).
    First,
    /// All of them (`DatapointsToAlarm` unset).
    Every,
}

fn add_alarm_needing(
    stack: &mut StackBuilder<'_>,
    spec: AlarmSpec,
    breaching: Breaching,
) -> Result<(), CfnError> {
    let period = u32::try_from(stack.env.alarms.period.as_secs()).unwrap_or(u32::MAX);
    let mut alarm = alarm_notifying_topic(stack, &spec, breaching, period);
    alarm.datapoints_to_alarm = match breaching {
        Breaching::First => Some(1),
        Breaching::Every => None,
    };
    spec.watched.watch_in(&mut alarm, period);
    stack.add(&spec.logical_id, alarm)?;
    stack.sections.push(RunbookSection {
        anchor: spec.anchor,
        title: spec.title,
        alarm_logical_id: spec.logical_id,
        meaning: spec.meaning,
        look_at: spec.look_at,
        commands: spec.commands,
    });
    Ok(())
}

/// The condition an alarm goes off on, in words, from the values the alarm is built with: what
/// the description says is what CloudWatch evaluates.
fn condition(
    spec: &AlarmSpec,
    breaching: Breaching,
    evaluation_periods: u32,
    period: u32,
) -> String {
    let (statistic, what) = spec.watched.described();
    let comparison = match spec.comparison {
        ComparisonOperator::GreaterThanOrEqualToThreshold => "at least",
        ComparisonOperator::GreaterThanThreshold => "more than",
        ComparisonOperator::LessThanThreshold => "less than",
        ComparisonOperator::LessThanOrEqualToThreshold => "at most",
    };
    let when = match (breaching, evaluation_periods) {
        (_, 1) => format!("in a {period} s period"),
        (Breaching::First, n) => format!("in any one of the last {n} periods of {period} s"),
        (Breaching::Every, n) => format!("in each of the last {n} periods of {period} s"),
    };
    format!(
        "Goes off when the {statistic} of {what} is {comparison} {} {when}.",
        spec.threshold
    )
}

/// The alarm of `spec` watching nothing yet: its description ends with the runbook link, and
/// it notifies the alarm topic on ALARM and on OK.
fn alarm_notifying_topic(
    stack: &StackBuilder<'_>,
    spec: &AlarmSpec,
    breaching: Breaching,
    period: u32,
) -> Alarm {
    let evaluation_periods = stack.env.alarms.evaluation_periods;
    let description = format!(
        "{} {} Runbook: {}",
        spec.meaning,
        condition(spec, breaching, evaluation_periods, period),
        stack.runbook_link(&spec.anchor)
    );
    let topic = vec![Expr::reference(ALARM_TOPIC)];
    Alarm {
        alarm_description: description,
        namespace: None,
        metric_name: None,
        dimensions: Vec::new(),
        statistic: None,
        period: None,
        metrics: Vec::new(),
        evaluation_periods,
        datapoints_to_alarm: None,
        threshold: spec.threshold,
        comparison_operator: spec.comparison,
        // No traffic is not a failure: an idle stack must stay OK.
        treat_missing_data: TreatMissingData::NotBreaching,
        alarm_actions: topic.clone(),
        ok_actions: topic,
        tags: stack.tags.list(),
    }
}

impl Watched {
    /// The statistic and the metric (or the sum's label), for the alarm's description.
    fn described(&self) -> (&'static str, String) {
        let statistic = |s: &Statistic| match s {
            Statistic::Sum => "sum",
            Statistic::Maximum => "maximum",
            Statistic::Average => "average",
        };
        match self {
            Watched::Metric {
                namespace,
                name,
                statistic: s,
                ..
            } => (statistic(s), format!("{namespace} {name}")),
            Watched::SumOf {
                label,
                statistic: s,
                ..
            } => (statistic(s), label.clone()),
        }
    }

    /// Sets what `alarm` watches over `period` seconds: one metric's fields, or metric queries
    /// summing several.
    fn watch_in(self, alarm: &mut Alarm, period: u32) {
        match self {
            Watched::Metric {
                namespace,
                name,
                dimensions,
                statistic,
            } => {
                alarm.namespace = Some(namespace);
                alarm.metric_name = Some(name.to_owned());
                alarm.dimensions = dimensions;
                alarm.statistic = Some(statistic);
                alarm.period = Some(period);
            }
            Watched::SumOf {
                namespace,
                metrics,
                statistic,
                label,
            } => alarm.metrics = sum_queries(&namespace, metrics, statistic, label, period),
        }
    }
}

/// One query per metric (`m1`, `m2`, ...) returning no data, and the `total` query summing
/// them, which the alarm compares with its threshold.
fn sum_queries(
    namespace: &str,
    metrics: Vec<(String, Vec<Dimension>)>,
    statistic: Statistic,
    label: String,
    period: u32,
) -> Vec<MetricDataQuery> {
    let mut queries: Vec<MetricDataQuery> = metrics
        .into_iter()
        .enumerate()
        .map(|(index, (name, dimensions))| MetricDataQuery {
            id: format!("m{}", index + 1),
            expression: None,
            label: None,
            metric_stat: Some(crate::cfn::cloudwatch::MetricStat {
                metric: crate::cfn::cloudwatch::Metric {
                    namespace: namespace.to_owned(),
                    metric_name: name,
                    dimensions,
                },
                period,
                stat: statistic,
            }),
            return_data: false,
        })
        .collect();
    queries.push(MetricDataQuery {
        id: "total".to_owned(),
        expression: Some("SUM(METRICS())".to_owned()),
        label: Some(label),
        metric_stat: None,
        return_data: true,
    });
    queries
}

/// A dimension.
pub(super) fn dimension(name: &str, value: Expr) -> Dimension {
    Dimension {
        name: name.to_owned(),
        value,
    }
}
