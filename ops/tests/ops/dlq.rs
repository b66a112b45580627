//! `dlq list | redrive | purge` against SQS and Lambda on moto: queues made directly with a
//! RedrivePolicy (no stack needed), messages put straight into the DLQ.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use sagaform_deploy::Refusal;
use sagaform_deploy::confirm::{AssumeYes, Confirm, ConfirmAnswer, Expect, NoTerminal};
use sagaform_ops::dlq::{self, DeadLetterQueue, Dlq, PurgeGuard, Redrive, RedriveMode};
use sagaform_ops::{OpsError, OpsRefusal, RedriveOptions};
use sagaform_testkit::{QueuePair, aws_config, moto, sqs_client};
use serde_json::{Value, json};

/// The DLQ of a queue pair, redriven to its work queue, on the emulator.
pub(crate) fn sqs_dlq(pair: &QueuePair) -> Dlq {
    Dlq::new(
        &aws_config(),
        DeadLetterQueue {
            url: pair.dlq_url.clone(),
            arn: None,
            redrive: Redrive::ToWorkQueue {
                work_queue_url: pair.url.clone(),
            },
        },
        true,
    )
}

/// Puts `count` dead-lettered purchases on the DLQ, as the worker's queue would have moved them;
/// returns their transaction ids.
async fn dead_letter(pair: &QueuePair, count: usize) -> Vec<String> {
    let sqs = sqs_client();
    let mut ids = Vec::new();
    for index in 0..count {
        let transaction_id = uuid::Uuid::now_v7().to_string();
        sqs.send_message()
            .queue_url(&pair.dlq_url)
            .message_body(
                json!({"transaction_id": transaction_id, "request": {"item_id": format!("item-{index}"), "quantity": 1}})
                    .to_string(),
            )
            .message_attributes(
                "transaction_id",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(&transaction_id)
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "attempt",
                MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value(index.to_string())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("send to the DLQ");
        ids.push(transaction_id);
    }
    ids
}

/// Drains a queue (deleting), returning body and string attributes of every message.
async fn drain(queue_url: &str) -> Vec<(Value, BTreeMap<String, (String, String)>)> {
    let sqs = sqs_client();
    let mut found = Vec::new();
    loop {
        let messages = QueuePair::receive(queue_url).await;
        if messages.is_empty() {
            return found;
        }
        for message in messages {
            let body = serde_json::from_str(message.body().unwrap()).unwrap();
            let attributes = message
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        (
                            v.data_type().to_owned(),
                            v.string_value().unwrap_or("").to_owned(),
                        ),
                    )
                })
                .collect();
            found.push((body, attributes));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn visible(queue_url: &str) -> u64 {
    let attributes = sqs_client()
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn listing_shows_each_message_with_its_transaction_and_leaves_it_on_the_queue() {
    let pair = QueuePair::create(3).await;
    let mut ids = dead_letter(&pair, 12).await;
    let dlq = sqs_dlq(&pair);

    let listing = dlq.list(None).await.expect("list");

    let mut listed: Vec<String> = listing
        .messages
        .iter()
        .map(|m| m.transaction_id.clone().expect("a transaction id"))
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
    assert!(!listing.truncated);
    let first = &listing.messages[0];
    assert_eq!(first.receive_count, Some(0), "{first:?}");
    assert!(first.age_seconds.is_some_and(|age| age >= 0), "{first:?}");
    assert!(first.sent_at.is_some(), "{first:?}");
    assert!(
        first
            .body_summary
            .contains(first.transaction_id.as_deref().unwrap()),
        "{first:?}"
    );
    assert_eq!(
        first.attributes.get("transaction_id"),
        first.transaction_id.as_ref()
    );
    // Released at once: all visible again, and a second listing sees them counted once more.
    assert_eq!(visible(&pair.dlq_url).await, 12);
    let again = dlq.list(None).await.expect("list again");
    assert_eq!(again.messages.len(), 12);
    assert!(again.messages.iter().all(|m| m.receive_count == Some(1)));
    let text = dlq::render_listing(&again);
    assert!(text.contains(&ids[0]), "{text}");

    let limited = dlq.list(Some(5)).await.expect("list five");
    assert_eq!(limited.messages.len(), 5);
    assert!(limited.truncated);
    assert_eq!(visible(&pair.dlq_url).await, 12);
}

#[tokio::test]
async fn redrive_moves_every_message_to_the_work_queue_with_body_and_attributes_intact() {
    let pair = QueuePair::create(3).await;
    let ids = dead_letter(&pair, 13).await;
    let before = drain_copy(&pair.dlq_url).await;
    let dlq = sqs_dlq(&pair);
    let notes = Mutex::new(Vec::new());

    let report = dlq
        .redrive(&RedriveOptions::default(), &|line: &str| {
            notes.lock().unwrap().push(line.to_owned())
        })
        .await
        .expect("redrive");

    // moto lacks StartMessageMoveTask: the emulator fallback moved them.
    assert_eq!(report.mode, RedriveMode::ClientSideMove);
    assert!(
        report
            .note
            .as_deref()
            .is_some_and(|n| n.contains("StartMessageMoveTask")),
        "{report:?}"
    );
    assert_eq!(report.moved, 13);
    assert_eq!(visible(&pair.dlq_url).await, 0);
    assert!(QueuePair::receive(&pair.dlq_url).await.is_empty());
    let mut moved = drain(&pair.url).await;
    let mut before = before;
    moved.sort_by_key(|a| a.0.to_string());
    before.sort_by_key(|a| a.0.to_string());
    assert_eq!(moved, before, "bodies and attributes arrive unchanged");
    let mut redriven = report.transaction_ids.clone();
    redriven.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(redriven, ids);
}

/// Body and attributes of every message on a queue, leaving them there.
async fn drain_copy(queue_url: &str) -> Vec<(Value, BTreeMap<String, (String, String)>)> {
    let sqs = sqs_client();
    let mut found = Vec::new();
    let mut receipts = Vec::new();
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            found.push((
                serde_json::from_str(message.body().unwrap()).unwrap(),
                message
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            (
                                v.data_type().to_owned(),
                                v.string_value().unwrap_or("").to_owned(),
                            ),
                        )
                    })
                    .collect(),
            ));
            receipts.push(message.receipt_handle().unwrap().to_owned());
        }
    }
    for receipt in receipts {
        sqs.change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    found
}

#[tokio::test]
async fn redrive_with_max_moves_only_that_many_and_leaves_the_rest() {
    let pair = QueuePair::create(3).await;
    dead_letter(&pair, 5).await;
    let dlq = sqs_dlq(&pair);
    let options = RedriveOptions {
        max: Some(2),
        ..RedriveOptions::default()
    };

    let report = dlq.redrive(&options, &|_: &str| {}).await.expect("redrive");

    assert_eq!(report.moved, 2);
    assert_eq!(drain(&pair.url).await.len(), 2);
    assert_eq!(visible(&pair.dlq_url).await, 3);
}

#[tokio::test]
async fn a_send_failure_deletes_nothing_from_the_dlq() {
    let pair = QueuePair::create(3).await;
    let ids = dead_letter(&pair, 4).await;
    sqs_client()
        .delete_queue()
        .queue_url(&pair.url)
        .send()
        .await
        .expect("delete the work queue");
    let dlq = sqs_dlq(&pair);
    let options = RedriveOptions {
        method: sagaform_ops::dlq::RedriveMethod::ClientSide,
        ..RedriveOptions::default()
    };

    let error = dlq.redrive(&options, &|_: &str| {}).await.unwrap_err();

    assert!(
        matches!(error, OpsError::RedriveStopped { moved: 0, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("stay on the DLQ"), "{error}");
    // Released at once, none deleted.
    assert_eq!(visible(&pair.dlq_url).await, 4);
    let listing = dlq.list(None).await.unwrap();
    let mut listed: Vec<String> = listing
        .messages
        .into_iter()
        .filter_map(|m| m.transaction_id)
        .collect();
    listed.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(listed, ids);
}

#[tokio::test]
async fn purge_empties_the_dlq_once_the_queue_name_is_typed() {
    let pair = QueuePair::create(3).await;
    dead_letter(&pair, 3).await;
    let dlq = sqs_dlq(&pair);
    let typist = TypesQueueName::default();

    let report = dlq
        .purge(&PurgeGuard {
            env_name: "staging",
            production: false,
            force_prod: false,
            confirm: &typist,
        })
        .await
        .expect("purge");

    assert_eq!(report.approximate_purged, 3);
    assert_eq!(
        typist.asked.lock().unwrap().as_slice(),
        [dlq.queue().name().to_owned()]
    );
    assert_eq!(visible(&pair.dlq_url).await, 0);
    assert!(QueuePair::receive(&pair.dlq_url).await.is_empty());
}

#[tokio::test]
async fn purge_is_refused_on_production_without_force_prod_and_without_a_confirmation() {
    let pair = QueuePair::create(3).await;
    dead_letter(&pair, 2).await;
    let dlq = sqs_dlq(&pair);

    let production = dlq
        .purge(&PurgeGuard {
            env_name: "prod",
            production: true,
            force_prod: false,
            confirm: &AssumeYes,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            production,
            OpsError::Refused(OpsRefusal::ProductionProtected { .. })
        ),
        "{production}"
    );
    assert_eq!(production.exit_code(), sagaform_ops::EXIT_REFUSED);

    let no_terminal = dlq
        .purge(&PurgeGuard {
            env_name: "prod",
            production: true,
            force_prod: true,
            confirm: &NoTerminal,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            no_terminal,
            OpsError::Refused(OpsRefusal::Unconfirmed(Refusal::NeedsConfirmation { .. }))
        ),
        "{no_terminal}"
    );
    assert!(no_terminal.to_string().contains("--yes"));
    assert_eq!(visible(&pair.dlq_url).await, 2);
}

/// Answers every question by typing the expected text, and records it.
#[derive(Default)]
struct TypesQueueName {
    asked: Mutex<Vec<String>>,
}

impl Confirm for TypesQueueName {
    fn ask(&self, _question: &str, expect: &Expect) -> ConfirmAnswer {
        match expect {
            Expect::Exactly(text) => {
                self.asked.lock().unwrap().push(text.clone());
                ConfirmAnswer::Yes
            }
            Expect::YesNo => ConfirmAnswer::No,
        }
    }
}

/// An Invoke API standing in for sagaform-local: records each payload moto forwards to it.
async fn capturing_invoke_api(function_name: &str) -> Arc<Mutex<Vec<Value>>> {
    use axum::extract::State;
    let received = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(
                |State(received): State<Arc<Mutex<Vec<Value>>>>, body: axum::body::Bytes| async move {
                    received
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    ""
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let registration = json!({"sagaform": {"invoke_endpoint": format!("http://{address}"), "functions": [function_name]}});
    let moto_address = std::net::SocketAddr::from(([127, 0, 0, 1], moto().port()));
    let response = sagaform_tools::http::request(
        moto_address,
        "POST",
        "/moto-api/config",
        Some(&registration.to_string()),
        std::time::Duration::from_secs(10),
    )
    .expect("register the capturing Invoke API with moto");
    assert!(
        (200..300).contains(&response.status),
        "moto accepts the registration: {response:?}"
    );
    received
}

/// Creates a function named `name` on moto (through CloudFormation, which also creates its role).
async fn create_function(name: &str) {
    let template = json!({"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}},
        "Function": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": name, "Runtime": "provided.al2023", "Handler": "bootstrap", "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Code": {"ZipFile": "bootstrap"}}}
    }});
    aws_sdk_cloudformation::Client::new(&aws_config())
        .create_stack()
        .stack_name(name)
        .template_body(template.to_string())
        .send()
        .await
        .expect("create the function's stack");
}

/// Puts Lambda's record of a failed asynchronous resume on the queue (an OnFailure destination's
/// body); `None` gives a record whose payload names no saga.
async fn failed_resume(queue_url: &str, transaction_id: Option<&str>) {
    let payload = match transaction_id {
        Some(id) => json!({"resume": {"transaction_id": id}}),
        None => json!({"something": "else"}),
    };
    let record = json!({
        "version": "1.0",
        "requestContext": {"requestId": "r-1", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:x:$LATEST", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "Retryable", "errorMessage": "payments: 503"}
    });
    sqs_client()
        .send_message()
        .queue_url(queue_url)
        .message_body(record.to_string())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn orchestrator_redrive_resumes_each_saga_by_an_asynchronous_invoke_then_deletes_its_record()
{
    let function_name = format!("sagaform-ops-{}-api", uuid::Uuid::now_v7().simple());
    create_function(&function_name).await;
    let received = capturing_invoke_api(&function_name).await;
    let queue_url = sqs_client()
        .create_queue()
        .queue_name(format!("resume-{}", uuid::Uuid::now_v7().simple()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let first = uuid::Uuid::now_v7().to_string();
    let second = uuid::Uuid::now_v7().to_string();
    failed_resume(&queue_url, Some(&first)).await;
    failed_resume(&queue_url, Some(&second)).await;
    failed_resume(&queue_url, None).await;
    let dlq = Dlq::new(
        &aws_config(),
        DeadLetterQueue {
            url: queue_url.clone(),
            arn: None,
            redrive: Redrive::ResumeFunction {
                function_name: function_name.clone(),
            },
        },
        true,
    );

    let listing = dlq.list(None).await.unwrap();
    let with_error: Vec<_> = listing
        .messages
        .iter()
        .filter(|m| m.transaction_id.is_some())
        .map(|m| m.error.clone())
        .collect();
    assert_eq!(
        with_error,
        vec![Some("RetriesExhausted: payments: 503".to_owned()); 2]
    );

    let report = dlq
        .redrive(&RedriveOptions::default(), &|_: &str| {})
        .await
        .unwrap();

    assert_eq!(report.mode, RedriveMode::ResumeInvoke);
    assert_eq!(report.moved, 2);
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    let mut payloads = received.lock().unwrap().clone();
    payloads.sort_by_key(Value::to_string);
    let mut expected = vec![
        json!({"resume": {"transaction_id": first}}),
        json!({"resume": {"transaction_id": second}}),
    ];
    expected.sort_by_key(Value::to_string);
    assert_eq!(payloads, expected);
    // Only the record that names no saga is left.
    let left = QueuePair::receive(&queue_url).await;
    assert_eq!(left.len(), 1);
    assert!(left[0].body().unwrap().contains("something"));
    let attributes: HashMap<_, _> = left[0].attributes().cloned().unwrap_or_default();
    assert!(attributes.contains_key(&MessageSystemAttributeName::SentTimestamp));
}

#[tokio::test]
async fn orchestrator_redrive_to_an_unknown_function_deletes_nothing() {
    let function_name = format!("sagaform-ops-{}-api", uuid::Uuid::now_v7().simple());
    // Registered with the launcher but never created: Lambda answers ResourceNotFound.
    let received = capturing_invoke_api(&function_name).await;
    let queue_url = sqs_client()
        .create_queue()
        .queue_name(format!("resume-{}", uuid::Uuid::now_v7().simple()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    failed_resume(&queue_url, Some(&uuid::Uuid::now_v7().to_string())).await;
    let dlq = Dlq::new(
        &aws_config(),
        DeadLetterQueue {
            url: queue_url.clone(),
            arn: None,
            redrive: Redrive::ResumeFunction { function_name },
        },
        true,
    );

    let error = dlq
        .redrive(&RedriveOptions::default(), &|_: &str| {})
        .await
        .unwrap_err();

    assert!(
        matches!(error, OpsError::RedriveStopped { moved: 0, .. }),
        "{error}"
    );
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(visible(&queue_url).await, 1);
}
