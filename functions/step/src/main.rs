//! The `step` Lambda function (packaged as `bootstrap`): reads its configuration and opens its
//! store and SaaS client once per instance, then runs the Step Functions Tasks it is invoked for.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaform_runtime::telemetry::init_json_logging();
    let handler = match sagaform_step::StepHandler::from_env().await {
        Ok(handler) => handler,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the step function");
            return Err(e.into());
        }
    };
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        handler.handle(event)
    }))
    .await
}
