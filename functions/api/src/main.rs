//! The `api` Lambda function (packaged as `bootstrap`): reads its configuration and opens its
//! store and clients once per instance, then serves API Gateway HTTP API events and, in the
//! orchestrator pattern, the resume events it sends itself (see `sagaform_api::resume`).

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaform_runtime::telemetry::init_json_logging();
    let api = match sagaform_api::Api::from_env().await {
        Ok(api) => api,
        Err(e) => {
            // Logged as JSON too, so an init failure is searchable like every other line.
            tracing::error!(error = %e, "cannot start the api function");
            return Err(e.into());
        }
    };
    let api = if api.pattern() == sagaform_api::Pattern::Orchestrator {
        match sagaform_api::LambdaResumer::from_env().await {
            Ok(resumer) => api.with_resumer(Arc::new(resumer)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the api function");
                return Err(e.into());
            }
        }
    } else {
        api
    };
    let api = &api;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        api.handle_event(event).await
    }))
    .await
}
