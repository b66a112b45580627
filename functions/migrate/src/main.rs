//! The `migrate` Lambda function (packaged as `bootstrap`): builds its clients once per
//! instance, then answers each `Custom::DatabaseMigrations` request CloudFormation sends.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use std::time::SystemTime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaform_runtime::telemetry::init_json_logging();
    // A function that cannot start still answers: CloudFormation would otherwise wait an hour.
    let step = match sagaform_migrate::MigrationStep::from_env().await {
        Ok(step) => step,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the migrate function");
            sagaform_migrate::MigrationStep::broken(&e)
        }
    };
    let step = &step;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let left = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let budget = left.saturating_sub(sagaform_migrate::ANSWER_MARGIN);
        step.handle_within(event.payload, budget)
            .await
            .map_err(|e| lambda_runtime::Diagnostic {
                error_type: "MigrateError".to_owned(),
                error_message: e.to_string(),
            })
    }))
    .await
}
