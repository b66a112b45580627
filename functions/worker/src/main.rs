//! The `worker` Lambda function (packaged as `bootstrap`): reads its configuration and opens its
//! store and SaaS client once per instance, then advances the sagas of each SQS batch.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaform_runtime::telemetry::init_json_logging();
    let worker = match sagaform_worker::Worker::from_env().await {
        Ok(worker) => worker,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the worker function");
            return Err(e.into());
        }
    };
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        worker.handle(event)
    }))
    .await
}
