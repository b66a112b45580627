//! The SQS event source mapping poller against moto: partial batch failures delete only the
//! succeeded records, failed ones come back after the visibility timeout and reach the DLQ after
//! maxReceiveCount receives; without ReportBatchItemFailures the answer is not read.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use common::*;
use sagaform_local::discovery::emulator_config;
use sagaform_local::event_source::{SqsMapping, spawn_pollers};
use sagaform_tools::Tools;
use sagaform_tools::moto::MotoServer;
use serde_json::Value;

struct Queues {
    client: Client,
    url: String,
    arn: String,
    dlq_url: String,
}

async fn queues(endpoint: &str, name: &str, visibility_seconds: u32) -> Queues {
    let client = Client::new(&emulator_config(endpoint, "us-east-1").await);
    let dlq_url = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = queue_arn(&client, &dlq_url).await;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"});
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_seconds.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = queue_arn(&client, &url).await;
    Queues {
        client,
        url,
        arn,
        dlq_url,
    }
}

async fn queue_arn(client: &Client, url: &str) -> String {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

/// Visible plus in-flight messages.
async fn messages_in(client: &Client, url: &str) -> u64 {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|name| attributes[name].parse::<u64>().unwrap())
    .sum()
}

async fn send(queues: &Queues, body: &str) {
    queues
        .client
        .send_message()
        .queue_url(&queues.url)
        .message_body(body)
        .message_attributes(
            "transaction_id",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(format!("tx-{body}"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn mapping(queues: &Queues, function: &str, report: bool) -> SqsMapping {
    SqsMapping {
        uuid: "test-mapping".to_owned(),
        queue_arn: queues.arn.clone(),
        queue_url: queues.url.clone(),
        function: function.to_owned(),
        batch_size: 10,
        // The records are all in the queue before polling starts, so one receive gets them.
        batching_window_seconds: 0,
        report_batch_item_failures: report,
        maximum_concurrency: Some(2),
        visibility_timeout_seconds: None,
        enabled: true,
    }
}

/// The records the test function saw, by body.
fn records(file: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut by_body: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        by_body
            .entry(record["body"].as_str().unwrap().to_owned())
            .or_default()
            .push(record);
    }
    by_body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_failure_deletes_only_succeeded_records_and_the_failed_one_reaches_the_dlq() {
    let tools = Tools::ensure().expect("install pinned tools");
    let moto = MotoServer::start(&tools).expect("start moto");
    // Long enough for an invocation to finish and delete its records before they would be
    // redelivered (Lambda's advice is six times the function timeout), short for the test.
    let queues = queues(&moto.endpoint(), "orders", 2).await;
    for body in ["ok-1", "fail-1", "ok-2"] {
        send(&queues, body).await;
    }
    let dir = scratch("sqs-partial");
    let record_file = dir.join("records.jsonl");
    // One process, so one poller: two pollers receiving at once may split the three records
    // between them, and then no batch holds a success next to the failure.
    let mut spec = spec("worker-fn", Duration::from_secs(5), 1);
    spec.environment.insert(
        "TEST_LAMBDA_RECORD_FILE".to_owned(),
        record_file.display().to_string(),
    );
    let worker = function(spec, &dir, Some(moto.endpoint()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let pollers = spawn_pollers(
        mapping(&queues, "worker-fn", true),
        queues.client.clone(),
        worker.clone(),
        "us-east-1".to_owned(),
        stopped,
    );
    assert_eq!(
        pollers.len(),
        1,
        "MaximumConcurrency 2 within a cap of 1 process"
    );

    eventually(
        Duration::from_secs(60),
        "the failing record moves to the DLQ",
        || async {
            messages_in(&queues.client, &queues.dlq_url).await == 1
                && messages_in(&queues.client, &queues.url).await == 0
        },
    )
    .await;
    let _ = stop.send(true);

    let seen = records(&record_file);
    for ok in ["ok-1", "ok-2"] {
        assert_eq!(
            seen[ok].len(),
            1,
            "{ok} is deleted after its first success: {seen:?}"
        );
    }
    let failing = &seen["fail-1"];
    let counts: Vec<&str> = failing
        .iter()
        .map(|r| r["receiveCount"].as_str().unwrap())
        .collect();
    assert_eq!(
        counts,
        ["1", "2"],
        "delivered maxReceiveCount times, then moved"
    );
    let first = &seen["ok-1"][0];
    assert_eq!(
        first["batchSize"], 3,
        "one batch held the successes and the failure"
    );
    assert_eq!(first["eventSource"], "aws:sqs");
    assert_eq!(first["eventSourceArn"], queues.arn.as_str());
    assert_eq!(first["awsRegion"], "us-east-1");
    assert_eq!(first["transactionId"], "tx-ok-1");

    let moved = queues
        .client
        .receive_message()
        .queue_url(&queues.dlq_url)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.messages()[0].body(), Some("fail-1"));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_report_batch_item_failures_a_successful_invocation_deletes_the_whole_batch() {
    let tools = Tools::ensure().expect("install pinned tools");
    let moto = MotoServer::start(&tools).expect("start moto");
    let queues = queues(&moto.endpoint(), "plain", 5).await;
    for body in ["ok-1", "fail-1"] {
        send(&queues, body).await;
    }
    let dir = scratch("sqs-plain");
    let record_file = dir.join("records.jsonl");
    let mut spec = spec("plain-worker-fn", Duration::from_secs(5), 1);
    spec.environment.insert(
        "TEST_LAMBDA_RECORD_FILE".to_owned(),
        record_file.display().to_string(),
    );
    let worker = function(spec, &dir, Some(moto.endpoint()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    spawn_pollers(
        mapping(&queues, "plain-worker-fn", false),
        queues.client.clone(),
        worker.clone(),
        "us-east-1".to_owned(),
        stopped,
    );
    eventually(Duration::from_secs(30), "the queue drains", || async {
        messages_in(&queues.client, &queues.url).await == 0
    })
    .await;
    let _ = stop.send(true);
    let seen = records(&record_file);
    assert_eq!(seen["ok-1"].len(), 1);
    assert_eq!(
        seen["fail-1"].len(),
        1,
        "its batchItemFailures entry is not read"
    );
    assert_eq!(messages_in(&queues.client, &queues.dlq_url).await, 0);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batching_window_gathers_records_that_arrive_after_the_first() {
    let tools = Tools::ensure().expect("install pinned tools");
    let moto = MotoServer::start(&tools).expect("start moto");
    let queues = queues(&moto.endpoint(), "windowed", 30).await;
    let dir = scratch("sqs-window");
    let record_file = dir.join("records.jsonl");
    let mut spec = spec("windowed-worker-fn", Duration::from_secs(5), 1);
    spec.environment.insert(
        "TEST_LAMBDA_RECORD_FILE".to_owned(),
        record_file.display().to_string(),
    );
    let worker = function(spec, &dir, Some(moto.endpoint()));
    let mut windowed = mapping(&queues, "windowed-worker-fn", true);
    windowed.batch_size = 2;
    windowed.batching_window_seconds = 20;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    spawn_pollers(
        windowed,
        queues.client.clone(),
        worker.clone(),
        "us-east-1".to_owned(),
        stopped,
    );
    send(&queues, "first").await;
    // The second record is sent only once the poller holds the first one, so a single receive
    // cannot return both: only the window can put them in one batch.
    eventually(
        Duration::from_secs(30),
        "the poller receives the first record",
        || async {
            let attributes = queues
                .client
                .get_queue_attributes()
                .queue_url(&queues.url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap();
            attributes[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible] == "1"
        },
    )
    .await;
    assert!(
        records(&record_file).is_empty(),
        "the window holds the invocation back"
    );
    send(&queues, "second").await;
    eventually(
        Duration::from_secs(30),
        "both records are processed",
        || async { messages_in(&queues.client, &queues.url).await == 0 },
    )
    .await;
    let _ = stop.send(true);
    let seen = records(&record_file);
    assert_eq!(seen["first"][0]["batchSize"], 2, "{seen:?}");
    assert_eq!(seen["second"][0]["batchSize"], 2, "{seen:?}");
    worker.shutdown().await;
}
