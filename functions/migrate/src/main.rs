//! The `migrate` Lambda function (packaged as `bootstrap`): builds its clients once per
//! instance, then answers each `Custom::DatabaseMigrations` request CloudFormation sends.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaform_runtime::telemetry::init_json_logging();
    let step = match sagaform_migrate::MigrationStep::from_env().await {
        Ok(step) => step,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the migrate function");
            return Err(e.into());
        }
    };
    let step = &step;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        step.handle(event.payload)
            .await
            .map_err(|e| lambda_runtime::Diagnostic {
                error_type: "MigrateError".to_owned(),
                error_message: e.to_string(),
            })
    }))
    .await
}
