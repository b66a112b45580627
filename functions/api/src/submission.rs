//! Recording a submitted saga: the idempotency claim on the `Idempotency-Key`, the atomic
//! write of the saga with the key's pointer to it, handing it over per pattern, and replaying the
//! first answer to a repeat of the same request.

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::Context;
use sagaform_runtime::errors::{IdempotencyError, StoreError};
use sagaform_runtime::idempotency::caller_scoped_key;
use sagaform_runtime::model::{epoch_millis, new_transaction_id, now_rfc3339};
use sagaform_runtime::store::{ClaimOutcome, IdempotencyCompletion};
use sagaform_runtime::{IdempotencyStore, SagaRecord, SagaStatus, SagaStore};
use sagaform_saga::{PURCHASE, RetryPolicy};
use serde_json::{Value, json};
use tracing::{Span, error, info, warn};

use crate::dispatch::Dispatch;
use crate::request::{caller, decode_body, idempotency_key, parse_purchase};
use crate::response::HttpResponse;
use crate::response::{REPLAYED_HEADER, accepted, error, finished_saga, status_url};
use crate::{Api, KEY_PREFIX, in_progress, refuse, store_failure};

/// What an idempotency key of the API points at once its saga is recorded.
pub(crate) struct KeyRecord {
    transaction_id: String,
    /// The deadline of the invocation that recorded the saga: after it, that invocation is gone.
    owner_deadline_ms: i64,
    /// The answer to replay (sqs, stepfunctions); the orchestrator's answer is the saga's final
    /// state, read again on every replay.
    answer: Option<HttpResponse>,
}

impl KeyRecord {
    pub(crate) fn to_value(&self) -> Value {
        json!({
            "transaction_id": self.transaction_id,
            "owner_deadline_ms": self.owner_deadline_ms,
            "answer": self.answer.as_ref().map(HttpResponse::to_stored),
        })
    }

    pub(crate) fn from_value(value: &Value) -> Option<KeyRecord> {
        let answer = match value.get("answer") {
            None | Some(Value::Null) => None,
            Some(stored) => Some(HttpResponse::from_stored(stored)?),
        };
        Some(KeyRecord {
            transaction_id: value.get("transaction_id")?.as_str()?.to_owned(),
            owner_deadline_ms: value.get("owner_deadline_ms")?.as_i64()?,
            answer,
        })
    }
}

/// How a failed hand-over is tried again before the saga is abandoned: twice, 100 then 200 ms
/// later (a short outage of the queue or Step Functions, well inside the API's answer budget).
const HAND_OVER_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 2,
    initial_delay: Duration::from_millis(100),
    backoff_rate: 2,
    max_delay: Duration::from_millis(200),
};

impl Api {
    /// `POST /transactions`.
    pub(crate) async fn create(
        &self,
        request: &ApiGatewayV2httpRequest,
        context: &Context,
        prefix: &str,
    ) -> HttpResponse {
        let arrived = Instant::now();
        let key = match idempotency_key(&request.headers) {
            Ok(key) => key,
            Err(e) => return refuse(&[e]),
        };
        let body = match decode_body(
            request.body.as_deref(),
            request.is_base64_encoded,
            self.settings.max_body_bytes,
        ) {
            Ok(body) => body,
            Err(e) => return refuse(&[e]),
        };
        let purchase = match parse_purchase(&body) {
            Ok(purchase) => purchase,
            Err(errors) => return refuse(&errors),
        };
        let payload = purchase.to_value();
        let deadline = context.deadline();
        let respond_by = self.respond_by(deadline, arrived);
        match key {
            None => {
                self.start(payload, None, deadline, respond_by, prefix)
                    .await
            }
            Some(key) => {
                // The key is the caller's own: another caller's same key is another request.
                let stored_key = caller_scoped_key(KEY_PREFIX, caller(request).as_deref(), &key);
                self.start_idempotent(&stored_key, payload, deadline, respond_by, prefix)
                    .await
            }
        }
    }

    /// Claims the client's key (as stored: scoped to its caller), then starts a saga, replays
    /// the first answer, or refuses.
    pub(crate) async fn start_idempotent(
        &self,
        stored_key: &str,
        payload: Value,
        deadline: SystemTime,
        respond_by: Instant,
        prefix: &str,
    ) -> HttpResponse {
        match self
            .idempotency()
            .claim(stored_key, &payload, deadline)
            .await
        {
            Ok(ClaimOutcome::Claimed) => {
                self.start(payload, Some(stored_key), deadline, respond_by, prefix)
                    .await
            }
            Ok(ClaimOutcome::Completed(stored)) => {
                self.replay(stored_key, &stored, deadline, respond_by, prefix)
                    .await
            }
            Err(IdempotencyError::InProgress(_)) => {
                info!("a request with this Idempotency-Key is in progress");
                in_progress(None, prefix)
            }
            Err(IdempotencyError::PayloadMismatch(_)) => {
                info!("Idempotency-Key reused with another body");
                error(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different body",
                )
            }
            Err(IdempotencyError::Store(e)) => store_failure(&e),
        }
    }

    /// Issues the `transaction_id`, records the saga (completing the claimed key in the same
    /// write), then runs or hands it over.
    pub(crate) async fn start(
        &self,
        payload: Value,
        key: Option<&str>,
        deadline: SystemTime,
        respond_by: Instant,
        prefix: &str,
    ) -> HttpResponse {
        let mut record = SagaRecord::new(&PURCHASE, new_transaction_id(), payload);
        let transaction_id = record.transaction_id.clone();
        Span::current().record("transaction_id", transaction_id.as_str());
        let url = status_url(prefix, &transaction_id);
        let answer = match self.dispatch {
            Dispatch::InRequest(_) => None,
            Dispatch::Queue { .. } | Dispatch::StateMachine { .. } => {
                Some(accepted(&transaction_id, &url))
            }
        };
        // What the key will point at: this saga, and the answer to replay.
        let pointer = key.map(|key| {
            let pointer = KeyRecord {
                transaction_id: transaction_id.clone(),
                owner_deadline_ms: epoch_millis(deadline),
                answer: answer.clone(),
            };
            (key, pointer.to_value())
        });
        let created = match &pointer {
            Some((key, pointer)) => {
                let completion = IdempotencyCompletion {
                    key,
                    response: pointer,
                    expiration: self.idempotency().expiration(),
                };
                self.store
                    .create_completing_idempotency(&record, &completion)
                    .await
            }
            None => self.store.create(&record).await,
        };
        match created {
            Ok(version) => record.version = version,
            Err(e) => return self.not_recorded(e, key, prefix).await,
        }
        info!(pattern = %self.pattern(), "saga recorded");
        match (&self.dispatch, answer) {
            (Dispatch::InRequest(engine), _) => {
                let outcome = self.run(engine, &transaction_id, respond_by, &url).await;
                self.answer_or_resume_later(outcome, &transaction_id, &url)
                    .await
            }
            (_, Some(answer)) => {
                let key = pointer.as_ref().map(|(key, pointer)| (*key, pointer));
                self.hand_over(&record, answer, key).await
            }
            // Only the orchestrator has no answer before running.
            (_, None) => error(500, "internal_error", "no answer for a handed-over saga"),
        }
    }

    /// The answer when the saga could not be recorded: its claimed key is freed for the
    /// client's retry (when the write landed after all the key is completed, and the release
    /// leaves it alone), unless the claim expired and another request took the key over.
    async fn not_recorded(&self, e: StoreError, key: Option<&str>, prefix: &str) -> HttpResponse {
        if let StoreError::IdempotencyNotInProgress(_) = e {
            return in_progress(None, prefix);
        }
        if let Some(key) = key
            && let Err(release_error) = self.store.release(key).await
        {
            warn!(error = %release_error, "could not release the idempotency key");
        }
        store_failure(&e)
    }

    /// Hands a recorded saga to the queue or state machine and answers `answer` (202).
    ///
    /// A hand-over that keeps failing is retried under [`HAND_OVER_RETRY`]; then the saga is
    /// abandoned (see [`Api::abandon`]) rather than left PENDING with nothing to run it, and the
    /// client is told to try again (503). `key` is the client's key with what it points at: it
    /// is forgotten with the abandoned saga, so a retry with it starts afresh.
    pub(crate) async fn hand_over(
        &self,
        record: &SagaRecord,
        answer: HttpResponse,
        key: Option<(&str, &Value)>,
    ) -> HttpResponse {
        let mut retry = 0;
        let failure = loop {
            match self.dispatch.hand_over(record).await {
                Ok(()) => return answer,
                Err(e) if retry >= HAND_OVER_RETRY.max_retries => break e,
                Err(e) => {
                    retry += 1;
                    warn!(error = %e, retry, "the saga could not be handed over; trying again");
                    tokio::time::sleep(HAND_OVER_RETRY.delay_before(retry)).await;
                }
            }
        };
        let url = answer.header("location").unwrap_or_default().to_owned();
        match self.abandon(record, &failure.to_string(), key).await {
            Ok(true) => {
                error!(error = %failure, "the saga could not be handed over: abandoned before anything ran");
            }
            // Another writer moved the saga on: the hand-over landed after all (its answer was
            // lost), and the saga runs.
            Ok(false) => {
                warn!(error = %failure, "the hand-over failed but the saga runs: it landed after all");
                return answer;
            }
            Err(e) => {
                error!(error = %failure, abandon_error = %e, "the saga could not be handed over nor abandoned; it stays PENDING until a retry with the same Idempotency-Key");
            }
        }
        let mut failed = error(503, "dispatch_failed", failure.to_string())
            .with_header("retry-after", "1")
            .with_header("location", url.clone());
        failed.body["transaction_id"] = json!(record.transaction_id);
        failed.body["status_url"] = json!(url);
        failed
    }

    /// Ends a saga that could not be handed over before anything ran: it becomes COMPENSATED
    /// (nothing to undo) with an error saying so, in a conditional write on the version the API
    /// created, and its key (when it had one) is forgotten, so a retry with it starts a new
    /// saga. Returns `false` when the saga had moved on: the hand-over landed after all. A
    /// message or execution of the abandoned saga that arrives late finds it finished and runs
    /// nothing.
    async fn abandon(
        &self,
        record: &SagaRecord,
        reason: &str,
        key: Option<(&str, &Value)>,
    ) -> Result<bool, StoreError> {
        let mut abandoned = record.clone();
        abandoned.status = SagaStatus::Compensated;
        abandoned.error = Some(format!(
            "not started: the saga could not be handed to the {} ({reason}); nothing ran",
            self.dispatch.target()
        ));
        abandoned.updated_at = now_rfc3339();
        match self.store.transition(&abandoned).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some((key, pointer)) = key {
            self.store.forget(key, pointer).await?;
        }
        Ok(true)
    }

    /// Answers a repeat of a request whose saga is recorded.
    pub(crate) async fn replay(
        &self,
        stored_key: &str,
        stored: &Value,
        deadline: SystemTime,
        respond_by: Instant,
        prefix: &str,
    ) -> HttpResponse {
        let Some(pointer) = KeyRecord::from_value(stored) else {
            error!("the idempotency record of this key is unreadable");
            return error(
                500,
                "corrupt_idempotency_record",
                "the stored answer of this Idempotency-Key is unreadable",
            );
        };
        let transaction_id = pointer.transaction_id.as_str();
        Span::current().record("transaction_id", transaction_id);
        info!("same Idempotency-Key and body as an earlier request: answering for its saga");
        let url = status_url(prefix, transaction_id);
        let record = match self.store.get(transaction_id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                error!("the saga an idempotency record points at does not exist");
                return error(
                    500,
                    "saga_missing",
                    format!("saga {transaction_id} of this Idempotency-Key is missing"),
                );
            }
            Err(e) => return store_failure(&e),
        };
        match (&self.dispatch, pointer.answer) {
            (Dispatch::InRequest(engine), _) => {
                if record.status.is_terminal() {
                    finished_saga(&record, &url).with_header(REPLAYED_HEADER, "true")
                } else if epoch_millis(SystemTime::now()) <= pointer.owner_deadline_ms {
                    in_progress(Some(transaction_id), prefix)
                } else {
                    self.resume(engine, transaction_id, deadline, respond_by, prefix)
                        .await
                }
            }
            (_, answer) => {
                let answer = answer.unwrap_or_else(|| accepted(transaction_id, &url));
                if record.status == SagaStatus::Pending {
                    // The first attempt may have died before handing the saga over; handing it
                    // over again is harmless (see the dispatch module).
                    let handed = self
                        .hand_over(&record, answer, Some((stored_key, stored)))
                        .await;
                    if handed.status < 500 {
                        handed.with_header(REPLAYED_HEADER, "true")
                    } else {
                        handed
                    }
                } else {
                    answer.with_header(REPLAYED_HEADER, "true")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_records_round_trip() {
        let record = KeyRecord {
            transaction_id: "tx".into(),
            owner_deadline_ms: 42,
            answer: Some(accepted("tx", "/transactions/tx")),
        };
        let back = KeyRecord::from_value(&record.to_value()).unwrap();
        assert_eq!(
            (back.transaction_id.as_str(), back.owner_deadline_ms),
            ("tx", 42)
        );
        assert_eq!(back.answer, record.answer);
        assert!(KeyRecord::from_value(&json!({"transaction_id": 1})).is_none());
    }
}
