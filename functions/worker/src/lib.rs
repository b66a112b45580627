//! The SQS worker of the `sqs` pattern: each message names one saga (`{"transaction_id",
//! "request"}`, `sagaform_contract::message`) and the worker advances it as far as it goes in this delivery,
//! answering with a partial batch response (`ReportBatchItemFailures`) that names only the
//! messages to deliver again.
//!
//! A record fails (and so comes back, and after `maxReceiveCount` receives lands in the DLQ)
//! when its body is malformed, when a step failed in a way a later delivery may fix, when another
//! delivery of the same saga is in progress, when the invocation is about to run out of time, or
//! when its saga ended COMPENSATION_FAILED or IN_DOUBT (it needs a human, and the DLQ is where
//! operations look). It succeeds (and is deleted) once its saga is COMPLETED or COMPENSATED.
//!
//! A failed record comes back when its retry is due, not after the queue's whole visibility
//! timeout (which must cover six worker timeouts, minutes): the worker sets each failed
//! message's visibility to the backoff of the step's retry policy for this delivery (at least
//! what a `Retry-After` asked for), or to zero when waiting cannot help (a malformed message, a
//! saga needing a human: they reach the DLQ in seconds) or the record was not started for lack
//! of time. A record another delivery is working on keeps the queue's timeout, by which the
//! other delivery has surely ended. So a saga retries on the same schedule in every pattern.
//!
//! Records are processed concurrently, because a saga spends its time waiting on SaaS calls and
//! one slow saga should not hold the others back; records of one FIFO message group are processed
//! in order, and once one of them fails the later ones are reported failed unprocessed, which is
//! what keeps a FIFO group in order. A duplicate delivery running at the same time as the first
//! (standard queues deliver at least once) is stopped by a per-transaction idempotency claim
//! rather than running the saga twice.

mod message;
mod redelivery;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use sagaform_contract::env as vars;
use sagaform_runtime::deadline::instant_before;
use sagaform_runtime::errors::{EngineError, ErrorClass, IdempotencyError};
use sagaform_runtime::idempotency::{DEFAULT_EXPIRY, Idempotency};
use sagaform_runtime::setup::{SetupError, store_and_client_from_env};
use sagaform_runtime::store::{ClaimOutcome, IdempotencyCompletion};
use sagaform_runtime::{ConfiguredStore, Engine, IdempotencyStore, SagaRecord, SagaStatus};
use sagaform_saas_client::SaasClient;
use sagaform_saga::PURCHASE;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, Span, error, field, info, info_span, warn};

pub use redelivery::Redelivery;

use message::parse_message;
use redelivery::{engine_redelivery, store_redelivery};

/// Prefix of the worker's keys in the idempotency table, which the API shares.
const KEY_PREFIX: &str = "worker:";

/// The SQS system attribute counting receives of a message.
const RECEIVE_COUNT_ATTRIBUTE: &str = "ApproximateReceiveCount";

/// The SQS system attribute naming a FIFO message's group.
const GROUP_ATTRIBUTE: &str = "MessageGroupId";

/// Limits and margins of the worker; the defaults suit the deployed function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Sagas advanced at the same time within one batch.
    pub concurrency: usize,
    /// Time kept at the end of the invocation to store outcomes and answer.
    pub deadline_margin: Duration,
    /// A record is not started with less time than this left: the longest single step call, so
    /// a started step can finish.
    pub min_time_to_start: Duration,
    /// How long a finished transaction's key is remembered (to drop late duplicates cheaply).
    pub idempotency_expiry: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 10,
            deadline_margin: Duration::from_millis(500),
            min_time_to_start: PURCHASE
                .steps
                .iter()
                .map(|s| s.timeout)
                .max()
                .unwrap_or_default(),
            idempotency_expiry: DEFAULT_EXPIRY,
        }
    }
}

/// The worker's configuration or clients cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The state store or the SaaS services.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A required environment variable is not set.
    #[error("environment variable {0} is not set; the stack's template sets it")]
    MissingVariable(&'static str),
}

/// The queue the worker consumes, through which it schedules the redelivery of failed messages.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    /// An SQS client.
    pub client: aws_sdk_sqs::Client,
    /// The URL of the queue the records come from (`SAGAFORM_QUEUE_URL`).
    pub url: String,
}

/// A batch failed as a whole: a record that must be delivered again has no message id to name
/// it by, so only failing the invocation brings it back (the others come back too, harmlessly:
/// every record is idempotent).
#[derive(Debug, thiserror::Error)]
#[error(
    "{failed} failed record(s) have no message id; failing the whole batch so they are delivered again"
)]
pub struct BatchError {
    /// Failed records without an id.
    pub failed: usize,
}

impl From<BatchError> for lambda_runtime::Diagnostic {
    fn from(error: BatchError) -> Self {
        sagaform_runtime::errors::diagnostic(ErrorClass::Retryable, &error)
    }
}

/// Why a record is reported failed (logged, and used by tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The body is not a saga message; it fails until it reaches the DLQ.
    Malformed(String),
    /// Another delivery of the same saga holds its claim.
    InProgress,
    /// Too little time left to start it.
    DeadlineNear,
    /// An earlier record of its FIFO group failed.
    GroupBlocked,
    /// Advancing the saga failed; `retryable` says whether a later delivery may succeed.
    Saga {
        /// What failed.
        reason: String,
        /// The classification.
        retryable: bool,
    },
    /// The saga is COMPENSATION_FAILED or IN_DOUBT: it needs a human.
    NeedsHuman(SagaStatus),
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The saga is finished (COMPLETED or COMPENSATED): delete the message.
    Done(SagaStatus),
    /// Deliver the message again.
    Failed(Failure),
}

/// The worker function.
#[derive(Debug, Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Engine<ConfiguredStore, SaasClient>,
    settings: WorkerSettings,
    queue: Option<WorkQueue>,
}

/// One record's result inside the worker.
struct RecordResult {
    index: usize,
    message_id: Option<String>,
    receipt_handle: Option<String>,
    outcome: Outcome,
    redelivery: Redelivery,
}

impl Worker {
    /// A worker advancing [`PURCHASE`] sagas in `store` against `client`'s services. With
    /// `queue`, failed messages come back when their retry is due; without, after the queue's
    /// visibility timeout.
    pub fn new(
        store: ConfiguredStore,
        client: SaasClient,
        settings: WorkerSettings,
        queue: Option<WorkQueue>,
    ) -> Worker {
        Worker {
            inner: Arc::new(Inner {
                engine: Engine::new(PURCHASE, store, client),
                settings,
                queue,
            }),
        }
    }

    /// Reads the configuration from the process environment and opens the store and clients.
    pub async fn from_env() -> Result<Worker, ConfigError> {
        let (store, client) = store_and_client_from_env(&PURCHASE).await?;
        let url = std::env::var(vars::QUEUE_URL)
            .ok()
            .filter(|url| !url.is_empty())
            .ok_or(ConfigError::MissingVariable(vars::QUEUE_URL))?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let queue = WorkQueue {
            client: aws_sdk_sqs::Client::new(&aws),
            url,
        };
        Ok(Worker::new(
            store,
            client,
            WorkerSettings::default(),
            Some(queue),
        ))
    }

    /// The Lambda handler: the ids of the messages to deliver again.
    pub async fn handle(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, BatchError> {
        let outcomes = self.process(event).await;
        let mut response = SqsBatchResponse::default();
        let mut unnamed = 0;
        for (message_id, outcome) in outcomes {
            if let Outcome::Failed(_) = outcome {
                match message_id {
                    Some(id) => {
                        let mut failure = BatchItemFailure::default();
                        failure.item_identifier = id;
                        response.batch_item_failures.push(failure);
                    }
                    None => unnamed += 1,
                }
            }
        }
        if unnamed > 0 {
            error!(
                failed = unnamed,
                "failed records without a message id: failing the whole batch"
            );
            return Err(BatchError { failed: unnamed });
        }
        Ok(response)
    }

    /// Every record's outcome, in the order of the batch, with its message id (`None` when
    /// missing or empty). Failed messages are scheduled for redelivery before this returns.
    pub async fn process(&self, event: LambdaEvent<SqsEvent>) -> Vec<(Option<String>, Outcome)> {
        let deadline = event.context.deadline();
        let results = self.process_records(event).await;
        self.schedule_redelivery(&results, deadline).await;
        results
            .into_iter()
            .map(|result| (result.message_id, result.outcome))
            .collect()
    }

    async fn process_records(&self, event: LambdaEvent<SqsEvent>) -> Vec<RecordResult> {
        let (event, context) = event.into_parts();
        let deadline = context.deadline();
        let request_id = context.request_id;
        let count = event.records.len();
        let mut groups: Vec<Vec<(usize, SqsMessage)>> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::new();
        for (index, record) in event.records.into_iter().enumerate() {
            match record.attributes.get(GROUP_ATTRIBUTE) {
                Some(group) => {
                    let slot = *group_of.entry(group.clone()).or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[slot].push((index, record));
                }
                None => groups.push(vec![(index, record)]),
            }
        }
        let permits = Arc::new(Semaphore::new(self.inner.settings.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for group in groups {
            let worker = self.clone();
            let permits = permits.clone();
            let request_id = request_id.clone();
            tasks.spawn(
                async move {
                    // The semaphore is never closed, so acquiring cannot fail.
                    let _permit = permits.acquire_owned().await.ok();
                    worker.process_group(group, &request_id, deadline).await
                }
                .in_current_span(),
            );
        }
        let mut slots: Vec<Option<RecordResult>> = (0..count).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(results) => {
                    for result in results {
                        let index = result.index;
                        slots[index] = Some(result);
                    }
                }
                // A panicking record leaves its slots empty; they are reported failed below.
                Err(e) => error!(error = %e, "a record's processing panicked"),
            }
        }
        slots
            .into_iter()
            .enumerate()
            .map(|(index, slot)| {
                slot.unwrap_or(RecordResult {
                    index,
                    message_id: None,
                    receipt_handle: None,
                    outcome: Outcome::Failed(Failure::Saga {
                        reason: "panicked".into(),
                        retryable: true,
                    }),
                    redelivery: Redelivery::AfterVisibilityTimeout,
                })
            })
            .collect()
    }

    async fn process_group(
        &self,
        group: Vec<(usize, SqsMessage)>,
        request_id: &str,
        deadline: SystemTime,
    ) -> Vec<RecordResult> {
        let mut results = Vec::with_capacity(group.len());
        // Once a record of a FIFO group fails, the later ones come back with it, in order.
        let mut blocked_by: Option<Redelivery> = None;
        for (index, record) in group {
            let message_id = record.message_id.clone().filter(|id| !id.is_empty());
            let span = info_span!(
                "record",
                requestId = %request_id,
                message_id = message_id.as_deref().unwrap_or_default(),
                transaction_id = field::Empty,
            );
            let (outcome, redelivery) = match blocked_by {
                Some(redelivery) => (Outcome::Failed(Failure::GroupBlocked), redelivery),
                None => {
                    self.process_record(&record, deadline)
                        .instrument(span.clone())
                        .await
                }
            };
            span.in_scope(|| log_outcome(&outcome, redelivery));
            if matches!(outcome, Outcome::Failed(_)) && blocked_by.is_none() {
                blocked_by = Some(redelivery);
            }
            results.push(RecordResult {
                index,
                message_id,
                receipt_handle: record.receipt_handle.clone().filter(|h| !h.is_empty()),
                outcome,
                redelivery,
            });
        }
        results
    }

    /// Advances the saga of one record as far as this delivery goes: parse, check the time
    /// left, claim the transaction, advance, then store or release the claim by the outcome.
    async fn process_record(&self, record: &SqsMessage, deadline: SystemTime) -> Verdict {
        let message = match parse_message(record) {
            Ok(message) => message,
            Err(reason) => {
                return (Outcome::Failed(Failure::Malformed(reason)), Redelivery::NOW);
            }
        };
        let transaction_id = message.transaction_id.as_str();
        Span::current().record("transaction_id", transaction_id);
        if !self.time_to_start(deadline) {
            return (Outcome::Failed(Failure::DeadlineNear), Redelivery::NOW);
        }
        let delivery = receive_count(record);
        let key = format!("{KEY_PREFIX}{transaction_id}");
        let payload = message.to_json();
        let idempotency = Idempotency::new(
            self.inner.engine.store(),
            self.inner.settings.idempotency_expiry,
        );
        if let Err(verdict) = claim(&idempotency, &key, &payload, deadline, delivery).await {
            return verdict;
        }
        let run_until = instant_before(deadline, self.inner.settings.deadline_margin);
        let advanced = self.inner.engine.advance(transaction_id, run_until).await;
        self.settle(advanced, &idempotency, &key, delivery).await
    }

    /// Whether enough of the invocation is left to start a record: a started step must be able
    /// to finish, and the outcomes must still be stored and answered after it.
    fn time_to_start(&self, deadline: SystemTime) -> bool {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        left >= self.inner.settings.min_time_to_start + self.inner.settings.deadline_margin
    }

    /// Turns the advanced saga into the record's verdict. A finished saga's key is stored as
    /// completed, so a late duplicate is dropped cheaply; otherwise the claim is released, so
    /// the next delivery can advance the saga at once.
    async fn settle(
        &self,
        advanced: Result<SagaRecord, EngineError>,
        idempotency: &Idempotency<&ConfiguredStore>,
        key: &str,
        delivery: u32,
    ) -> Verdict {
        let store = self.inner.engine.store();
        match advanced {
            Ok(saga) if matches!(saga.status, SagaStatus::Completed | SagaStatus::Compensated) => {
                remember_finished(store, key, saga.status, idempotency).await;
                (
                    Outcome::Done(saga.status),
                    Redelivery::AfterVisibilityTimeout,
                )
            }
            Ok(saga) => {
                release(store, key).await;
                if saga.status.needs_a_human() {
                    (
                        Outcome::Failed(Failure::NeedsHuman(saga.status)),
                        Redelivery::NOW,
                    )
                } else {
                    (
                        Outcome::Failed(Failure::Saga {
                            reason: format!("saga left {}", saga.status),
                            retryable: true,
                        }),
                        Redelivery::NOW,
                    )
                }
            }
            Err(e) => {
                release(store, key).await;
                let redelivery = engine_redelivery(&e, delivery);
                (
                    Outcome::Failed(Failure::Saga {
                        reason: e.to_string(),
                        retryable: e.class() == ErrorClass::Retryable,
                    }),
                    redelivery,
                )
            }
        }
    }
}

/// What becomes of a record: its outcome, and when a failed one is delivered again.
type Verdict = (Outcome, Redelivery);

/// The 1-based receive count of `record`, which says how many of its step's retries are used.
fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get(RECEIVE_COUNT_ATTRIBUTE)
        .and_then(|count| count.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

/// Claims the transaction for this delivery, so a duplicate delivery running at the same time
/// does not run the saga twice. `Err` carries the verdict when the record must not go on: the
/// saga already finished, another delivery holds it, or the claim could not be made.
async fn claim(
    idempotency: &Idempotency<&ConfiguredStore>,
    key: &str,
    payload: &Value,
    deadline: SystemTime,
    delivery: u32,
) -> Result<(), Verdict> {
    match idempotency.claim(key, payload, deadline).await {
        Ok(ClaimOutcome::Claimed) => Ok(()),
        Ok(ClaimOutcome::Completed(stored)) => {
            let status = stored
                .get("status")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            info!("duplicate delivery of a finished saga");
            Err((
                Outcome::Done(status.unwrap_or(SagaStatus::Completed)),
                Redelivery::AfterVisibilityTimeout,
            ))
        }
        Err(IdempotencyError::InProgress(_)) => Err((
            Outcome::Failed(Failure::InProgress),
            Redelivery::AfterVisibilityTimeout,
        )),
        Err(IdempotencyError::PayloadMismatch(_)) => Err((
            Outcome::Failed(Failure::Malformed(
                "another message for this transaction carried a different request".to_owned(),
            )),
            Redelivery::NOW,
        )),
        Err(IdempotencyError::Store(e)) => {
            let retryable = e.class() == ErrorClass::Retryable;
            Err((
                Outcome::Failed(Failure::Saga {
                    reason: e.to_string(),
                    retryable,
                }),
                store_redelivery(retryable, delivery),
            ))
        }
    }
}

/// Stores the finished saga's status under its key, so a late duplicate is dropped without
/// reading the saga.
async fn remember_finished(
    store: &ConfiguredStore,
    key: &str,
    status: SagaStatus,
    idempotency: &Idempotency<&ConfiguredStore>,
) {
    let completion = IdempotencyCompletion {
        key,
        response: &json!({"status": status.as_str()}),
        expiration: idempotency.expiration(),
    };
    if let Err(e) = store.complete(&completion).await {
        // The saga is finished either way; a duplicate finds that out from its state.
        warn!(error = %e, "could not record the finished saga's idempotency key");
    }
}

/// Forgets the claim so the next delivery can advance the saga at once.
async fn release(store: &ConfiguredStore, key: &str) {
    if let Err(e) = store.release(key).await {
        warn!(error = %e, "could not release the claim; the next delivery waits for it to expire");
    }
}

fn log_outcome(outcome: &Outcome, redelivery: Redelivery) {
    if let (Outcome::Failed(_), Redelivery::After(delay)) = (outcome, redelivery) {
        info!(
            redelivery_in_seconds = delay.as_secs(),
            "message scheduled for redelivery"
        );
    }
    match outcome {
        Outcome::Done(status) => info!(status = %status, "message done"),
        Outcome::Failed(Failure::Malformed(reason)) => {
            error!(reason = %reason, "malformed message: it fails on every delivery until it reaches the dead-letter queue");
        }
        Outcome::Failed(Failure::InProgress) => {
            warn!("another delivery of this saga is in progress; delivered again later");
        }
        Outcome::Failed(Failure::DeadlineNear) => {
            warn!("too little time left to start; delivered again later")
        }
        Outcome::Failed(Failure::GroupBlocked) => {
            warn!("an earlier message of its group failed; delivered again later")
        }
        Outcome::Failed(Failure::Saga {
            reason,
            retryable: true,
        }) => {
            warn!(reason = %reason, "saga not finished; delivered again later");
        }
        Outcome::Failed(Failure::Saga {
            reason,
            retryable: false,
        }) => {
            error!(reason = %reason, "saga cannot advance: the message goes to the dead-letter queue after its last receive");
        }
        Outcome::Failed(Failure::NeedsHuman(status)) => {
            error!(
                status = %status,
                "saga {status}: needs a human; the message goes to the dead-letter queue"
            );
        }
    }
}
