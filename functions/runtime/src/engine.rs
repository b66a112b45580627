//! The saga engine: runs a [`Saga`] definition against the stored state, one step after the
//! other, and compensates in reverse order when a step fails for good.
//!
//! The engine always starts from what the store says, never from memory: a step recorded as
//! SUCCEEDED is not called again, and a step whose result was not recorded (a crash before or
//! after the call, a lost response) is called again with the same idempotency key
//! `{transaction_id}:{step}:{action}`, which the downstream service applies once. So a crash at
//! any point neither skips nor repeats a step's effect. The decision to compensate is stored
//! (COMPENSATING) before the first compensation runs, so a resumed saga never goes forward again
//! after compensating started. Compensations are independent of each other: one that fails for
//! good is recorded and the earlier steps are still undone; the saga then ends
//! COMPENSATION_FAILED naming every step a human must settle.
//!
//! An action whose attempts ended without a definite answer (a timeout, a lost connection, a
//! 5xx: [`SaasError::is_in_doubt`]) may have taken effect, or may still: compensating it would
//! run the refund before a charge that then lands. So the rule is: an in-doubt call is asked
//! again with the same idempotency key under the step's retry policy, and the provider's first
//! definite answer (success, or a refusal for the key) settles it; when the retries end and the
//! doubt has not been settled, the step is IN_DOUBT and the saga parks IN_DOUBT (an alarm, the
//! runbook's "saga in doubt" section) until an operator asks again ([`Engine::reopen`], `cargo
//! xtask saga retry`). A refused connection or a 429 after an in-doubt attempt says nothing of
//! it, so the doubt is stored on the step where invocations retry ([`StepRecord::in_doubt`]).
//!
//! Three ways to drive it, one per pattern:
//! - [`Engine::run`] (orchestrator): the whole saga in-process, retrying each call under its
//!   step's [`RetryPolicy`](sagaform_saga::RetryPolicy) until a deadline;
//! - [`Engine::advance`] (SQS worker): as far as it gets with one call per step and invocation;
//!   a retryable failure is stored on its step and returned so the queue redelivers, and the
//!   stored attempts of that call (not the message's receive count, which spans the whole saga)
//!   say when its retries are used up;
//! - [`Engine::execute_step`], [`Engine::compensate_step`], [`Engine::mark_failed`] (Step
//!   Functions): one step operation per task, retries and branching left to the state machine.
//!
//! Writes are minimal: a successful N-step saga costs N + 1 state writes after its creation (the
//! first step's result also sets RUNNING, the last one also sets COMPLETED). Every log line is
//! emitted inside a span carrying the `transaction_id`. Writers race safely (a stale one gets
//! [`StoreError::Conflict`](crate::errors::StoreError::Conflict) and changes nothing), but two
//! executors of one saga at once are prevented above the engine: the API's idempotency claim,
//! the FIFO message group, the Step Functions execution name.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use sagaform_contract::log::{SAGA_COMPENSATION_FAILED, SAGA_IN_DOUBT};
use sagaform_saas_client::{SaasClient, SaasError, StepCall, retry_until};
use sagaform_saga::{Action, RetryPolicy, Saga, Step};
use serde_json::Value;
use tracing::{Instrument, error, info, info_span, warn};

use crate::errors::{EngineError, StoreError};
use crate::model::{
    SagaRecord, SagaStatus, StepRecord, StepStatus, new_transaction_id, now_rfc3339,
};
use crate::store::SagaStore;

/// One downstream call of a step's action or compensation; [`SaasClient`] in production, a
/// double in tests that need to observe or break calls.
pub trait StepCaller: Send + Sync {
    /// Makes the call once, finishing (or giving up) by `deadline`.
    fn call(
        &self,
        call: &StepCall<'_>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Value, SaasError>> + Send;
}

impl StepCaller for SaasClient {
    fn call(
        &self,
        call: &StepCall<'_>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Value, SaasError>> + Send {
        self.call_before(call, deadline)
    }
}

impl<C: StepCaller> StepCaller for &C {
    fn call(
        &self,
        call: &StepCall<'_>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Value, SaasError>> + Send {
        (**self).call(call, deadline)
    }
}

impl<C: StepCaller> StepCaller for std::sync::Arc<C> {
    fn call(
        &self,
        call: &StepCall<'_>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Value, SaasError>> + Send {
        (**self).call(call, deadline)
    }
}

/// Who retries a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retries {
    /// The engine, in-process, under the step's policy (orchestrator).
    InProcess,
    /// The queue, by redelivering the saga's message. Each failed attempt is stored on its step,
    /// and a retryable failure counts as exhausted once the stored attempts of that call exceed
    /// its policy's retries.
    Redelivery,
}

/// Which of a step's two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Action,
    Compensation,
}

impl CallKind {
    /// The stored attempts of this call on `step`.
    fn attempts(self, step: &StepRecord) -> u32 {
        match self {
            CallKind::Action => step.attempts,
            CallKind::Compensation => step.compensation_attempts,
        }
    }

    fn attempts_mut(self, step: &mut StepRecord) -> &mut u32 {
        match self {
            CallKind::Action => &mut step.attempts,
            CallKind::Compensation => &mut step.compensation_attempts,
        }
    }
}

/// What became of a call, once retries are settled.
enum Called {
    /// It succeeded after this many attempts.
    Succeeded { attempts: u32 },
    /// It failed for good (permanently, or retryable with no retries left); `in_doubt` when
    /// the effect is still unknown.
    Failed {
        attempts: u32,
        error: SaasError,
        in_doubt: bool,
    },
    /// It failed with retries left that a later invocation uses (redelivery, or the deadline
    /// came first); `attempt` is the stored count of this one.
    Later {
        attempt: u32,
        error: SaasError,
        in_doubt: bool,
    },
}

/// What a call that failed for good leaves on its step and on the saga, and what that means
/// for the saga (the warning that reports it).
struct GivenUp {
    step_status: StepStatus,
    step_error: String,
    /// What the saga becomes, with its error; `None` when the compensations settle it
    /// ([`settle_compensation`]).
    saga: Option<(SagaStatus, String)>,
    consequence: &'static str,
    /// The `outcome` field of the log line, for lines an alarm counts ([`sagaform_contract::log`]).
    outcome: Option<&'static str>,
}

impl GivenUp {
    /// The action of `step` failed for good: the saga compensates.
    fn action(step: &Step, error: &SaasError) -> Self {
        GivenUp {
            step_status: StepStatus::Failed,
            step_error: error.to_string(),
            saga: Some((
                SagaStatus::Compensating,
                format!("step {} {} failed: {error}", step.name, step.action.name),
            )),
            consequence: "step failed for good; compensating",
            outcome: None,
        }
    }

    /// The action of `step` ended its retries in doubt: the saga parks IN_DOUBT, nothing is
    /// compensated blind.
    fn in_doubt(step: &Step, attempts: u32, error: &SaasError) -> Self {
        GivenUp {
            step_status: StepStatus::InDoubt,
            step_error: error.to_string(),
            saga: Some((
                SagaStatus::InDoubt,
                in_doubt_reason(step, &format!("{attempts} attempt(s)"), &error.to_string()),
            )),
            consequence: "saga in doubt: the step's effect is unknown after all its retries; parked for an operator (saga retry)",
            outcome: Some(SAGA_IN_DOUBT),
        }
    }

    /// The compensation of a step failed for good: the step needs a human, and the earlier
    /// steps are still undone before the saga ends COMPENSATION_FAILED.
    fn compensation(error: &SaasError) -> Self {
        GivenUp {
            step_status: StepStatus::CompensationFailed,
            step_error: format!("compensation: {error}"),
            saga: None,
            consequence: "compensation failed for good: the step needs a human; the earlier steps are still undone",
            outcome: None,
        }
    }
}

/// What the stored state says comes next.
enum Next {
    /// The saga is finished.
    Finished,
    /// Run the action of step `index`.
    Execute(usize),
    /// Run the compensation of step `index`.
    Compensate(usize),
    /// Nothing left to call; only the status is behind (a record written by an older engine or
    /// by hand).
    Settle(SagaStatus),
    /// Every compensation has ended; only the status is behind, as for `Settle`.
    SettleCompensation,
}

/// Runs one saga definition against a state store and a downstream caller.
#[derive(Debug, Clone)]
pub struct Engine<S, C> {
    saga: Saga,
    store: S,
    caller: C,
}

impl<S: SagaStore, C: StepCaller> Engine<S, C> {
    /// An engine for `saga`.
    pub fn new(saga: Saga, store: S, caller: C) -> Self {
        Engine {
            saga,
            store,
            caller,
        }
    }

    /// The saga definition.
    pub fn saga(&self) -> &Saga {
        &self.saga
    }

    /// The state store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The downstream caller.
    pub fn caller(&self) -> &C {
        &self.caller
    }

    /// A new PENDING record for `request` with a fresh UUIDv7 `transaction_id` (not stored).
    pub fn new_record(&self, request: Value) -> SagaRecord {
        SagaRecord::new(&self.saga, new_transaction_id(), request)
    }

    /// Records a new PENDING saga for `request` and returns it (one state write).
    pub async fn start(&self, request: Value) -> Result<SagaRecord, EngineError> {
        let mut record = self.new_record(request);
        let span =
            info_span!("saga", transaction_id = %record.transaction_id, saga = self.saga.name);
        async {
            record.version = self.store.create(&record).await?;
            info!(status = %record.status, "saga recorded");
            Ok(record)
        }
        .instrument(span)
        .await
    }

    /// Orchestrator: runs the saga from its stored state to the end (COMPLETED, COMPENSATED or
    /// COMPENSATION_FAILED), retrying each call in-process under its step's policy.
    ///
    /// Returns [`EngineError::DeadlineReached`] or a retryable [`EngineError::Step`] when
    /// `deadline` comes first: the saga stays where it is and a later `run` resumes it.
    pub async fn run(
        &self,
        transaction_id: &str,
        deadline: Instant,
    ) -> Result<SagaRecord, EngineError> {
        self.drive(transaction_id, Retries::InProcess, deadline)
            .instrument(self.span(transaction_id, "run"))
            .await
    }

    /// SQS worker: advances the saga as far as it goes with one call per step. A retryable
    /// failure is stored on its step and returned (the message comes back) until that call's
    /// stored attempts use up its retries; then it counts as failed for good: an action's
    /// failure compensates, a compensation's leaves the step to a human. Returns the record
    /// once it is finished.
    pub async fn advance(
        &self,
        transaction_id: &str,
        deadline: Instant,
    ) -> Result<SagaRecord, EngineError> {
        self.drive(transaction_id, Retries::Redelivery, deadline)
            .instrument(self.span(transaction_id, "advance"))
            .await
    }

    /// Step Functions `execute`: runs the action of `step` once. Sets RUNNING on the first step,
    /// COMPLETED on the last. A step already SUCCEEDED is not called again (a retried task). A
    /// failure is returned with its classification and recorded by the compensation that
    /// follows it.
    pub async fn execute_step(
        &self,
        transaction_id: &str,
        step: &str,
        deadline: Instant,
    ) -> Result<SagaRecord, EngineError> {
        async {
            let (mut record, index) = self.load_step(transaction_id, step).await?;
            if already(&record, index, StepStatus::Succeeded) {
                return Ok(record);
            }
            let definition = &self.saga.steps[index];
            if !matches!(record.status, SagaStatus::Pending | SagaStatus::Running) {
                return Err(invalid(
                    &record,
                    format!("cannot execute step {step}: the saga is {}", record.status),
                ));
            }
            if let Some(earlier) = record.steps[..index]
                .iter()
                .find(|s| s.status != StepStatus::Succeeded)
            {
                return Err(invalid(
                    &record,
                    format!(
                        "cannot execute step {step} before step {} succeeded",
                        earlier.name
                    ),
                ));
            }
            let call = StepCall::action(definition, &record.transaction_id, &record.request);
            if let Err(failure) = self.call_once(&call, deadline, "step failed").await {
                if let EngineError::Step { source, .. } = &failure {
                    self.record_doubt(&mut record, index, source).await?;
                }
                return Err(failure);
            }
            self.record_step_success(&mut record, index, 1).await?;
            Ok(record)
        }
        .instrument(self.span(transaction_id, "execute"))
        .await
    }

    /// Step Functions `compensate`: runs the compensation of `step` once. The first compensation
    /// sets COMPENSATING (and records `error`, the failure that led here, on the failed step)
    /// before calling; the last one sets COMPENSATED. A step already COMPENSATED is not called
    /// again.
    pub async fn compensate_step(
        &self,
        transaction_id: &str,
        step: &str,
        error: Option<String>,
        deadline: Instant,
    ) -> Result<SagaRecord, EngineError> {
        async {
            let (mut record, index) = self.load_step(transaction_id, step).await?;
            if already(&record, index, StepStatus::Compensated) {
                return Ok(record);
            }
            if record.status == SagaStatus::Compensated {
                // Nothing of it stands (a saga abandoned before it was handed over, whose
                // execution started after all): the compensations that follow undo nothing.
                info!(step, "the saga is already compensated; nothing to undo");
                return Ok(record);
            }
            self.enter_compensation(&mut record, index, error).await?;
            let definition = &self.saga.steps[index];
            let call = StepCall::compensation(definition, &record.transaction_id, &record.request);
            self.call_once(&call, deadline, "compensation failed")
                .await?;
            self.record_compensation_success(&mut record, index, 1)
                .await?;
            Ok(record)
        }
        .instrument(self.span(transaction_id, "compensate"))
        .await
    }

    /// The first compensation of a saga still going forward records the failure that led
    /// here (`error`, on the failed step if it is still PENDING) and turns the saga to
    /// COMPENSATING before anything is undone; a saga already compensating is left as it is.
    async fn enter_compensation(
        &self,
        record: &mut SagaRecord,
        index: usize,
        error: Option<String>,
    ) -> Result<(), EngineError> {
        let step = self.saga.steps[index].name;
        match record.status {
            SagaStatus::Pending | SagaStatus::Running => {
                let reason = error.unwrap_or_else(|| format!("step {step} failed"));
                let failed = &mut record.steps[index];
                if failed.status == StepStatus::Pending {
                    failed.status = StepStatus::Failed;
                    failed.error = Some(reason.clone());
                    failed.updated_at = Some(now_rfc3339());
                }
                record.status = SagaStatus::Compensating;
                record.error = Some(reason);
                self.save(record).await?;
                warn!(
                    step,
                    error = record.error.as_deref().unwrap_or_default(),
                    "compensating"
                );
                Ok(())
            }
            SagaStatus::Compensating => Ok(()),
            status => Err(invalid(
                record,
                format!("cannot compensate step {step}: the saga is {status}"),
            )),
        }
    }

    /// Makes `call` once, as the Step Functions tasks do (retries are the state machine's); a
    /// failure is logged as `failed` and returned with its classification.
    async fn call_once(
        &self,
        call: &StepCall<'_>,
        deadline: Instant,
        failed: &'static str,
    ) -> Result<(), EngineError> {
        self.check_time_left(call.step, call.action, deadline)?;
        match self.caller.call(call, deadline).await {
            Ok(_) => Ok(()),
            Err(error) => {
                warn!(step = call.step.name, action = call.action.name, error = %error,
                      retryable = error.is_retryable(), "{failed}");
                Err(EngineError::Step {
                    step: call.step.name,
                    action: call.action.name,
                    attempt: 1,
                    source: error,
                })
            }
        }
    }

    /// Stores whether the action of step `index` is in doubt after `error` (a Step Functions
    /// attempt, whose retries are the state machine's), when that changed: the `give_up` that
    /// follows the last attempt reads it.
    async fn record_doubt(
        &self,
        record: &mut SagaRecord,
        index: usize,
        error: &SaasError,
    ) -> Result<(), EngineError> {
        let in_doubt = error.leaves_in_doubt(record.steps[index].in_doubt);
        if in_doubt != record.steps[index].in_doubt {
            record.steps[index].in_doubt = in_doubt;
            self.save(record).await?;
        }
        Ok(())
    }

    /// Step Functions `give_up`: the action of `step` failed and the state machine's retries for
    /// it are over; `caught` is the error the Catch caught (its `Error` name, its description).
    /// Decides what that means, from the error and the stored doubt:
    /// - the step succeeded after all (its result was recorded, the answer to the state machine
    ///   lost): nothing changes, the state machine goes on with the next step;
    /// - a definite failure (`Permanent`, or `Retryable` with no in-doubt attempt stored): the
    ///   step is FAILED and the saga COMPENSATING, the state machine compensates;
    /// - otherwise (`InDoubt`, `States.Timeout`, a Lambda failure, `Retryable` after an
    ///   in-doubt attempt): the call may have landed, the step and the saga are IN_DOUBT and the
    ///   execution ends there.
    ///
    /// Repeating it changes nothing.
    pub async fn give_up_step(
        &self,
        transaction_id: &str,
        step: &str,
        caught: &str,
        description: Option<String>,
    ) -> Result<SagaRecord, EngineError> {
        use sagaform_contract::task::error_types::{PERMANENT, RETRYABLE};
        async {
            let (mut record, index) = self.load_step(transaction_id, step).await?;
            let stored = &record.steps[index];
            if stored.status != StepStatus::Pending
                || !matches!(record.status, SagaStatus::Pending | SagaStatus::Running)
            {
                info!(step, step_status = %stored.status, status = %record.status, "already decided");
                return Ok(record);
            }
            let definition = &self.saga.steps[index];
            let description = description.unwrap_or_else(|| caught.to_owned());
            let in_doubt = match caught {
                PERMANENT => false,
                RETRYABLE => stored.in_doubt,
                _ => true,
            };
            let attempts = stored.attempts.max(1);
            let stored = &mut record.steps[index];
            stored.error = Some(description.clone());
            stored.updated_at = Some(now_rfc3339());
            if in_doubt {
                stored.status = StepStatus::InDoubt;
                stored.in_doubt = true;
                record.status = SagaStatus::InDoubt;
                record.error = Some(in_doubt_reason(definition, "its retries", &description));
                self.save(&mut record).await?;
                warn!(step, attempts, error = %description, outcome = SAGA_IN_DOUBT, "saga in doubt: the step's effect is unknown after all its retries; parked for an operator (saga retry)");
            } else {
                stored.status = StepStatus::Failed;
                record.status = SagaStatus::Compensating;
                record.error = Some(format!(
                    "step {} {} failed: {description}",
                    definition.name, definition.action.name
                ));
                self.save(&mut record).await?;
                warn!(step, error = %description, "step failed for good; compensating");
            }
            Ok(record)
        }
        .instrument(self.span(transaction_id, "give_up"))
        .await
    }

    /// Operator's `saga retry` of a saga IN_DOUBT: see [`reopen_in_doubt`].
    pub async fn reopen(&self, transaction_id: &str) -> Result<SagaRecord, EngineError> {
        reopen_in_doubt(&self.store, transaction_id)
            .instrument(self.span(transaction_id, "reopen"))
            .await
    }

    /// Step Functions `mark_failed`: the compensation of `step` failed for good. The step needs
    /// a human; the saga stays COMPENSATING while earlier steps are still to be undone (the
    /// state machine goes on with them) and ends COMPENSATION_FAILED after the last. Repeating
    /// it changes nothing.
    pub async fn mark_failed(
        &self,
        transaction_id: &str,
        step: &str,
        error: Option<String>,
    ) -> Result<SagaRecord, EngineError> {
        async {
            let (mut record, index) = self.load_step(transaction_id, step).await?;
            if record.steps[index].status == StepStatus::CompensationFailed {
                return Ok(record);
            }
            if matches!(
                record.status,
                SagaStatus::Completed | SagaStatus::Compensated
            ) {
                return Err(invalid(
                    &record,
                    format!(
                        "cannot mark step {step} failed: the saga is {}",
                        record.status
                    ),
                ));
            }
            let reason = error.unwrap_or_else(|| format!("compensation of step {step} failed"));
            let failed = &mut record.steps[index];
            failed.status = StepStatus::CompensationFailed;
            failed.error = Some(format!("compensation: {reason}"));
            failed.updated_at = Some(now_rfc3339());
            self.settle_compensation(&mut record);
            self.save(&mut record).await?;
            warn!(
                step,
                error = reason,
                status = %record.status,
                "compensation failed for good: the step needs a human; the earlier steps are still undone"
            );
            Ok(record)
        }
        .instrument(self.span(transaction_id, "mark_failed"))
        .await
    }

    fn span(&self, transaction_id: &str, operation: &'static str) -> tracing::Span {
        info_span!("saga", transaction_id = %transaction_id, saga = self.saga.name, operation)
    }

    async fn load(&self, transaction_id: &str) -> Result<SagaRecord, EngineError> {
        self.store
            .get(transaction_id)
            .await?
            .ok_or_else(|| EngineError::Store(StoreError::NotFound(transaction_id.to_owned())))
    }

    /// The saga and the index of `step` in it, for the Step Functions tasks.
    async fn load_step(
        &self,
        transaction_id: &str,
        step: &str,
    ) -> Result<(SagaRecord, usize), EngineError> {
        let record = self.load(transaction_id).await?;
        let index = self.step_index(&record, step)?;
        Ok((record, index))
    }

    fn step_index(&self, record: &SagaRecord, step: &str) -> Result<usize, EngineError> {
        let index = self
            .saga
            .steps
            .iter()
            .position(|s| s.name == step)
            .ok_or_else(|| {
                invalid(
                    record,
                    format!("saga {} has no step {step}", self.saga.name),
                )
            })?;
        if record.steps.get(index).is_none_or(|s| s.name != step) {
            return Err(invalid(
                record,
                format!("the stored steps do not match saga {}", self.saga.name),
            ));
        }
        Ok(index)
    }

    /// Stores `record` from the version it was read at and moves it to the new version.
    async fn save(&self, record: &mut SagaRecord) -> Result<(), EngineError> {
        record.updated_at = now_rfc3339();
        record.version = self.store.transition(record).await?;
        if record.status == SagaStatus::CompensationFailed {
            // Nothing writes a saga once it is COMPENSATION_FAILED, so this is the write that
            // settled it: the line the stack's metric filter counts for the alarm, whether the
            // saga ran in an HTTP request, a queue message, a Step Functions Task or the
            // orchestrator's asynchronous resume.
            error!(
                outcome = SAGA_COMPENSATION_FAILED,
                error = record.error.as_deref().unwrap_or_default(),
                "saga compensation failed: a step could not be undone; a human must settle it"
            );
        }
        Ok(())
    }

    async fn record_step_success(
        &self,
        record: &mut SagaRecord,
        index: usize,
        attempts: u32,
    ) -> Result<(), EngineError> {
        let last = index + 1 == record.steps.len();
        let step = &mut record.steps[index];
        step.status = StepStatus::Succeeded;
        step.attempts = attempts;
        step.in_doubt = false;
        step.error = None;
        step.updated_at = Some(now_rfc3339());
        // RUNNING is written with the first step's result and COMPLETED with the last one's:
        // no write of its own, so a successful saga costs one write per step after creation.
        record.status = if last {
            SagaStatus::Completed
        } else {
            SagaStatus::Running
        };
        self.save(record).await?;
        info!(step = self.saga.steps[index].name, attempts, status = %record.status, "step succeeded");
        Ok(())
    }

    /// Stores a failed attempt of step `index`'s `kind` of call that a later invocation retries
    /// (the sqs pattern's redelivery): the count decides when its retries are used up, and the
    /// saga's status shows it and the last error while it waits. The step's status is kept.
    async fn record_attempt_failure(
        &self,
        record: &mut SagaRecord,
        index: usize,
        kind: CallKind,
        error: &SaasError,
        in_doubt: bool,
    ) -> Result<(), EngineError> {
        let step = &mut record.steps[index];
        *kind.attempts_mut(step) += 1;
        if kind == CallKind::Action {
            step.in_doubt = in_doubt;
        }
        let attempts = kind.attempts(step);
        step.error = Some(match kind {
            CallKind::Action => error.to_string(),
            CallKind::Compensation => format!("compensation: {error}"),
        });
        step.updated_at = Some(now_rfc3339());
        self.save(record).await?;
        info!(
            step = self.saga.steps[index].name,
            attempts, "failed attempt recorded; retried on redelivery"
        );
        Ok(())
    }

    async fn record_compensation_success(
        &self,
        record: &mut SagaRecord,
        index: usize,
        attempts: u32,
    ) -> Result<(), EngineError> {
        let step = &mut record.steps[index];
        step.status = StepStatus::Compensated;
        step.compensation_attempts = attempts;
        step.updated_at = Some(now_rfc3339());
        self.settle_compensation(record);
        self.save(record).await?;
        info!(step = self.saga.steps[index].name, attempts, status = %record.status, "step compensated");
        Ok(())
    }

    /// Records that a call of step `index` failed for good after `attempts` calls, as `given_up`
    /// says: an action's failure is stored before any compensation runs, so a resumed saga never
    /// goes forward again; a compensation's leaves the step to a human.
    async fn record_given_up(
        &self,
        record: &mut SagaRecord,
        index: usize,
        kind: CallKind,
        attempts: u32,
        error: &SaasError,
        given_up: GivenUp,
    ) -> Result<(), EngineError> {
        let failed = &mut record.steps[index];
        failed.status = given_up.step_status;
        if given_up.step_status == StepStatus::InDoubt {
            failed.in_doubt = true;
        }
        *kind.attempts_mut(failed) = attempts;
        failed.error = Some(given_up.step_error);
        failed.updated_at = Some(now_rfc3339());
        match given_up.saga {
            Some((status, error)) => {
                record.status = status;
                record.error = Some(error);
            }
            None => self.settle_compensation(record),
        }
        self.save(record).await?;
        let step = self.saga.steps[index].name;
        warn!(step, attempts, error = %error, outcome = given_up.outcome, "{}", given_up.consequence);
        Ok(())
    }

    fn next(&self, record: &SagaRecord) -> Result<Next, EngineError> {
        match record.status {
            SagaStatus::Completed
            | SagaStatus::Compensated
            | SagaStatus::CompensationFailed
            | SagaStatus::InDoubt => Ok(Next::Finished),
            SagaStatus::Pending | SagaStatus::Running => {
                match record
                    .steps
                    .iter()
                    .position(|s| s.status != StepStatus::Succeeded)
                {
                    None => Ok(Next::Settle(SagaStatus::Completed)),
                    Some(index) if record.steps[index].status == StepStatus::Pending => {
                        Ok(Next::Execute(index))
                    }
                    Some(index) => Err(invalid(
                        record,
                        format!(
                            "step {} is {} while the saga is {}",
                            record.steps[index].name, record.steps[index].status, record.status
                        ),
                    )),
                }
            }
            SagaStatus::Compensating => Ok(record
                .steps
                .iter()
                .rposition(|s| s.status.needs_compensation())
                .map_or(Next::SettleCompensation, Next::Compensate)),
        }
    }

    /// Where a compensating saga stands after the compensation of a step ended: COMPENSATING
    /// while a step is still to be undone (compensations are independent, so one that failed
    /// for good does not stop the others), then COMPENSATED, or COMPENSATION_FAILED with an
    /// error naming every step whose compensation failed.
    fn settle_compensation(&self, record: &mut SagaRecord) {
        if record.steps.iter().any(|s| s.status.needs_compensation()) {
            record.status = SagaStatus::Compensating;
            return;
        }
        let failures: Vec<String> = record
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::CompensationFailed)
            .map(|s| {
                let compensation = self
                    .saga
                    .step(&s.name)
                    .map_or("compensation", |step| step.compensation.name);
                let error = s.error.as_deref().unwrap_or("compensation failed");
                let error = error.strip_prefix("compensation: ").unwrap_or(error);
                format!(
                    "compensation {compensation} of step {} failed: {error}",
                    s.name
                )
            })
            .collect();
        if failures.is_empty() {
            record.status = SagaStatus::Compensated;
        } else {
            record.status = SagaStatus::CompensationFailed;
            record.error = Some(failures.join("; "));
        }
    }

    /// The step loop of [`Engine::run`] and [`Engine::advance`]: from the stored state, runs
    /// whatever comes next until the saga is finished or a call must wait for a later
    /// invocation.
    async fn drive(
        &self,
        transaction_id: &str,
        retries: Retries,
        deadline: Instant,
    ) -> Result<SagaRecord, EngineError> {
        let mut record = self.load(transaction_id).await?;
        if record.steps.len() != self.saga.steps.len() {
            return Err(invalid(
                &record,
                format!("the stored steps do not match saga {}", self.saga.name),
            ));
        }
        loop {
            match self.next(&record)? {
                Next::Finished => {
                    info!(status = %record.status, "saga finished");
                    return Ok(record);
                }
                Next::Settle(status) => {
                    record.status = status;
                    self.save(&mut record).await?;
                }
                Next::SettleCompensation => {
                    self.settle_compensation(&mut record);
                    self.save(&mut record).await?;
                }
                Next::Execute(index) => {
                    self.drive_call(&mut record, index, CallKind::Action, retries, deadline)
                        .await?
                }
                Next::Compensate(index) => {
                    self.drive_call(
                        &mut record,
                        index,
                        CallKind::Compensation,
                        retries,
                        deadline,
                    )
                    .await?
                }
            }
        }
    }

    /// Calls step `index`'s action or compensation under the retry regime and records what
    /// became of it: a success; a failure for good (an action's turns the saga to
    /// compensating, a compensation's leaves the step to a human); or, with redelivery, a failed
    /// attempt the next delivery retries (stored, and returned as the error).
    async fn drive_call(
        &self,
        record: &mut SagaRecord,
        index: usize,
        kind: CallKind,
        retries: Retries,
        deadline: Instant,
    ) -> Result<(), EngineError> {
        let step = &self.saga.steps[index];
        let (call, policy) = match kind {
            CallKind::Action => (
                StepCall::action(step, &record.transaction_id, &record.request),
                &step.retry,
            ),
            CallKind::Compensation => (
                StepCall::compensation(step, &record.transaction_id, &record.request),
                &step.compensation_retry,
            ),
        };
        // Attempts of earlier invocations that failed and were retried later (by redelivery)
        // are stored on the step; these add to them.
        let earlier = kind.attempts(&record.steps[index]);
        // Only an action's doubt matters: a compensation that ends in doubt already waits for a
        // human (COMPENSATION_FAILED).
        let was_in_doubt = kind == CallKind::Action && record.steps[index].in_doubt;
        let action = call.action.name;
        let called = self
            .call_settled(&call, policy, retries, earlier, was_in_doubt, deadline)
            .await?;
        match called {
            Called::Later {
                attempt,
                error,
                in_doubt,
            } => {
                match retries {
                    Retries::Redelivery => {
                        self.record_attempt_failure(record, index, kind, &error, in_doubt)
                            .await?
                    }
                    // The attempts of this invocation are not stored, but their doubt is: the
                    // invocation that resumes must not take a refused connection for a clean
                    // failure.
                    Retries::InProcess if in_doubt != was_in_doubt => {
                        record.steps[index].in_doubt = in_doubt;
                        self.save(record).await?;
                    }
                    Retries::InProcess => {}
                }
                Err(EngineError::Step {
                    step: step.name,
                    action,
                    attempt,
                    source: error,
                })
            }
            Called::Succeeded { attempts } => match kind {
                CallKind::Action => {
                    self.record_step_success(record, index, earlier + attempts)
                        .await
                }
                CallKind::Compensation => {
                    self.record_compensation_success(record, index, earlier + attempts)
                        .await
                }
            },
            Called::Failed {
                attempts,
                error,
                in_doubt,
            } => {
                let given_up = match kind {
                    CallKind::Action if in_doubt => {
                        GivenUp::in_doubt(step, earlier + attempts, &error)
                    }
                    CallKind::Action => GivenUp::action(step, &error),
                    CallKind::Compensation => GivenUp::compensation(&error),
                };
                self.record_given_up(record, index, kind, earlier + attempts, &error, given_up)
                    .await
            }
        }
    }

    /// Makes `call` under the retry regime and says whether it succeeded or failed for good;
    /// returns an error when the call should be tried again later (deadline, redelivery).
    /// `earlier` is the number of attempts of this call already stored.
    async fn call_settled(
        &self,
        call: &StepCall<'_>,
        policy: &RetryPolicy,
        retries: Retries,
        earlier: u32,
        was_in_doubt: bool,
        deadline: Instant,
    ) -> Result<Called, EngineError> {
        self.check_time_left(call.step, call.action, deadline)?;
        match retries {
            Retries::InProcess => {
                let attempts = AtomicU32::new(0);
                let in_doubt = AtomicBool::new(was_in_doubt);
                let result = retry_until(policy, deadline, || async {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let result = self.caller.call(call, deadline).await;
                    if let Err(error) = &result {
                        let doubt = error.leaves_in_doubt(in_doubt.load(Ordering::Relaxed));
                        in_doubt.store(doubt, Ordering::Relaxed);
                    }
                    result
                })
                .await;
                let attempts = attempts.load(Ordering::Relaxed);
                let in_doubt = in_doubt.load(Ordering::Relaxed);
                match result {
                    Ok(_) => Ok(Called::Succeeded { attempts }),
                    Err(error) if !error.is_retryable() || attempts > policy.max_retries => {
                        Ok(Called::Failed {
                            attempts,
                            error,
                            in_doubt,
                        })
                    }
                    // Retries are left, but not the time to use them: resume later.
                    Err(error) => {
                        warn!(step = call.step.name, action = call.action.name, attempts, in_doubt, error = %error,
                              "deadline reached while retrying; the saga resumes later");
                        Ok(Called::Later {
                            attempt: earlier + attempts,
                            error,
                            in_doubt,
                        })
                    }
                }
            }
            Retries::Redelivery => {
                let attempt = earlier + 1;
                match self.caller.call(call, deadline).await {
                    Ok(_) => Ok(Called::Succeeded { attempts: 1 }),
                    Err(error) => {
                        let in_doubt = error.leaves_in_doubt(was_in_doubt);
                        if !error.is_retryable() || attempt > policy.max_retries {
                            return Ok(Called::Failed {
                                attempts: 1,
                                error,
                                in_doubt,
                            });
                        }
                        warn!(step = call.step.name, action = call.action.name, attempt, in_doubt, error = %error,
                              "retryable failure; the message will be redelivered");
                        Ok(Called::Later {
                            attempt,
                            error,
                            in_doubt,
                        })
                    }
                }
            }
        }
    }

    /// Refuses to start a call that could not finish before `deadline`: it would be cut off
    /// with its effect unknown, while the next invocation can make it whole.
    fn check_time_left(
        &self,
        step: &Step,
        action: &Action,
        deadline: Instant,
    ) -> Result<(), EngineError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < step.timeout {
            warn!(
                step = step.name,
                action = action.name,
                left_ms = left.as_millis() as u64,
                "not enough time left for the call; the saga resumes later"
            );
            return Err(EngineError::DeadlineReached {
                step: step.name,
                action: action.name,
            });
        }
        Ok(())
    }
}

/// Whether step `index` is `done` already: a Step Functions task retried after its work was
/// recorded, which calls nothing again.
fn already(record: &SagaRecord, index: usize, done: StepStatus) -> bool {
    let step = &record.steps[index];
    if step.status != done {
        return false;
    }
    // Reads "succeeded" or "compensated": the status the task would have set.
    let status = done.as_str().to_lowercase();
    info!(step = step.name, "step already {status}; not called again");
    true
}

/// Operator's `saga retry` of a saga IN_DOUBT: the in-doubt step goes back to PENDING with
/// fresh retries (its doubt kept, so only a definite answer settles it) and the saga to
/// RUNNING, ready to be handed to its pattern again (the orchestrator's resume, a work message,
/// a new execution), which asks the call again with the same idempotency key: the provider's
/// answer settles it, forward or into compensation. Needs only the store, so the operator's
/// tool runs it without calling any SaaS. Returns the record as stored; a saga that is not
/// IN_DOUBT is refused, so asking twice reopens once.
pub async fn reopen_in_doubt<S: SagaStore>(
    store: &S,
    transaction_id: &str,
) -> Result<SagaRecord, EngineError> {
    let mut record = store
        .get(transaction_id)
        .await?
        .ok_or_else(|| EngineError::Store(StoreError::NotFound(transaction_id.to_owned())))?;
    if record.status != SagaStatus::InDoubt {
        return Err(invalid(
            &record,
            format!(
                "only a saga IN_DOUBT is asked again; this one is {}",
                record.status
            ),
        ));
    }
    let Some(index) = record
        .steps
        .iter()
        .position(|s| s.status == StepStatus::InDoubt)
    else {
        return Err(invalid(&record, "no step is IN_DOUBT".to_owned()));
    };
    let now = now_rfc3339();
    let step = &mut record.steps[index];
    step.status = StepStatus::Pending;
    step.attempts = 0;
    step.in_doubt = true;
    step.updated_at = Some(now.clone());
    record.status = SagaStatus::Running;
    record.error = None;
    record.updated_at = now;
    record.version = store.transition(&record).await?;
    info!(
        step = record.steps[index].name,
        "saga in doubt asked again by an operator: the step's call is repeated with the same idempotency key"
    );
    Ok(record)
}

/// The saga's error while it is IN_DOUBT: which call, after what, and what to do.
fn in_doubt_reason(step: &Step, after: &str, error: &str) -> String {
    format!(
        "step {} {} in doubt after {after}: {error}; the effect may have landed, so nothing was compensated: ask again with `cargo xtask saga retry`",
        step.name, step.action.name
    )
}

fn invalid(record: &SagaRecord, reason: String) -> EngineError {
    EngineError::InvalidOperation {
        transaction_id: record.transaction_id.clone(),
        reason,
    }
}
