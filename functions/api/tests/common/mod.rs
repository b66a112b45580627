//! Helpers of the API tests: an orchestrator API on a test store and the fake SaaS, and calls
//! that return the status, the JSON body and the headers of an answer.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::time::Duration;

use api::Api;
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use sagaform_testkit::{event, response_json};
use serde_json::Value;

/// Time left in an ordinary invocation: the orchestrator's worst case with retries stays well
/// under it.
pub const INVOCATION_TIME: Duration = Duration::from_secs(60);

/// An answer as a client sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: i64,
    pub body: Value,
    pub response: ApiGatewayV2httpResponse,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    pub fn transaction_id(&self) -> &str {
        self.body["transaction_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no transaction_id in {:#}", self.body))
    }
}

/// Sends `request` to `api` with `time_left` until the invocation's deadline.
pub async fn send_with(api: &Api, request: ApiGatewayV2httpRequest, time_left: Duration) -> Reply {
    let response = api.handle(event(request, time_left)).await;
    let body = response_json(&response);
    Reply {
        status: response.status_code,
        body,
        response,
    }
}

/// Sends `request` in an ordinary invocation.
pub async fn send(api: &Api, request: ApiGatewayV2httpRequest) -> Reply {
    send_with(api, request, INVOCATION_TIME).await
}
