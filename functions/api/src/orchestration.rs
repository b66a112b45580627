//! The orchestrator pattern: running the saga in the request within the response budget, and
//! finishing a saga that outlives it in a later invocation (a resume event, or a repeat of the
//! request once every invocation that had it is gone).

use std::time::{Instant, SystemTime};

use lambda_runtime::{Context, Diagnostic};
use sagaform_runtime::deadline::instant_before;
use sagaform_runtime::errors::{EngineError, ErrorClass, IdempotencyError, StoreError, diagnostic};
use sagaform_runtime::store::ClaimOutcome;
use sagaform_runtime::{
    ConfiguredStore, Engine, IdempotencyStore, SagaRecord, SagaStatus, SagaStore,
};
use sagaform_saas_client::SaasClient;
use serde_json::json;
use tracing::{Instrument, error, info, info_span, warn};

use crate::dispatch::Dispatch;
use crate::response::HttpResponse;
use crate::response::{accepted, error, finished_saga, status_url};
use crate::{Api, RESUME_KEY_PREFIX, in_progress, resume, store_failure, unfinished};

/// The outcome of running a saga in the request.
pub(crate) enum RunOutcome {
    /// The answer to give: the saga is finished, or failed in a way a resume cannot fix.
    Answered(HttpResponse),
    /// The time ran out with the saga still going; `fallback` is the 503 asking for a retry.
    Unfinished {
        status: Option<SagaStatus>,
        fallback: HttpResponse,
    },
}

impl Api {
    /// Orchestrator: continues the saga of a resume event to a terminal status under the
    /// invocation's deadline. An unknown saga is permanent; a saga another invocation is
    /// working on, or one not finished in time, is a retryable error so Lambda's asynchronous
    /// retries (then the ResumeDeadLetterQueue) take over. Steps already done are not re-run:
    /// the engine continues from the stored state.
    pub async fn resume_saga(
        &self,
        transaction_id: &str,
        context: &Context,
    ) -> Result<SagaRecord, Diagnostic> {
        let span =
            info_span!("resume", requestId = %context.request_id, transaction_id = %transaction_id);
        async {
            let engine = self.resuming_engine(transaction_id)?;
            self.check_saga_known(transaction_id).await?;
            let deadline = context.deadline();
            let key = format!("{RESUME_KEY_PREFIX}{transaction_id}");
            self.claim_resume(&key, transaction_id, deadline).await?;
            info!("resuming the saga");
            let run_until = instant_before(deadline, self.settings.response_margin);
            let result = engine.run(transaction_id, run_until).await;
            if let Err(e) = self.store.release(&key).await {
                warn!(error = %e, "could not release the resume claim; it expires with this invocation");
            }
            resumed(result)
        }
        .instrument(span)
        .await
    }

    /// The engine that runs sagas in this function: only the orchestrator's api has one, so a
    /// resume event sent to another pattern's api is a permanent error.
    fn resuming_engine(
        &self,
        transaction_id: &str,
    ) -> Result<&Engine<ConfiguredStore, SaasClient>, Diagnostic> {
        let Dispatch::InRequest(engine) = &self.dispatch else {
            let e = EngineError::InvalidOperation {
                transaction_id: transaction_id.to_owned(),
                reason: format!("the {} api does not run sagas", self.pattern()),
            };
            error!(error = %e, "resume event sent to the wrong function");
            return Err(diagnostic(ErrorClass::Permanent, &e));
        };
        Ok(engine)
    }

    /// Checks that the saga to resume is recorded: an unknown one is a permanent error, a
    /// store that cannot be read one of the store's class.
    async fn check_saga_known(&self, transaction_id: &str) -> Result<(), Diagnostic> {
        match self.store.get(transaction_id).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                let e = StoreError::NotFound(transaction_id.to_owned());
                error!(error = %e, "resume event for an unknown saga");
                Err(diagnostic(ErrorClass::Permanent, &e))
            }
            Err(e) => {
                warn!(error = %e, "cannot read the saga to resume");
                Err(diagnostic(e.class(), &e))
            }
        }
    }

    /// Claims the saga under `key` for this resume, so two invocations never run it at once;
    /// a saga held by another invocation is a retryable error.
    async fn claim_resume(
        &self,
        key: &str,
        transaction_id: &str,
        deadline: SystemTime,
    ) -> Result<(), Diagnostic> {
        match self
            .idempotency()
            .claim(key, &json!({"transaction_id": transaction_id}), deadline)
            .await
        {
            Ok(ClaimOutcome::Claimed) => Ok(()),
            Ok(ClaimOutcome::Completed(_))
            | Err(IdempotencyError::InProgress(_) | IdempotencyError::PayloadMismatch(_)) => {
                // Another invocation (a duplicate delivery, or a client's retry) holds the
                // saga; failing lets Lambda retry once that one is done or gone.
                let e = resume::EventError::Busy(transaction_id.to_owned());
                warn!(error = %e, "saga busy; Lambda retries the resume later");
                Err(diagnostic(ErrorClass::Retryable, &e))
            }
            Err(IdempotencyError::Store(e)) => {
                warn!(error = %e, "cannot claim the saga to resume");
                Err(diagnostic(e.class(), &e))
            }
        }
    }

    /// When the orchestrator must stop working on a request: the earlier of the invocation's
    /// deadline less the margin and the response budget after the request arrived.
    pub(crate) fn respond_by(&self, deadline: SystemTime, arrived: Instant) -> Instant {
        instant_before(deadline, self.settings.response_margin)
            .min(arrived + self.settings.response_budget)
    }

    /// Orchestrator: runs the saga until it finishes or `run_until`.
    pub(crate) async fn run(
        &self,
        engine: &Engine<ConfiguredStore, SaasClient>,
        transaction_id: &str,
        run_until: Instant,
        url: &str,
    ) -> RunOutcome {
        match engine.run(transaction_id, run_until).await {
            Ok(record) => {
                info!(status = %record.status, "saga finished");
                RunOutcome::Answered(finished_saga(&record, url))
            }
            Err(e) if e.class() == ErrorClass::Retryable => {
                warn!(error = %e, "saga not finished within the response budget");
                match self.store.get(transaction_id).await {
                    Ok(Some(record)) if record.status.is_terminal() => {
                        RunOutcome::Answered(finished_saga(&record, url))
                    }
                    Ok(Some(record)) => RunOutcome::Unfinished {
                        status: Some(record.status),
                        fallback: finished_saga(&record, url),
                    },
                    _ => RunOutcome::Unfinished {
                        status: None,
                        fallback: unfinished(transaction_id, url, &e.to_string()),
                    },
                }
            }
            Err(e) => {
                error!(error = %e, "saga stopped on an error retrying cannot fix");
                let mut failed =
                    error(500, "saga_failed", e.to_string()).with_header("location", url);
                failed.body["transaction_id"] = json!(transaction_id);
                failed.body["status_url"] = json!(url);
                RunOutcome::Answered(failed)
            }
        }
    }

    /// Turns a run's outcome into the answer: a saga still going is handed to an asynchronous
    /// invocation of this function (202); when that cannot be sent, or there is no resumer, the
    /// 503 asks the client to retry with the same key, which resumes the saga.
    pub(crate) async fn answer_or_resume_later(
        &self,
        outcome: RunOutcome,
        transaction_id: &str,
        url: &str,
    ) -> HttpResponse {
        let (status, fallback) = match outcome {
            RunOutcome::Answered(answer) => return answer,
            RunOutcome::Unfinished { status, fallback } => (status, fallback),
        };
        let Some(resumer) = &self.resumer else {
            warn!("no resumer: a retry with the same Idempotency-Key resumes the saga");
            return fallback;
        };
        match resumer.send(&resume::resume_event(transaction_id)).await {
            Ok(()) => {
                info!("saga handed to an asynchronous invocation; answering 202");
                let mut answer = accepted(transaction_id, url);
                if let Some(status) = status {
                    answer.body["status"] = json!(status.as_str());
                }
                answer
            }
            Err(e) => {
                error!(error = %e, "cannot hand the saga to an asynchronous invocation; a retry with the same Idempotency-Key resumes it");
                fallback
            }
        }
    }

    /// Orchestrator: resumes a saga whose first invocation is gone, unless another repeat is
    /// already resuming it.
    pub(crate) async fn resume(
        &self,
        engine: &Engine<ConfiguredStore, SaasClient>,
        transaction_id: &str,
        deadline: SystemTime,
        respond_by: Instant,
        prefix: &str,
    ) -> HttpResponse {
        let url = &status_url(prefix, transaction_id);
        let key = format!("{RESUME_KEY_PREFIX}{transaction_id}");
        match self
            .idempotency()
            .claim(&key, &json!({"transaction_id": transaction_id}), deadline)
            .await
        {
            Ok(ClaimOutcome::Claimed) => {
                info!("the invocation that started this saga is gone; resuming it");
                let outcome = self.run(engine, transaction_id, respond_by, url).await;
                // Released before any hand-over, so the asynchronous invocation can claim it.
                if let Err(e) = self.store.release(&key).await {
                    warn!(error = %e, "could not release the resume claim; it expires with this invocation");
                }
                self.answer_or_resume_later(outcome, transaction_id, url)
                    .await
            }
            Ok(ClaimOutcome::Completed(_))
            | Err(IdempotencyError::InProgress(_) | IdempotencyError::PayloadMismatch(_)) => {
                in_progress(Some(transaction_id), prefix)
            }
            Err(IdempotencyError::Store(e)) => store_failure(&e),
        }
    }
}

/// Logs how a resumed run ended and turns it into the invocation's result: an error keeps its
/// class, so Lambda retries only what a retry can fix.
fn resumed(result: Result<SagaRecord, EngineError>) -> Result<SagaRecord, Diagnostic> {
    match result {
        Ok(record) => {
            info!(status = %record.status, "saga finished");
            Ok(record)
        }
        Err(e) => {
            match e.class() {
                ErrorClass::Retryable => {
                    warn!(error = %e, "saga not finished; Lambda retries the resume")
                }
                ErrorClass::Permanent => {
                    error!(error = %e, "saga stopped on an error retrying cannot fix")
                }
            }
            Err(diagnostic(e.class(), &e))
        }
    }
}
