//! The database migration step as a CloudFormation custom resource (`Custom::DatabaseMigrations`):
//! on create and update it connects as the database's owner (the cluster's managed master
//! secret), applies the pending migrations ([`sagaform_runtime::store::migrate`]: each in its own
//! transaction under a transaction-level lock) and creates or updates the application role with
//! the password of its own secret; on delete it leaves the database alone (the cluster keeps a
//! final snapshot). Whatever happens, it answers CloudFormation with a `PUT` of the result to the
//! request's pre-signed `ResponseURL`: a custom resource that never answers holds the stack for
//! an hour.

use sagaform_contract::custom_resource::{
    CustomResourceRequest, CustomResourceResponse, RequestType, ResponseStatus,
};
use sagaform_contract::env as vars;
use sagaform_runtime::StoreError;
use sagaform_runtime::store::config::DatabaseLocation;
use sagaform_runtime::store::{AppRole, PostgresSettings, SecretSource, StoreConfig, migrate};
use serde_json::Value;
use tracing::{error, info};

/// The physical id of the migrations resource: the same on every update, so CloudFormation
/// never deletes an "old" one.
pub const PHYSICAL_RESOURCE_ID: &str = "sagaform-database-schema";

/// Why the step could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The environment or the database settings are wrong.
    #[error("{0}")]
    Config(String),
    /// The request is not a custom resource request.
    #[error("not a custom resource request: {0}")]
    Request(String),
    /// The answer could not be delivered to CloudFormation.
    #[error("cannot answer CloudFormation at the response url: {0}")]
    Respond(String),
}

impl From<StoreError> for MigrateError {
    fn from(error: StoreError) -> Self {
        MigrateError::Config(error.to_string())
    }
}

/// Where the database is and whose credentials the step uses.
pub struct MigrationStep {
    /// Host, port and database (the credentials come from `owner`).
    location: PostgresSettings,
    /// The owner's secret (the cluster's managed master secret).
    owner: SecretSource,
    /// The application role's secret, when the stack has one.
    app: Option<SecretSource>,
    http: reqwest::Client,
}

impl MigrationStep {
    /// The step for the database at `location`, logging in with `owner`'s credentials and
    /// granting the role of `app`.
    pub fn new(location: PostgresSettings, owner: SecretSource, app: Option<SecretSource>) -> Self {
        MigrationStep {
            location,
            owner,
            app,
            http: reqwest::Client::new(),
        }
    }

    /// From the function's environment: the Aurora store's `SAGAFORM_DB_*` variables (the owner's
    /// secret in `SAGAFORM_DB_SECRET_ARN`) and `SAGAFORM_DB_APP_SECRET_ARN`.
    pub async fn from_env() -> Result<Self, MigrateError> {
        let StoreConfig::Aurora(DatabaseLocation::Aurora {
            host,
            port,
            dbname,
            secret_arn,
        }) = StoreConfig::from_env()?
        else {
            return Err(MigrateError::Config(format!(
                "environment variable {}: the migration step needs the aurora store through rds proxy",
                vars::STORE
            )));
        };
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = aws_sdk_secretsmanager::Client::new(&aws);
        let app = std::env::var(vars::DB_APP_SECRET_ARN)
            .ok()
            .filter(|arn| !arn.trim().is_empty())
            .map(|arn| SecretSource::new(client.clone(), arn));
        Ok(MigrationStep::new(
            PostgresSettings::aurora(&host, port, &dbname, "", ""),
            SecretSource::new(client, secret_arn),
            app,
        ))
    }

    /// Runs the request and answers CloudFormation; returns the answer sent.
    pub async fn handle(&self, event: Value) -> Result<CustomResourceResponse, MigrateError> {
        let request: CustomResourceRequest<Value> =
            serde_json::from_value(event).map_err(|e| MigrateError::Request(e.to_string()))?;
        let outcome = match request.request_type {
            RequestType::Create | RequestType::Update => self.migrate().await,
            // The schema goes with the cluster, whose final snapshot keeps it.
            RequestType::Delete => Ok(()),
        };
        let (status, reason) = match outcome {
            Ok(()) => (ResponseStatus::Success, None),
            Err(e) => {
                error!(error = %e, "database migration step failed");
                (ResponseStatus::Failed, Some(e.to_string()))
            }
        };
        let response = CustomResourceResponse {
            status,
            reason,
            physical_resource_id: request
                .physical_resource_id
                .clone()
                .unwrap_or_else(|| PHYSICAL_RESOURCE_ID.to_owned()),
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
        };
        self.respond(&request.response_url, &response).await?;
        Ok(response)
    }

    /// Applies the migrations as the owner and grants the application role.
    async fn migrate(&self) -> Result<(), StoreError> {
        let owner = self.location.with_credentials(&self.owner.read().await?);
        let app_role = match &self.app {
            Some(secret) => {
                let credentials = secret.read().await?;
                Some(AppRole {
                    name: credentials.username,
                    password: Some(credentials.password),
                })
            }
            None => None,
        };
        let applied = migrate(&owner, app_role.as_ref()).await?;
        info!(applied = ?applied, "database migrations applied");
        Ok(())
    }

    /// `PUT`s the answer to the pre-signed URL. The URL is signed without a content type, so the
    /// request must carry an empty one.
    async fn respond(
        &self,
        url: &str,
        response: &CustomResourceResponse,
    ) -> Result<(), MigrateError> {
        let body =
            serde_json::to_vec(response).map_err(|e| MigrateError::Respond(e.to_string()))?;
        let answer = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "")
            .body(body)
            .send()
            .await
            .map_err(|e| MigrateError::Respond(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(MigrateError::Respond(format!(
                "the response url answered {}",
                answer.status()
            )));
        }
        Ok(())
    }
}
