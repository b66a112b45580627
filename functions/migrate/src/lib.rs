//! The database migration step as a CloudFormation custom resource (`Custom::DatabaseMigrations`):
//! on create and update it connects as the database's owner (the cluster's managed master
//! secret), applies the pending migrations ([`sagaform_runtime::store::migrate`]: each in its own
//! transaction under a transaction-level lock) and creates or updates the application role with
//! the password of its own secret; on delete it leaves the database alone (the cluster keeps a
//! final snapshot). Whatever happens, it answers CloudFormation with a `PUT` of the result to the
//! request's pre-signed `ResponseURL`: a custom resource that never answers holds the stack for
//! an hour. So the migrations run in a task of their own, bounded by the invocation's deadline
//! (a panic or a timeout becomes a FAILED answer), a request the function cannot read in full is
//! still answered from its raw fields, and a function that could not start answers too (Delete
//! succeeds, Create and Update fail with the start-up error).

use sagaform_contract::custom_resource::{
    CustomResourceRequest, CustomResourceResponse, RequestType, ResponseStatus,
};
use sagaform_contract::env as vars;
use sagaform_runtime::StoreError;
use sagaform_runtime::store::config::DatabaseLocation;
use sagaform_runtime::store::{AppRole, PostgresSettings, SecretSource, StoreConfig, migrate};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use tracing::{error, info};

/// The physical id of the migrations resource: the same on every update, so CloudFormation
/// never deletes an "old" one.
pub const PHYSICAL_RESOURCE_ID: &str = "sagaform-database-schema";

/// What the step keeps of the invocation's time to answer CloudFormation after the migrations
/// were cut off.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(15);

/// The longest reason sent to CloudFormation: its whole answer may not exceed 4096 bytes.
pub const MAX_REASON_BYTES: usize = 1024;

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

/// Where the database is and whose credentials the migrations use.
#[derive(Clone)]
struct Target {
    /// Host, port and database (the credentials come from `owner`).
    location: PostgresSettings,
    /// The owner's secret (the cluster's managed master secret).
    owner: SecretSource,
    /// The application role's secret, when the stack has one.
    app: Option<SecretSource>,
}

/// The function's state: the database to migrate, or why it could not be set up, and the
/// client that answers CloudFormation.
pub struct MigrationStep {
    target: Result<Target, String>,
    http: reqwest::Client,
}

/// The client answering CloudFormation: bounded, so that an unreachable URL fails the
/// invocation instead of hanging it.
fn answer_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

impl MigrationStep {
    /// The step for the database at `location`, logging in with `owner`'s credentials and
    /// granting the role of `app`.
    pub fn new(location: PostgresSettings, owner: SecretSource, app: Option<SecretSource>) -> Self {
        MigrationStep {
            target: Ok(Target {
                location,
                owner,
                app,
            }),
            http: answer_client(),
        }
    }

    /// A step that could not be set up (`error`): it still answers every request, Delete with
    /// success (nothing to undo) and Create or Update with the error.
    pub fn broken(error: &MigrateError) -> Self {
        MigrationStep {
            target: Err(format!("the migrate function could not start: {error}")),
            http: answer_client(),
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

    /// Runs the request with a default time budget and answers CloudFormation; returns the
    /// answer sent.
    pub async fn handle(&self, event: Value) -> Result<CustomResourceResponse, MigrateError> {
        self.handle_within(event, Duration::from_secs(240)).await
    }

    /// Runs the request, giving the migrations at most `budget` (the invocation's time left less
    /// [`ANSWER_MARGIN`]), and answers CloudFormation; returns the answer sent.
    pub async fn handle_within(
        &self,
        event: Value,
        budget: Duration,
    ) -> Result<CustomResourceResponse, MigrateError> {
        let request = match CustomResourceRequest::<Value>::deserialize(&event) {
            Ok(request) => request,
            Err(e) => {
                // Answered from the raw fields, or the stack waits an hour for nothing.
                let request = raw_request(&event).ok_or_else(|| {
                    MigrateError::Request(format!("{e}; no ResponseURL to answer"))
                })?;
                let reason = format!("unreadable custom resource request: {e}");
                let status = if request.request_type == RequestType::Delete {
                    ResponseStatus::Success
                } else {
                    ResponseStatus::Failed
                };
                return self.answer(&request, status, Some(reason)).await;
            }
        };
        let outcome = match (request.request_type, &self.target) {
            // The schema goes with the cluster, whose final snapshot keeps it.
            (RequestType::Delete, _) => Ok(()),
            (_, Err(error)) => Err(error.clone()),
            (_, Ok(target)) => run_bounded(target.clone(), budget).await,
        };
        let (status, reason) = match outcome {
            Ok(()) => (ResponseStatus::Success, None),
            Err(reason) => {
                error!(error = %reason, "database migration step failed");
                (ResponseStatus::Failed, Some(reason))
            }
        };
        self.answer(&request, status, reason).await
    }

    /// Sends the answer to `request`; the reason is cut to [`MAX_REASON_BYTES`].
    async fn answer(
        &self,
        request: &CustomResourceRequest<Value>,
        status: ResponseStatus,
        reason: Option<String>,
    ) -> Result<CustomResourceResponse, MigrateError> {
        let response = CustomResourceResponse {
            status,
            reason: reason.map(|reason| bounded_reason(&reason)),
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

/// Runs the migrations of `target` in a task of its own, so that a panic is an error, within
/// `budget`.
async fn run_bounded(target: Target, budget: Duration) -> Result<(), String> {
    let task = tokio::spawn(async move { target.migrate().await });
    match tokio::time::timeout(budget, task).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(joined)) => Err(format!(
            "the migration step stopped unexpectedly ({joined}); see the function's log group"
        )),
        Err(_) => Err(format!(
            "the migrations did not finish within {} s; see the function's log group and deploy again",
            budget.as_secs()
        )),
    }
}

/// The fields needed to answer a request that does not parse in full, read one by one.
fn raw_request(event: &Value) -> Option<CustomResourceRequest<Value>> {
    let field = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
    let request_type = match field("RequestType").as_deref() {
        Some("Delete") => RequestType::Delete,
        Some("Update") => RequestType::Update,
        _ => RequestType::Create,
    };
    Some(CustomResourceRequest {
        request_type,
        response_url: field("ResponseURL")?,
        stack_id: field("StackId").unwrap_or_default(),
        request_id: field("RequestId").unwrap_or_default(),
        logical_resource_id: field("LogicalResourceId").unwrap_or_default(),
        physical_resource_id: field("PhysicalResourceId"),
        resource_properties: Value::Null,
    })
}

/// `reason` cut to [`MAX_REASON_BYTES`] on a character boundary.
fn bounded_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_REASON_BYTES - 3;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
}

impl Target {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary_to_fit_the_answer() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded_reason(&reason);
        assert!(
            cut.len() <= MAX_REASON_BYTES && cut.ends_with("..."),
            "{}",
            cut.len()
        );
        assert_eq!(bounded_reason("short"), "short");
    }

    #[test]
    fn a_request_missing_fields_is_still_answerable_from_its_raw_fields() {
        let raw = serde_json::json!({"RequestType": "Delete", "ResponseURL": "https://s3/x", "StackId": "s"});
        let request = raw_request(&raw).unwrap();
        assert_eq!(request.request_type, RequestType::Delete);
        assert_eq!(request.response_url, "https://s3/x");
        assert!(raw_request(&serde_json::json!({"RequestType": "Create"})).is_none());
    }
}
