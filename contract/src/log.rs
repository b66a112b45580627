//! The log lines other systems act on: the functions write them, and the template's metric
//! filters count them into the metrics that alarms watch.
//!
//! Lines are JSON objects (the runtime's flat formatter), so a field named here is matched by a
//! CloudWatch Logs filter pattern as `$.<field>`.

/// The field naming what happened to a saga, on the lines an alarm counts.
pub const OUTCOME_FIELD: &str = "outcome";

/// [`OUTCOME_FIELD`]'s value on the line written when a saga is parked IN_DOUBT.
pub const SAGA_IN_DOUBT: &str = "saga_in_doubt";

/// The metric counting sagas parked IN_DOUBT, one per parked saga.
pub const SAGAS_IN_DOUBT_METRIC: &str = "SagasInDoubt";

/// [`OUTCOME_FIELD`]'s value on the line written when a saga ends COMPENSATION_FAILED: a
/// compensation failed for good and a human must settle the step.
pub const SAGA_COMPENSATION_FAILED: &str = "saga_compensation_failed";

/// The metric counting sagas that ended COMPENSATION_FAILED, one per saga.
pub const SAGAS_COMPENSATION_FAILED_METRIC: &str = "SagasCompensationFailed";

/// The CloudWatch namespace of the metrics sagaform derives from its logs.
pub const METRIC_NAMESPACE: &str = "sagaform";

/// The CloudWatch Logs filter pattern matching the lines whose [`OUTCOME_FIELD`] is `outcome`.
pub fn outcome_filter_pattern(outcome: &str) -> String {
    format!("{{ $.{OUTCOME_FIELD} = \"{outcome}\" }}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_pattern_names_the_field_and_the_value_a_line_carries() {
        assert_eq!(
            outcome_filter_pattern(SAGA_IN_DOUBT),
            r#"{ $.outcome = "saga_in_doubt" }"#
        );
    }
}
