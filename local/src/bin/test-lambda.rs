//! A tiny Lambda function for the tests of this crate, run under the local Runtime API.
//!
//! What it does depends on the event:
//! - an API Gateway payload 2.0 event: answers 201 with what it received (route key, path,
//!   path and query parameters, method, selected headers, cookies, body) as JSON, a header
//!   `x-route-key` and a cookie; on path `/fail` it fails, on `/slow` it first sleeps 3 s;
//! - an SQS event: fails the records whose body contains `fail` (reported in
//!   `batchItemFailures`), and appends one JSON line per record to `$TEST_LAMBDA_RECORD_FILE`;
//! - `{"sleep_ms": N}`: sleeps, then answers `{"slept_ms": N, "pid": PID}`;
//! - `{"fail": {"error_type": T, "message": M}}`: fails with that error type;
//! - `{"fail_times": N, "counter_file": F, "error_type": T}`: counts calls in F and fails
//!   with T until the count exceeds N, then answers `{"attempts": count}`;
//! - `{"exit": CODE}`: exits the process (a crash);
//! - `{"record_file": F, "record": V}`: appends V to F and echoes it;
//! - `{"env": [NAMES]}`: answers the values of these environment variables;
//! - anything else: answers `{"echo": event, "request_id": ..., "pid": PID}`.
//!
//! Every invocation logs one JSON line with its `requestId` and the event's `transaction_id`,
//! if any.

use std::io::Write;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, context) = event.into_parts();
    log_invocation(&context.request_id, &payload);
    if payload.get("version").and_then(Value::as_str) == Some("2.0") {
        return http(payload).await;
    }
    if payload.get("Records").is_some() {
        return sqs(payload);
    }
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        return Ok(json!({"slept_ms": ms, "pid": std::process::id()}));
    }
    if let Some(fail) = payload.get("fail") {
        return Err(diagnostic(
            fail.get("error_type")
                .and_then(Value::as_str)
                .unwrap_or("Failure"),
            fail.get("message")
                .and_then(Value::as_str)
                .unwrap_or("failed on request"),
        ));
    }
    if let Some(times) = payload.get("fail_times").and_then(Value::as_u64) {
        return fail_times(&payload, times);
    }
    if let Some(code) = payload.get("exit").and_then(Value::as_i64) {
        std::process::exit(code as i32);
    }
    if let Some(file) = payload.get("record_file").and_then(Value::as_str) {
        let record = payload.get("record").cloned().unwrap_or(Value::Null);
        append_line(file, &record)?;
        return Ok(json!({"recorded": record}));
    }
    if let Some(Value::Array(names)) = payload.get("env") {
        let values: serde_json::Map<String, Value> = names
            .iter()
            .filter_map(Value::as_str)
            .map(|name| (name.to_owned(), json!(std::env::var(name).ok())))
            .collect();
        return Ok(Value::Object(values));
    }
    Ok(json!({"echo": payload, "request_id": context.request_id, "pid": std::process::id()}))
}

/// The JSON log line of every invocation.
fn log_invocation(request_id: &str, payload: &Value) {
    println!(
        "{}",
        json!({
            "level": "INFO",
            "message": "invoked",
            // Where lambda_runtime's tracing span puts it in JSON logs.
            "requestId": request_id,
            "transaction_id": payload.get("transaction_id"),
        })
    );
}

/// `{"fail_times": N, ...}`: counts this call in the counter file and fails while the count
/// is at most N.
fn fail_times(payload: &Value, times: u64) -> Result<Value, Diagnostic> {
    let file = payload
        .get("counter_file")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let count = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    std::fs::write(file, count.to_string()).map_err(|e| diagnostic("Io", &e.to_string()))?;
    if count <= times {
        let error_type = payload
            .get("error_type")
            .and_then(Value::as_str)
            .unwrap_or("Retryable");
        return Err(diagnostic(
            error_type,
            &format!("attempt {count} fails on purpose"),
        ));
    }
    Ok(json!({"attempts": count}))
}

async fn http(payload: Value) -> Result<Value, Diagnostic> {
    let request: ApiGatewayV2httpRequest =
        serde_json::from_value(payload).map_err(|e| diagnostic("BadEvent", &e.to_string()))?;
    match request.raw_path.as_deref() {
        Some("/fail") => return Err(diagnostic("Boom", "failed on request")),
        Some("/slow") => tokio::time::sleep(std::time::Duration::from_secs(3)).await,
        _ => {}
    }
    let headers: serde_json::Map<String, Value> = ["content-type", "x-custom", "idempotency-key"]
        .iter()
        .filter_map(|name| {
            let value = request.headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), json!(value)))
        })
        .collect();
    let seen = json!({
        "version": request.version,
        "routeKey": request.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query_string,
        "pathParameters": request.path_parameters,
        "query": request.query_string_parameters.first("q"),
        "method": request.request_context.http.method.as_str(),
        "stage": request.request_context.stage,
        "requestId": request.request_context.request_id,
        "headers": headers,
        "cookies": request.cookies,
        "body": request.body,
        "isBase64Encoded": request.is_base64_encoded,
    });
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = 201;
    response.body = Some(seen.to_string().into());
    response.cookies = vec!["session=abc; Path=/".to_owned()];
    response.headers.insert(
        "x-route-key",
        request.route_key.unwrap_or_default().parse().unwrap(),
    );
    response
        .headers
        .insert("content-type", "application/json".parse().unwrap());
    serde_json::to_value(response).map_err(|e| diagnostic("BadResponse", &e.to_string()))
}

fn sqs(payload: Value) -> Result<Value, Diagnostic> {
    let event: SqsEvent =
        serde_json::from_value(payload).map_err(|e| diagnostic("BadEvent", &e.to_string()))?;
    let record_file = std::env::var("TEST_LAMBDA_RECORD_FILE").ok();
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let body = record.body.clone().unwrap_or_default();
        if let Some(file) = &record_file {
            let line = json!({
                "messageId": record.message_id,
                "body": body,
                "receiveCount": record.attributes.get("ApproximateReceiveCount"),
                "transactionId": record
                    .message_attributes
                    .get("transaction_id")
                    .and_then(|a| a.string_value.clone()),
                "eventSource": record.event_source,
                "eventSourceArn": record.event_source_arn,
                "awsRegion": record.aws_region,
                "batchSize": event.records.len(),
            });
            append_line(file, &line)?;
        }
        if body.contains("fail") {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    serde_json::to_value(response).map_err(|e| diagnostic("BadResponse", &e.to_string()))
}

fn append_line(file: &str, value: &Value) -> Result<(), Diagnostic> {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| diagnostic("Io", &e.to_string()))?;
    writeln!(out, "{value}").map_err(|e| diagnostic("Io", &e.to_string()))
}

fn diagnostic(error_type: &str, message: &str) -> Diagnostic {
    Diagnostic {
        error_type: error_type.to_owned(),
        error_message: message.to_owned(),
    }
}
