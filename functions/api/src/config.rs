//! The API function's configuration, read once at init from its environment (names in `sagaform_contract::env`):
//! `SAGAFORM_PATTERN`, the store variables, and per pattern the SaaS services (orchestrator),
//! `SAGAFORM_QUEUE_URL` (sqs) or `SAGAFORM_STATE_MACHINE_ARN` (stepfunctions), and the
//! orchestrator's `SAGAFORM_RESPONSE_BUDGET_MS`.

use std::time::Duration;

use sagaform_contract::Pattern;
use sagaform_contract::env as vars;
use sagaform_runtime::idempotency::DEFAULT_EXPIRY;
use sagaform_runtime::{ConfiguredStore, Engine, StoreConfig, StoreError};
use sagaform_saas_client::SaasClient;
use sagaform_saga::PURCHASE;

use crate::dispatch::Dispatch;
use crate::request::MAX_BODY_BYTES;

/// A configuration value that is missing or unusable, or a client that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {var}: not set")]
    Missing {
        /// The variable.
        var: &'static str,
    },
    /// A variable holds a value that cannot be used.
    #[error("environment variable {var}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Why.
        reason: String,
    },
    /// The state store configuration or connection.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The SaaS services configuration.
    #[error(transparent)]
    Saas(#[from] sagaform_saas_client::ConfigError),
}

/// Limits and margins of the API; the defaults suit the deployed function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSettings {
    /// Largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Time kept at the end of the invocation to store the outcome and answer (orchestrator).
    pub response_margin: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_expiry: Duration,
    /// How long the orchestrator works on a request before it must answer
    /// (`SAGAFORM_RESPONSE_BUDGET_MS`): the HTTP API cuts an integration off at 30 s.
    pub response_budget: Duration,
}

/// The response budget when `SAGAFORM_RESPONSE_BUDGET_MS` is not set.
pub const DEFAULT_RESPONSE_BUDGET: Duration = Duration::from_millis(25_000);

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_body_bytes: MAX_BODY_BYTES,
            response_margin: Duration::from_millis(500),
            idempotency_expiry: DEFAULT_EXPIRY,
            response_budget: DEFAULT_RESPONSE_BUDGET,
        }
    }
}

/// The settings the environment changes from the defaults: `SAGAFORM_RESPONSE_BUDGET_MS`.
pub fn settings(lookup: &impl Fn(&str) -> Option<String>) -> Result<ApiSettings, ConfigError> {
    let var = vars::RESPONSE_BUDGET_MS;
    let mut settings = ApiSettings::default();
    if let Some(value) = lookup(var).filter(|value| !value.trim().is_empty()) {
        let millis = value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|millis| *millis > 0)
            .ok_or_else(|| ConfigError::Invalid {
                var,
                reason: format!("expected a positive number of milliseconds, got `{value}`"),
            })?;
        settings.response_budget = Duration::from_millis(millis);
    }
    Ok(settings)
}

/// The pattern named by `SAGAFORM_PATTERN`.
pub fn pattern(lookup: &impl Fn(&str) -> Option<String>) -> Result<Pattern, ConfigError> {
    let var = vars::PATTERN;
    let name = required(lookup, var)?;
    name.parse::<Pattern>().map_err(|_| ConfigError::Invalid {
        var,
        reason: format!("expected orchestrator, sqs or stepfunctions, got `{name}`"),
    })
}

/// Builds what the pattern hands sagas to, with AWS clients from the default chain (which honours
/// `AWS_ENDPOINT_URL`, so the local emulator needs no code here).
pub async fn dispatch(
    pattern: Pattern,
    store: &ConfiguredStore,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Dispatch, ConfigError> {
    match pattern {
        Pattern::Orchestrator => {
            let client = SaasClient::from_env(&PURCHASE)?;
            Ok(Dispatch::InRequest(Engine::new(
                PURCHASE,
                store.clone(),
                client,
            )))
        }
        Pattern::Sqs => {
            let queue_url = required(lookup, vars::QUEUE_URL)?;
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            Ok(Dispatch::Queue {
                client: aws_sdk_sqs::Client::new(&aws),
                queue_url,
            })
        }
        Pattern::StepFunctions => {
            let state_machine_arn = required(lookup, vars::STATE_MACHINE_ARN)?;
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            Ok(Dispatch::StateMachine {
                client: aws_sdk_sfn::Client::new(&aws),
                state_machine_arn,
            })
        }
    }
}

/// Opens the store named by the environment.
pub async fn store(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<ConfiguredStore, ConfigError> {
    Ok(StoreConfig::from_lookup(lookup)?.connect().await?)
}

fn required(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<String, ConfigError> {
    lookup(var)
        .filter(|value| !value.trim().is_empty())
        .ok_or(ConfigError::Missing { var })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_variable_is_required_and_checked() {
        let unset = pattern(&|_| None).unwrap_err();
        assert_eq!(
            unset.to_string(),
            "environment variable SAGAFORM_PATTERN: not set"
        );
        let wrong = pattern(&|_| Some("saga".to_owned())).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "environment variable SAGAFORM_PATTERN: expected orchestrator, sqs or stepfunctions, got `saga`"
        );
        assert_eq!(pattern(&|_| Some("sqs".to_owned())).unwrap(), Pattern::Sqs);
    }

    #[test]
    fn the_response_budget_defaults_to_25_s_and_is_checked() {
        assert_eq!(
            settings(&|_| None).unwrap().response_budget,
            DEFAULT_RESPONSE_BUDGET
        );
        let set = settings(&|_| Some("300".to_owned())).unwrap();
        assert_eq!(set.response_budget, Duration::from_millis(300));
        let wrong = settings(&|_| Some("soon".to_owned())).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "environment variable SAGAFORM_RESPONSE_BUDGET_MS: expected a positive number of milliseconds, got `soon`"
        );
    }
}
