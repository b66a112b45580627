//! The environment of the Lambda functions: every `SAGAFORM_*` variable the template (or the
//! local environment) sets and a function reads at init.
//!
//! To add a variable: add its constant here, set it in the stacks crate's function builder
//! (`stacks/src/patterns/functions.rs`, from a capability) and read it on the function's side
//! through the constant. Nothing else names it.

use std::fmt;
use std::str::FromStr;

/// The pattern the function serves: a [`crate::Pattern`] name.
pub const PATTERN: &str = "SAGAFORM_PATTERN";

/// The state store: a [`StoreKind`] name.
pub const STORE: &str = "SAGAFORM_STORE";

/// DynamoDB store: the saga table.
pub const SAGA_TABLE: &str = "SAGAFORM_SAGA_TABLE";

/// DynamoDB store: the idempotency table.
pub const IDEMPOTENCY_TABLE: &str = "SAGAFORM_IDEMPOTENCY_TABLE";

/// DynamoDB store: how long finished sagas are kept, in whole seconds.
pub const SAGA_TTL_SECONDS: &str = "SAGAFORM_SAGA_TTL_SECONDS";

/// Aurora store in `local` and in tests: a PostgreSQL URL, used instead of the four `DB_*`
/// variables.
pub const DATABASE_URL: &str = "SAGAFORM_DATABASE_URL";

/// Aurora store: the RDS Proxy endpoint.
pub const DB_HOST: &str = "SAGAFORM_DB_HOST";

/// Aurora store: the RDS Proxy port.
pub const DB_PORT: &str = "SAGAFORM_DB_PORT";

/// Aurora store: the database name.
pub const DB_NAME: &str = "SAGAFORM_DB_NAME";

/// Aurora store: the Secrets Manager secret holding the database credentials (never the
/// credentials themselves).
pub const DB_SECRET_ARN: &str = "SAGAFORM_DB_SECRET_ARN";

/// Migration step: the secret of the application role the functions log in as (`username`,
/// `password`), which the step creates or updates with that password; the owner's secret is
/// [`DB_SECRET_ARN`].
pub const DB_APP_SECRET_ARN: &str = "SAGAFORM_DB_APP_SECRET_ARN";

/// Pattern `sqs`: the work queue's URL (the api sends to it, the worker reschedules on it).
pub const QUEUE_URL: &str = "SAGAFORM_QUEUE_URL";

/// Pattern `stepfunctions`: the state machine the api starts executions of.
pub const STATE_MACHINE_ARN: &str = "SAGAFORM_STATE_MACHINE_ARN";

/// Pattern `orchestrator`: how long the api works on a request before it answers `202` and
/// resumes the saga asynchronously, in milliseconds.
pub const RESPONSE_BUDGET_MS: &str = "SAGAFORM_RESPONSE_BUDGET_MS";

/// The state store a function uses, by its [`STORE`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreKind {
    /// DynamoDB tables.
    DynamoDb,
    /// Aurora PostgreSQL (a PostgreSQL server in `local` and in tests).
    Aurora,
}

impl StoreKind {
    /// Every store.
    pub const ALL: [StoreKind; 2] = [StoreKind::DynamoDb, StoreKind::Aurora];

    /// The [`STORE`] value, also the store's name in env config.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::DynamoDb => "dynamodb",
            StoreKind::Aurora => "aurora",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A [`STORE`] value that names no store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `dynamodb` or `aurora`, got `{given}`")]
pub struct UnknownStore {
    /// What was given.
    pub given: String,
}

impl FromStr for StoreKind {
    type Err = UnknownStore;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownStore {
                given: s.to_owned(),
            })
    }
}

/// One setting of a downstream SaaS service, set per service the function's saga calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaasSetting {
    /// The service's base URL.
    Url,
    /// TCP + TLS connect timeout, in milliseconds.
    ConnectTimeoutMs,
    /// Timeout of one whole request, in milliseconds.
    RequestTimeoutMs,
}

impl SaasSetting {
    /// Every setting, in the order the template lists them.
    pub const ALL: [SaasSetting; 3] = [
        SaasSetting::Url,
        SaasSetting::ConnectTimeoutMs,
        SaasSetting::RequestTimeoutMs,
    ];

    fn suffix(self) -> &'static str {
        match self {
            SaasSetting::Url => "URL",
            SaasSetting::ConnectTimeoutMs => "CONNECT_TIMEOUT_MS",
            SaasSetting::RequestTimeoutMs => "REQUEST_TIMEOUT_MS",
        }
    }
}

/// The variable holding `setting` of `service`: `saas_variable("gift-cards", SaasSetting::Url)`
/// is `SAGAFORM_SAAS_GIFT_CARDS_URL`.
pub fn saas_variable(service: &str, setting: SaasSetting) -> String {
    let service = service.to_ascii_uppercase().replace('-', "_");
    format!("SAGAFORM_SAAS_{service}_{}", setting.suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_parses_back_from_its_name() {
        for kind in StoreKind::ALL {
            assert_eq!(kind.name().parse::<StoreKind>(), Ok(kind));
        }
        assert_eq!(
            "redis".parse::<StoreKind>().unwrap_err().to_string(),
            "expected `dynamodb` or `aurora`, got `redis`"
        );
    }

    #[test]
    fn saas_variables_name_the_service_in_upper_snake_case() {
        assert_eq!(
            saas_variable("inventory", SaasSetting::Url),
            "SAGAFORM_SAAS_INVENTORY_URL"
        );
        assert_eq!(
            saas_variable("gift-cards", SaasSetting::RequestTimeoutMs),
            "SAGAFORM_SAAS_GIFT_CARDS_REQUEST_TIMEOUT_MS"
        );
        assert_eq!(
            saas_variable("payments", SaasSetting::ConnectTimeoutMs),
            "SAGAFORM_SAAS_PAYMENTS_CONNECT_TIMEOUT_MS"
        );
    }
}
