//! Lambda's Invoke API for the local functions: `POST /2015-03-31/functions/{name}/invocations`,
//! answered like AWS (the payload; or status 200 with `X-Amz-Function-Error: Unhandled` and the
//! error document). It is what the patched moto forwards Step Functions Tasks to, and what an
//! AWS SDK or `cargo lambda invoke`-style client pointed at it reaches.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::LocalError;
use crate::loopback::LoopbackServer;
use crate::runtime::{InvokeOutcome, LocalFunction};

/// The local functions by name, shared by the Invoke API, the HTTP API and the SQS pollers.
#[derive(Debug, Clone, Default)]
pub struct Functions {
    by_name: Arc<BTreeMap<String, LocalFunction>>,
}

impl Functions {
    /// A registry of these functions.
    pub fn new(functions: impl IntoIterator<Item = LocalFunction>) -> Functions {
        let by_name = functions
            .into_iter()
            .map(|f| (f.spec().name.clone(), f))
            .collect();
        Functions {
            by_name: Arc::new(by_name),
        }
    }

    /// Finds a function by name, ARN or partial ARN (`function:NAME`), with or without a
    /// qualifier, as Invoke accepts them.
    pub fn resolve(&self, identifier: &str) -> Option<&LocalFunction> {
        let name = function_name_of(identifier);
        self.by_name.get(name)
    }

    /// Every function, by name.
    pub fn iter(&self) -> impl Iterator<Item = &LocalFunction> {
        self.by_name.values()
    }

    /// Stops every function's processes.
    pub async fn shutdown(&self) {
        for function in self.by_name.values() {
            function.shutdown().await;
        }
    }
}

/// The function name in an Invoke `FunctionName`: a name, `NAME:QUALIFIER`, `function:NAME`,
/// or a full ARN with or without a qualifier.
pub fn function_name_of(identifier: &str) -> &str {
    let parts: Vec<&str> = identifier.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] => name,
        [_, "function", name, ..] => name,
        ["function", name, ..] => name,
        [name, ..] => name,
        [] => identifier,
    }
}

/// A running Invoke API server.
#[derive(Debug)]
pub struct InvokeApi {
    server: LoopbackServer,
}

impl InvokeApi {
    /// Serves the Invoke API of `functions` on `127.0.0.1:port` (0 picks a free port).
    pub async fn serve(functions: Functions, port: u16) -> Result<InvokeApi, LocalError> {
        let router = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .with_state(functions);
        let server = LoopbackServer::serve(port, "the Lambda Invoke API", router)?;
        Ok(InvokeApi { server })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123` (an AWS SDK `endpoint_url`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }
}

async fn invoke(
    State(functions): State<Functions>,
    Path(name): Path<String>,
    headers: HeaderMap,
    payload: Bytes,
) -> Response {
    let Some(function) = functions.resolve(&name).cloned() else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    };
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    match invocation_type {
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        "Event" => {
            // Accepted now, run in the background with Lambda's retries and destination.
            let request_id = function.invoke_async(payload);
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                headers.insert("x-amzn-requestid", value);
            }
            (StatusCode::ACCEPTED, headers).into_response()
        }
        "RequestResponse" => match function.invoke(payload).await {
            Ok(outcome) => outcome_response(outcome),
            Err(error) => aws_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceException",
                &error.to_string(),
            ),
        },
        other => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("unknown invocation type {other}"),
        ),
    }
}

/// An outcome as Lambda's Invoke answers it.
pub(crate) fn outcome_response(outcome: InvokeOutcome) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    match outcome {
        InvokeOutcome::Success(body) => (StatusCode::OK, headers, body).into_response(),
        InvokeOutcome::FunctionError(error) => {
            headers.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            (StatusCode::OK, headers, error.body).into_response()
        }
    }
}

fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        headers.insert("x-amzn-errortype", value);
    }
    let body = json!({"Type": "User", "message": message});
    (status, headers, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::function_name_of;

    #[test]
    fn function_names_come_out_of_every_invoke_identifier_form() {
        for identifier in [
            "api",
            "api:$LATEST",
            "function:api",
            "123456789012:function:api",
            "arn:aws:lambda:us-east-1:123456789012:function:api",
            "arn:aws:lambda:us-east-1:123456789012:function:api:live",
        ] {
            assert_eq!(function_name_of(identifier), "api", "{identifier}");
        }
    }
}
