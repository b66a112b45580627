//! Helpers of the API tests: calls that return the status, the JSON body and the headers of an
//! answer ([`Reply`]), in an invocation with a chosen deadline.

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use sagaform_api::Api;
pub use sagaform_testkit::Reply;
use sagaform_testkit::event;

/// Time left in an ordinary invocation: the orchestrator's worst case with retries stays well
/// under it.
pub const INVOCATION_TIME: Duration = Duration::from_secs(60);

/// Sends `request` to `api` with `time_left` until the invocation's deadline.
pub async fn send_with(api: &Api, request: ApiGatewayV2httpRequest, time_left: Duration) -> Reply {
    Reply::new(api.handle(event(request, time_left)).await)
}

/// Sends `request` in an ordinary invocation.
pub async fn send(api: &Api, request: ApiGatewayV2httpRequest) -> Reply {
    send_with(api, request, INVOCATION_TIME).await
}
