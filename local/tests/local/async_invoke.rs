//! Asynchronous invocations (`InvocationType: Event`) through the Invoke API behave as on
//! Lambda: a failed run is retried up to the function's `MaximumRetryAttempts`, and the
//! invocation record of one that failed for good lands in its on-failure SQS queue on the
//! emulator; one that succeeds on a retry leaves nothing there.

use crate::common;

use std::path::Path;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use common::*;
use sagaform_local::{AsyncInvokeConfig, Functions, InvokeApi, LocalFunction, RuntimeSettings};
use sagaform_tools::Tools;
use sagaform_tools::moto::MotoServer;
use serde_json::{Value, json};

/// A function of the test binary whose asynchronous failures go to a fresh queue on `moto`;
/// returns it with the queue's URL.
async fn function_with_destination(
    moto: &MotoServer,
    name: &str,
    max_retries: u32,
    dir: &Path,
) -> (LocalFunction, String, aws_sdk_sqs::Client) {
    let sdk = sagaform_local::discovery::emulator_config(&moto.endpoint(), "us-east-1").await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{name}-on-failure"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut spec = spec(name, Duration::from_secs(5), 1);
    spec.asynchronous = AsyncInvokeConfig {
        max_retries,
        on_failure_queue_url: Some(queue_url.clone()),
        ..AsyncInvokeConfig::default()
    };
    let mut settings = RuntimeSettings::new("us-east-1", None, dir.join("logs"));
    // Lambda waits a minute, then two; the order and the count are what is tested here.
    settings.async_retry_delays = vec![Duration::from_millis(200)];
    settings.destinations = Some(sqs.clone());
    (LocalFunction::new(spec, settings).unwrap(), queue_url, sqs)
}

async fn invoke_event(api: &InvokeApi, function: &str, payload: &Value) {
    let config = sagaform_local::discovery::emulator_config(&api.url(), "us-east-1").await;
    let accepted = aws_sdk_lambda::Client::new(&config)
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status_code(), 202);
}

fn calls(counter_file: &Path) -> u64 {
    std::fs::read_to_string(counter_file)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_is_retried_then_its_record_lands_in_the_on_failure_queue() {
    let tools = Tools::ensure().expect("install pinned tools");
    let moto = MotoServer::start(&tools).expect("start moto");
    let dir = scratch("async-exhausted");
    let (function, queue_url, sqs) = function_with_destination(&moto, "resume-fn", 2, &dir).await;
    let api = InvokeApi::serve(Functions::new([function.clone()]), 0)
        .await
        .unwrap();
    let counter = dir.join("calls");
    let payload = json!({
        "resume": {"transaction_id": "tx-async"},
        "fail_times": 100,
        "counter_file": counter.display().to_string(),
        "error_type": "Retryable",
    });

    invoke_event(&api, "resume-fn", &payload).await;
    let started = std::time::Instant::now();
    let received = loop {
        let messages = sqs
            .receive_message()
            .queue_url(&queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if !messages.is_empty() {
            break messages;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no on-failure record after 20 s; the function ran {} time(s)",
            calls(&counter)
        );
    };

    assert_eq!(received.len(), 1);
    assert_eq!(calls(&counter), 3, "the first run and two retries");
    let record: Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(
        record["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:resume-fn:$LATEST"
    );
    assert_eq!(record["requestPayload"], payload);
    assert_eq!(record["responsePayload"]["errorType"], "Retryable");
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    function.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_succeeds_on_a_retry_leaves_no_record() {
    let tools = Tools::ensure().expect("install pinned tools");
    let moto = MotoServer::start(&tools).expect("start moto");
    let dir = scratch("async-retried");
    let (function, queue_url, sqs) = function_with_destination(&moto, "flaky-fn", 2, &dir).await;
    let api = InvokeApi::serve(Functions::new([function.clone()]), 0)
        .await
        .unwrap();
    let counter = dir.join("calls");

    invoke_event(
        &api,
        "flaky-fn",
        &json!({"fail_times": 1, "counter_file": counter.display().to_string(), "error_type": "Retryable"}),
    )
    .await;
    eventually(Duration::from_secs(20), "the retry", || async {
        calls(&counter) >= 2
    })
    .await;
    // Longer than a retry delay: a third run or a record would have happened by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls(&counter), 2);
    let messages = sqs
        .receive_message()
        .queue_url(&queue_url)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(messages.is_empty(), "{messages:?}");
    function.shutdown().await;
}
