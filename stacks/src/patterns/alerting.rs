//! The stack's alarm topic with its email subscriptions, and the one way alarms are added: each
//! alarm notifies the topic on ALARM and on OK, names its runbook section in its description,
//! and adds that section to the runbook.

use crate::cfn::cloudwatch::{
    Alarm, ComparisonOperator, Dimension, MetricDataQuery, Statistic, TreatMissingData,
};
use crate::cfn::sns::{Subscription, SubscriptionProtocol, Topic};
use crate::cfn::{CfnError, Expr};
use crate::runbook::RunbookSection;

use super::StackBuilder;

/// Logical id of the stack's alarm topic.
pub const ALARM_TOPIC: &str = "AlarmTopic";

/// Adds the alarm topic, one email subscription per configured address, and its output.
pub(super) fn add_alarm_topic(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    stack.add(
        ALARM_TOPIC,
        Topic {
            display_name: format!("sagaform {} {} alarms", stack.pattern, stack.env.name),
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

/// Adds the alarm and its runbook section.
pub(super) fn add_alarm(stack: &mut StackBuilder<'_>, spec: AlarmSpec) -> Result<(), CfnError> {
    add_alarm_needing(stack, spec, None)
}

/// Adds the alarm and its runbook section, the alarm going off on the first breaching period
/// among those it evaluates: for events of which one is already too many, and which a quiet
/// period after would otherwise hide.
pub(super) fn add_first_event_alarm(
    stack: &mut StackBuilder<'_>,
    spec: AlarmSpec,
) -> Result<(), CfnError> {
    add_alarm_needing(stack, spec, Some(1))
}

/// Adds the alarm, `datapoints_to_alarm` of its evaluated periods breaching (unset: all).
fn add_alarm_needing(
    stack: &mut StackBuilder<'_>,
    spec: AlarmSpec,
    datapoints_to_alarm: Option<u32>,
) -> Result<(), CfnError> {
    let period = u32::try_from(stack.env.alarms.period.as_secs()).unwrap_or(u32::MAX);
    let mut alarm = alarm_notifying_topic(stack, &spec);
    alarm.datapoints_to_alarm = datapoints_to_alarm;
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

/// The alarm of `spec` watching nothing yet: its description ends with the runbook link, and
/// it notifies the alarm topic on ALARM and on OK.
fn alarm_notifying_topic(stack: &StackBuilder<'_>, spec: &AlarmSpec) -> Alarm {
    let description = format!(
        "{} Runbook: {}",
        spec.meaning,
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
        evaluation_periods: stack.env.alarms.evaluation_periods,
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
