//! The sqs pattern assembled for tests: the real API (sqs dispatch) and worker handlers on a test
//! store, an SQS queue with a DLQ on moto, and the fake SaaS; plus a driver that plays Lambda's
//! event source mapping: receive a batch, invoke the worker, delete the records it did not
//! report failed, make the failed ones visible again at once (instead of waiting out the
//! visibility timeout), and repeat until the queue is empty.

use std::collections::HashSet;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_sdk_sqs::types::QueueAttributeName;
use sagaform_api::{Api, Dispatch};
use sagaform_fake_saas::FakeSaas;
use sagaform_saas_client::SaasClient;
use sagaform_testkit::{
    Backend, QueuePair, Reply, TestStore, event, fake_saas, sqs_client, sqs_event,
};
use sagaform_worker::{WorkQueue, Worker, WorkerSettings};
use serde_json::Value;

/// Time left in an ordinary worker invocation.
pub const INVOCATION_TIME: Duration = Duration::from_secs(60);

pub struct SqsPattern {
    pub store: TestStore,
    pub fake: FakeSaas,
    pub client: SaasClient,
    pub queues: QueuePair,
    pub api: Api,
    pub worker: Worker,
}

impl SqsPattern {
    pub async fn new(backend: Backend, max_receive_count: u32) -> SqsPattern {
        let store = TestStore::new(backend).await;
        let (fake, client) = fake_saas().await;
        let queues = QueuePair::create(max_receive_count).await;
        let api = Api::new(
            store.store().clone(),
            Dispatch::Queue {
                client: sqs_client(),
                queue_url: queues.url.clone(),
            },
        );
        // The driver below makes failed messages visible again itself.
        let worker = Worker::new(
            store.store().clone(),
            client.clone(),
            WorkerSettings::default(),
            None,
        );
        SqsPattern {
            store,
            fake,
            client,
            queues,
            api,
            worker,
        }
    }

    /// Another API instance (its own store connection) on the same queue.
    pub async fn another_api(&self) -> Api {
        Api::new(
            self.store.second_handle().await,
            Dispatch::Queue {
                client: sqs_client(),
                queue_url: self.queues.url.clone(),
            },
        )
    }

    /// Another worker instance (its own store connection).
    pub async fn another_worker(&self) -> Worker {
        Worker::new(
            self.store.second_handle().await,
            self.client.clone(),
            WorkerSettings::default(),
            None,
        )
    }

    /// A worker that schedules the redelivery of failed messages on the work queue, as the
    /// deployed function does.
    pub async fn scheduling_worker(&self) -> Worker {
        Worker::new(
            self.store.second_handle().await,
            self.client.clone(),
            WorkerSettings::default(),
            Some(WorkQueue {
                client: sqs_client(),
                url: self.queues.url.clone(),
            }),
        )
    }

    /// Sends a request to the API: status and JSON body.
    pub async fn call_api(&self, request: ApiGatewayV2httpRequest) -> (i64, Value, Option<String>) {
        call(&self.api, request).await
    }

    /// The messages in the work queue, visible or in flight (read from its attributes, which
    /// unlike a receive does not count as a delivery).
    pub async fn waiting(&self) -> usize {
        let attributes = sqs_client()
            .get_queue_attributes()
            .queue_url(&self.queues.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("read the queue's attributes")
            .attributes
            .unwrap_or_default();
        attributes
            .values()
            .map(|count| count.parse::<usize>().expect("a message count"))
            .sum()
    }

    /// Plays the event source mapping until the queue is empty (or `max_rounds` batches).
    pub async fn drain(&self, max_rounds: usize) -> Drained {
        drain(&self.worker, &self.queues.url, max_rounds).await
    }
}

pub async fn call(api: &Api, request: ApiGatewayV2httpRequest) -> (i64, Value, Option<String>) {
    Reply::new(api.handle(event(request, INVOCATION_TIME)).await).into_parts()
}

/// What the driver saw.
#[derive(Debug, Default)]
pub struct Drained {
    /// Worker invocations.
    pub invocations: usize,
    /// Every id the worker reported failed, per invocation.
    pub failures: Vec<Vec<String>>,
    /// Messages deleted after success.
    pub deleted: usize,
}

pub async fn drain(worker: &Worker, queue_url: &str, max_rounds: usize) -> Drained {
    let sqs = sqs_client();
    let mut drained = Drained::default();
    for _ in 0..max_rounds {
        let messages = QueuePair::receive(queue_url).await;
        if messages.is_empty() {
            return drained;
        }
        let response = worker
            .handle(event(sqs_event(&messages), INVOCATION_TIME))
            .await
            .expect("the batch is answered");
        drained.invocations += 1;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert!(
            failed.iter().all(|id| !id.is_empty()),
            "an empty id was reported"
        );
        let failed_set: HashSet<&String> = failed.iter().collect();
        for message in &messages {
            let id = message.message_id.clone().unwrap_or_default();
            let receipt = message.receipt_handle.clone().unwrap_or_default();
            if failed_set.contains(&id) {
                make_visible(queue_url, std::slice::from_ref(message)).await;
            } else {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .expect("delete");
                drained.deleted += 1;
            }
        }
        drained.failures.push(failed);
    }
    panic!("the queue was not drained in {max_rounds} batches: {drained:?}");
}

/// Makes received `messages` visible again at once, as their visibility timeout running out
/// would.
pub async fn make_visible(queue_url: &str, messages: &[aws_sdk_sqs::types::Message]) {
    for message in messages {
        sqs_client()
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
            .visibility_timeout(0)
            .send()
            .await
            .expect("make the message visible again");
    }
}

/// The messages waiting in a queue (received, then made visible again).
pub async fn peek(queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let messages = QueuePair::receive(queue_url).await;
    make_visible(queue_url, &messages).await;
    messages
}
