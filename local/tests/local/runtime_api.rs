//! The local Lambda Runtime API runs the real binary: invocations round-trip, errors keep their
//! type, timeouts and crashes kill and replace the process, busy functions scale out, and the
//! Invoke API answers like Lambda.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use common::*;
use sagaform_local::{Functions, InvokeApi, logs};
use serde_json::{Value, json};

#[tokio::test]
async fn an_invocation_round_trips_through_the_real_binary_with_lambda_environment() {
    let dir = scratch("round-trip");
    let mut spec = spec("echo-fn", Duration::from_secs(5), 2);
    spec.environment
        .insert("SAGAFORM_PATTERN".into(), "sqs".into());
    let function = function(spec, &dir, Some("http://127.0.0.1:1".into()));

    let answer = invoke_ok(
        &function,
        json!({"env": ["SAGAFORM_PATTERN", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_RUNTIME_API",
                       "AWS_ENDPOINT_URL", "AWS_LAMBDA_LOG_FORMAT", "AWS_REGION",
                       "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_ACCESS_KEY_ID", "HOME"]}),
    )
    .await;
    assert_eq!(answer["SAGAFORM_PATTERN"], "sqs");
    assert_eq!(answer["AWS_LAMBDA_FUNCTION_NAME"], "echo-fn");
    assert_eq!(answer["AWS_ENDPOINT_URL"], "http://127.0.0.1:1");
    assert_eq!(answer["AWS_LAMBDA_LOG_FORMAT"], "JSON");
    assert_eq!(answer["AWS_REGION"], "us-east-1");
    assert_eq!(answer["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(answer["AWS_ACCESS_KEY_ID"], "testing");
    // Nothing leaks from the supervisor's environment.
    assert_eq!(answer["HOME"], Value::Null);
    let runtime_api = answer["AWS_LAMBDA_RUNTIME_API"].as_str().unwrap();
    let port: u16 = runtime_api
        .strip_prefix("127.0.0.1:")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(function.processes()[0].runtime_api_port, port);

    let echoed = invoke_ok(&function, json!({"transaction_id": "tx-1", "n": 1})).await;
    assert_eq!(echoed["echo"]["n"], 1);
    assert!(!echoed["request_id"].as_str().unwrap().is_empty());
    // The function's own line, and the platform's report of that invocation, which names no
    // transaction but comes along by its request id.
    let lines = logs::read_logs(&dir.join("logs"), Some("tx-1")).unwrap();
    let own: Vec<_> = lines
        .iter()
        .filter(|l| l.entry["transaction_id"] == "tx-1")
        .collect();
    assert_eq!(own.len(), 1, "{lines:?}");
    assert_eq!(own[0].function, "echo-fn");
    assert_eq!(own[0].entry["requestId"], echoed["request_id"]);
    assert!(
        lines.iter().any(|l| l.entry["type"] == "platform.report"
            && l.entry["record"]["requestId"] == echoed["request_id"]
            && l.entry["record"]["status"] == "success"),
        "no platform.report for the invocation: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.entry["transaction_id"] == "tx-1"
            || l.entry["record"]["requestId"] == echoed["request_id"]),
        "lines of other invocations: {lines:?}"
    );
    function.shutdown().await;
}

#[tokio::test]
async fn a_function_error_keeps_its_error_type_and_message() {
    let dir = scratch("error-type");
    let function = function(spec("failing-fn", Duration::from_secs(5), 1), &dir, None);
    let (error_type, document) = invoke_err(
        &function,
        json!({"fail": {"error_type": "Retryable", "message": "inventory busy"}}),
    )
    .await;
    assert_eq!(error_type, "Retryable");
    assert_eq!(document["errorType"], "Retryable");
    assert_eq!(document["errorMessage"], "inventory busy");
    // The process survives a handled error and serves the next invocation.
    let pid_before = function.processes()[0].pid;
    let answer = invoke_ok(&function, json!({"n": 2})).await;
    assert_eq!(answer["pid"], pid_before);
    function.shutdown().await;
}

#[tokio::test]
async fn a_timeout_kills_the_process_and_answers_sandbox_timedout() {
    let dir = scratch("timeout");
    let function = function(spec("slow-fn", Duration::from_secs(1), 1), &dir, None);
    let warm = invoke_ok(&function, json!({"n": 0})).await;
    let first_pid = warm["pid"].as_u64().unwrap();

    let (error_type, document) = invoke_err(&function, json!({"sleep_ms": 60_000})).await;
    assert_eq!(error_type, "Sandbox.Timedout");
    let message = document["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("Task timed out after 1.00 seconds"),
        "{message}"
    );
    eventually(
        Duration::from_secs(5),
        "the timed-out process is killed",
        || async { !alive(first_pid) },
    )
    .await;

    let after = invoke_ok(&function, json!({"n": 1})).await;
    assert_ne!(
        after["pid"].as_u64().unwrap(),
        first_pid,
        "a fresh process serves next"
    );
    function.shutdown().await;
}

#[tokio::test]
async fn a_crash_fails_the_invocation_and_a_fresh_process_serves_the_next() {
    let dir = scratch("crash");
    let function = function(spec("crashing-fn", Duration::from_secs(5), 1), &dir, None);
    let (error_type, document) = invoke_err(&function, json!({"exit": 3})).await;
    assert_eq!(error_type, "Runtime.ExitError");
    assert!(
        document["errorMessage"]
            .as_str()
            .unwrap()
            .contains("exit status: 3"),
        "{document}"
    );
    invoke_ok(&function, json!({"n": 1})).await;
    function.shutdown().await;
}

#[tokio::test]
async fn a_missing_binary_fails_invocations_instead_of_hanging() {
    let dir = scratch("missing-binary");
    let mut spec = spec("broken-fn", Duration::from_secs(5), 1);
    spec.bootstrap = dir.join("no-such-bootstrap");
    let function = function(spec, &dir, None);
    let (error_type, document) = invoke_err(&function, json!({})).await;
    assert_eq!(error_type, "Runtime.Unknown");
    assert!(
        document["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no-such-bootstrap"),
        "{document}"
    );
}

#[tokio::test]
async fn busy_functions_start_more_processes_up_to_their_cap() {
    let dir = scratch("scale");
    let function = function(spec("busy-fn", Duration::from_secs(10), 2), &dir, None);
    let calls = (0..6).map(|_| {
        let function = function.clone();
        tokio::spawn(async move { invoke_ok(&function, json!({"sleep_ms": 300})).await })
    });
    let mut pids = HashSet::new();
    for call in calls {
        let answer = call.await.unwrap();
        pids.insert(answer["pid"].as_u64().unwrap());
    }
    assert_eq!(
        pids.len(),
        2,
        "six overlapping calls run on exactly the cap of 2 processes"
    );
    assert!(function.processes().len() <= 2);
    function.shutdown().await;
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived shutdown");
    }
}

#[tokio::test]
async fn the_invoke_api_answers_like_lambda_for_an_aws_sdk_client() {
    let dir = scratch("invoke-api");
    let function = function(spec("sdk-fn", Duration::from_secs(5), 1), &dir, None);
    let api = InvokeApi::serve(Functions::new([function.clone()]), 0)
        .await
        .unwrap();
    let config = sagaform_local::discovery::emulator_config(&api.url(), "us-east-1").await;
    let client = aws_sdk_lambda::Client::new(&config);

    let ok = client
        .invoke()
        .function_name("arn:aws:lambda:us-east-1:123456789012:function:sdk-fn")
        .payload(Blob::new(json!({"n": 7}).to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status_code(), 200);
    assert_eq!(ok.function_error(), None);
    let body: Value = serde_json::from_slice(ok.payload().unwrap().as_ref()).unwrap();
    assert_eq!(body["echo"]["n"], 7);

    let failed = client
        .invoke()
        .function_name("sdk-fn")
        .payload(Blob::new(
            json!({"fail": {"error_type": "Permanent", "message": "card declined"}}).to_string(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status_code(), 200);
    assert_eq!(failed.function_error(), Some("Unhandled"));
    let body: Value = serde_json::from_slice(failed.payload().unwrap().as_ref()).unwrap();
    assert_eq!(body["errorType"], "Permanent");
    assert_eq!(body["errorMessage"], "card declined");

    let missing = client
        .invoke()
        .function_name("nope")
        .send()
        .await
        .unwrap_err();
    let service_error = missing.into_service_error();
    assert!(
        service_error.is_resource_not_found_exception(),
        "{service_error:?}"
    );
    function.shutdown().await;
}

/// A bootstrap that never asks for work, so the test drives its Runtime API by hand.
fn silent_bootstrap(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("silent-bootstrap");
    std::fs::write(&path, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn an_init_error_fails_the_waiting_invocation_with_the_posted_error() {
    let dir = scratch("init-error");
    let mut spec = spec("init-fn", Duration::from_secs(5), 1);
    spec.bootstrap = silent_bootstrap(&dir);
    let function = function(spec, &dir, None);
    let invocation = {
        let function = function.clone();
        tokio::spawn(async move { invoke_err(&function, json!({})).await })
    };
    let mut port = 0;
    eventually(Duration::from_secs(5), "the process starts", || {
        port = function
            .processes()
            .first()
            .map_or(0, |p| p.runtime_api_port);
        async move { port != 0 }
    })
    .await;
    let posted = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/2018-06-01/runtime/init/error"
        ))
        .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
        .body(r#"{"errorType":"ConfigError","errorMessage":"SAGAFORM_STORE is missing"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let (error_type, document) = invocation.await.unwrap();
    assert_eq!(error_type, "ConfigError");
    assert_eq!(document["errorMessage"], "SAGAFORM_STORE is missing");
    eventually(
        Duration::from_secs(5),
        "the failed sandbox is discarded",
        || async { function.processes().is_empty() },
    )
    .await;
}

#[tokio::test]
async fn a_process_that_never_finishes_init_is_killed_after_the_init_timeout() {
    let dir = scratch("init-timeout");
    let mut spec = spec("stuck-fn", Duration::from_secs(5), 1);
    spec.bootstrap = silent_bootstrap(&dir);
    let mut settings = sagaform_local::RuntimeSettings::new("us-east-1", None, dir.join("logs"));
    settings.init_timeout = Duration::from_millis(500);
    let function = sagaform_local::LocalFunction::new(spec, settings).unwrap();
    let (error_type, document) = invoke_err(&function, json!({})).await;
    assert_eq!(error_type, "Sandbox.Timedout");
    assert!(
        document["errorMessage"].as_str().unwrap().contains("init"),
        "{document}"
    );
}
