//! Choosing and opening the store a function uses, from its environment variables (see
//! `sagaform_contract::env`): `SAGAFORM_STORE` = `dynamodb` (tables `SAGAFORM_SAGA_TABLE`,
//! `SAGAFORM_IDEMPOTENCY_TABLE`, TTL `SAGAFORM_SAGA_TTL_SECONDS`) or `aurora` (either
//! `SAGAFORM_DATABASE_URL` for a local server, or `SAGAFORM_DB_HOST`, `SAGAFORM_DB_PORT`,
//! `SAGAFORM_DB_NAME` and the Secrets Manager secret `SAGAFORM_DB_SECRET_ARN` holding the
//! credentials, read at init and again when the server refuses them after a rotation, so no
//! password is ever in the environment).

use std::time::Duration;

use sagaform_contract::database::DatabaseSecret;
use sagaform_contract::env::{self as vars, StoreKind};
use serde_json::Value;

use crate::errors::{IdempotencyError, StoreError};
use crate::model::{SagaRecord, SagaStatus};
use crate::store::{
    ClaimOutcome, DynamoStore, IdempotencyClaim, IdempotencyCompletion, IdempotencyRecord,
    IdempotencyStore, PostgresSettings, PostgresStore, SagaStore,
};

/// How long finished sagas are kept in DynamoDB when `SAGAFORM_SAGA_TTL_SECONDS` is not set.
pub const DEFAULT_SAGA_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where the database of the `aurora` store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A `postgres://` URL without a password (local environment).
    Url(String),
    /// Aurora through RDS Proxy; credentials in a Secrets Manager secret.
    Aurora {
        /// RDS Proxy endpoint.
        host: String,
        /// Port.
        port: u16,
        /// Database name.
        dbname: String,
        /// ARN of the secret with `username` and `password`.
        secret_arn: String,
    },
}

/// The store configuration read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Two DynamoDB tables.
    DynamoDb {
        /// Saga table.
        saga_table: String,
        /// Idempotency table.
        idempotency_table: String,
        /// How long finished sagas are kept.
        saga_ttl: Duration,
    },
    /// PostgreSQL (Aurora, or a local server).
    Aurora(DatabaseLocation),
}

impl StoreConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, StoreError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, StoreError> {
        let required = |name: &str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| StoreError::Config(format!("environment variable {name}: not set")))
        };
        let store = required(vars::STORE)?;
        let kind = store.parse::<StoreKind>().map_err(|unknown| {
            StoreError::Config(format!("environment variable {}: {unknown}", vars::STORE))
        })?;
        match kind {
            StoreKind::DynamoDb => {
                let saga_ttl = match lookup(vars::SAGA_TTL_SECONDS) {
                    None => DEFAULT_SAGA_TTL,
                    Some(text) => Duration::from_secs(text.trim().parse().map_err(|_| {
                        StoreError::Config(format!(
                            "environment variable {}: `{text}` is not a whole number of seconds",
                            vars::SAGA_TTL_SECONDS
                        ))
                    })?),
                };
                Ok(StoreConfig::DynamoDb {
                    saga_table: required(vars::SAGA_TABLE)?,
                    idempotency_table: required(vars::IDEMPOTENCY_TABLE)?,
                    saga_ttl,
                })
            }
            StoreKind::Aurora => {
                if let Some(url) = lookup(vars::DATABASE_URL).filter(|u| !u.trim().is_empty()) {
                    return Ok(StoreConfig::Aurora(DatabaseLocation::Url(url)));
                }
                let port_text = required(vars::DB_PORT)?;
                let port = port_text.trim().parse().map_err(|_| {
                    StoreError::Config(format!(
                        "environment variable {}: `{port_text}` is not a port number",
                        vars::DB_PORT
                    ))
                })?;
                Ok(StoreConfig::Aurora(DatabaseLocation::Aurora {
                    host: required(vars::DB_HOST)?,
                    port,
                    dbname: required(vars::DB_NAME)?,
                    secret_arn: required(vars::DB_SECRET_ARN)?,
                }))
            }
        }
    }

    /// Opens the store: AWS clients from the default chain (which honours `AWS_ENDPOINT_URL`
    /// for the local emulator), or a database connection to a schema the migration step
    /// applied (locally `cargo xtask deploy`, in AWS the stack's `Custom::DatabaseMigrations`).
    pub async fn connect(&self) -> Result<ConfiguredStore, StoreError> {
        match self {
            StoreConfig::DynamoDb {
                saga_table,
                idempotency_table,
                saga_ttl,
            } => {
                let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let client = aws_sdk_dynamodb::Client::new(&aws);
                Ok(ConfiguredStore::DynamoDb(DynamoStore::new(
                    client,
                    saga_table,
                    idempotency_table,
                    *saga_ttl,
                )))
            }
            StoreConfig::Aurora(DatabaseLocation::Url(url)) => {
                let settings = PostgresSettings::from_url(url)?;
                Ok(ConfiguredStore::Postgres(
                    PostgresStore::connect(settings).await?,
                ))
            }
            StoreConfig::Aurora(DatabaseLocation::Aurora {
                host,
                port,
                dbname,
                secret_arn,
            }) => {
                let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let secret = SecretSource::new(
                    aws_sdk_secretsmanager::Client::new(&aws),
                    secret_arn.clone(),
                );
                // The secret is the application role's: the stack's migration step has applied
                // the schema and granted the role before any function starts.
                let location = PostgresSettings::aurora(host, *port, dbname, "", "");
                Ok(ConfiguredStore::Postgres(
                    PostgresStore::connect_with_secret(location, secret).await?,
                ))
            }
        }
    }
}

/// Reads the configuration from the environment and opens the store.
pub async fn store_from_env() -> Result<ConfiguredStore, StoreError> {
    StoreConfig::from_env()?.connect().await
}

/// A Secrets Manager secret holding database credentials (the JSON shape RDS and
/// `AWS::SecretsManager::Secret` `GenerateSecretString` produce), read when the store connects
/// and again when the server refuses what it read before.
#[derive(Clone)]
pub struct SecretSource {
    client: aws_sdk_secretsmanager::Client,
    secret_arn: String,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("secret_arn", &self.secret_arn)
            .finish()
    }
}

impl SecretSource {
    /// The secret `secret_arn`, read through `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_arn: String) -> Self {
        SecretSource { client, secret_arn }
    }

    /// The secret's current `username` and `password`.
    pub async fn read(&self) -> Result<DatabaseSecret, StoreError> {
        let secret_arn = &self.secret_arn;
        let output = self
            .client
            .get_secret_value()
            .secret_id(secret_arn)
            .send()
            .await
            .map_err(|e| StoreError::Backend {
                backend: "secretsmanager",
                message: format!(
                    "cannot read secret {secret_arn}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ),
            })?;
        // The secret's text is never put in an error message: it holds the password.
        let invalid = |reason: &str| StoreError::Config(format!("secret {secret_arn}: {reason}"));
        let text = output
            .secret_string()
            .ok_or_else(|| invalid("has no string value"))?;
        serde_json::from_str(text).map_err(|_| {
            invalid("is not a JSON object with string fields `username` and `password`")
        })
    }
}

/// The store chosen by configuration; handlers hold one of these and stay generic-free.
#[derive(Debug, Clone)]
pub enum ConfiguredStore {
    /// DynamoDB tables.
    DynamoDb(DynamoStore),
    /// PostgreSQL.
    Postgres(PostgresStore),
}

/// Forwards a call to whichever store is configured.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            ConfiguredStore::DynamoDb($store) => $call,
            ConfiguredStore::Postgres($store) => $call,
        }
    };
}

impl SagaStore for ConfiguredStore {
    async fn create(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        delegate!(self, store => store.create(record).await)
    }

    async fn create_completing_idempotency(
        &self,
        record: &SagaRecord,
        completion: &IdempotencyCompletion<'_>,
    ) -> Result<u64, StoreError> {
        delegate!(self, store => store.create_completing_idempotency(record, completion).await)
    }

    async fn get(&self, transaction_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        delegate!(self, store => store.get(transaction_id).await)
    }

    async fn transition(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        delegate!(self, store => store.transition(record).await)
    }

    async fn list_by_status(
        &self,
        status: SagaStatus,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        delegate!(self, store => store.list_by_status(status, limit).await)
    }

    async fn list_stuck(
        &self,
        idle_for: Duration,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        delegate!(self, store => store.list_stuck(idle_for, limit).await)
    }
}

impl IdempotencyStore for ConfiguredStore {
    async fn claim(&self, claim: &IdempotencyClaim<'_>) -> Result<ClaimOutcome, IdempotencyError> {
        delegate!(self, store => store.claim(claim).await)
    }

    async fn complete(&self, completion: &IdempotencyCompletion<'_>) -> Result<(), StoreError> {
        delegate!(self, store => store.complete(completion).await)
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        delegate!(self, store => store.release(key).await)
    }

    async fn forget(&self, key: &str, response: &Value) -> Result<(), StoreError> {
        delegate!(self, store => store.forget(key, response).await)
    }

    async fn get_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        delegate!(self, store => store.get_idempotency(key).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<StoreConfig, StoreError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StoreConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn dynamodb_store_reads_both_tables_and_the_ttl() {
        let parsed = config(&[
            ("SAGAFORM_STORE", "dynamodb"),
            ("SAGAFORM_SAGA_TABLE", "sagas"),
            ("SAGAFORM_IDEMPOTENCY_TABLE", "idem"),
            ("SAGAFORM_SAGA_TTL_SECONDS", "3600"),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            StoreConfig::DynamoDb {
                saga_table: "sagas".into(),
                idempotency_table: "idem".into(),
                saga_ttl: Duration::from_secs(3600)
            }
        );
    }

    #[test]
    fn aurora_store_prefers_a_local_url_and_otherwise_needs_host_port_name_and_secret() {
        let local = config(&[
            ("SAGAFORM_STORE", "aurora"),
            ("SAGAFORM_DATABASE_URL", "postgres://u@h/db"),
        ])
        .unwrap();
        assert_eq!(
            local,
            StoreConfig::Aurora(DatabaseLocation::Url("postgres://u@h/db".into()))
        );
        let aurora = config(&[
            ("SAGAFORM_STORE", "aurora"),
            ("SAGAFORM_DB_HOST", "proxy"),
            ("SAGAFORM_DB_PORT", "5432"),
            ("SAGAFORM_DB_NAME", "sagas"),
            ("SAGAFORM_DB_SECRET_ARN", "arn:secret"),
        ])
        .unwrap();
        assert!(matches!(
            aurora,
            StoreConfig::Aurora(DatabaseLocation::Aurora { port: 5432, .. })
        ));
        let missing =
            config(&[("SAGAFORM_STORE", "aurora"), ("SAGAFORM_DB_PORT", "5432")]).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "environment variable SAGAFORM_DB_HOST: not set"
        );
    }

    #[test]
    fn unknown_store_and_bad_numbers_name_the_variable_and_the_reason() {
        let unknown = config(&[("SAGAFORM_STORE", "redis")]).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "environment variable SAGAFORM_STORE: expected `dynamodb` or `aurora`, got `redis`"
        );
        let bad_port =
            config(&[("SAGAFORM_STORE", "aurora"), ("SAGAFORM_DB_PORT", "x")]).unwrap_err();
        assert!(
            bad_port
                .to_string()
                .starts_with("environment variable SAGAFORM_DB_PORT:"),
            "{bad_port}"
        );
    }
}
