//! The saga engine against both real stores and the fake SaaS over real HTTP: success in N + 1
//! writes, compensation in reverse order, retries of transient failures and rate limits, lost
//! responses, crashes at every point, failing compensations, and the SQS and Step Functions
//! ways of driving a saga.

use crate::common;

use std::time::{Duration, Instant};

use common::crash::{Crash, CrashPoint, CrashingCaller, CrashingStore};
use common::generous_deadline;
use sagaform_fake_saas::{Effect, FakeSaas, Fault, FaultRule, TransactionLedger};
use sagaform_runtime::engine::Engine;
use sagaform_runtime::errors::{EngineError, ErrorClass};
use sagaform_runtime::model::{SagaRecord, SagaStatus, StepStatus};
use sagaform_runtime::store::{ConfiguredStore, CountingStore, SagaStore};
use sagaform_saas_client::SaasClient;
use sagaform_saga::PURCHASE;
use sagaform_testkit::{Backend, TestStore, fake_saas, purchase};

/// A store, the fake SaaS and a client for it.
struct World {
    store: TestStore,
    fake: FakeSaas,
    client: SaasClient,
}

impl World {
    async fn new(backend: Backend) -> World {
        let store = TestStore::new(backend).await;
        let (fake, client) = fake_saas().await;
        World {
            store,
            fake,
            client,
        }
    }

    fn engine(&self) -> Engine<&ConfiguredStore, &SaasClient> {
        Engine::new(PURCHASE, self.store.store(), &self.client)
    }

    async fn start(&self) -> SagaRecord {
        self.engine().start(purchase()).await.unwrap()
    }

    fn ledger(&self, transaction_id: &str) -> TransactionLedger {
        self.fake.ledger().transaction(transaction_id)
    }

    /// Fails `action` of `service` for this transaction only.
    fn fail(
        &self,
        transaction_id: &str,
        service: &str,
        action: &str,
        fault: Fault,
        times: Option<u32>,
    ) {
        let mut rule = FaultRule::new(service, action, fault).for_transaction(transaction_id);
        if let Some(times) = times {
            rule = rule.times(times);
        }
        self.fake.faults().add(rule).unwrap();
    }

    async fn stored(&self, transaction_id: &str) -> SagaRecord {
        self.store
            .store()
            .get(transaction_id)
            .await
            .unwrap()
            .unwrap()
    }
}

fn declined() -> Fault {
    Fault::Reject {
        status: 422,
        reason: "declined".into(),
    }
}

/// A retryable failure that says the call was not applied (429): retried, and compensated
/// once the retries are used up.
fn busy() -> Fault {
    Fault::RateLimited {
        retry_after_secs: 0,
    }
}

/// Every attempt of a call times out and its effect lands afterwards (past the test client's
/// 2 s request timeout).
fn late() -> Fault {
    Fault::LateEffect {
        effect_after_ms: 2_300,
        hang_ms: 30_000,
    }
}

fn step_statuses(record: &SagaRecord) -> Vec<StepStatus> {
    record.steps.iter().map(|s| s.status).collect()
}

/// Every action of the saga took effect exactly once and nothing was undone.
fn assert_each_action_applied_once(ledger: &TransactionLedger) {
    for step in PURCHASE.steps {
        let service = ledger.service(step.service);
        assert_eq!(
            service.actions_applied,
            [step.action.name],
            "{}: {service:?}",
            step.service
        );
        assert!(
            service.compensations_applied.is_empty(),
            "{}: {service:?}",
            step.service
        );
    }
    assert_eq!(ledger.outstanding(), PURCHASE.steps.len() as i64);
}

/// The first two steps took effect once and were undone once; the third did nothing.
fn assert_third_step_failure_fully_compensated(ledger: &TransactionLedger) {
    assert_eq!(ledger.outstanding(), 0, "{ledger:?}");
    for step in &PURCHASE.steps[..2] {
        let service = ledger.service(step.service);
        assert_eq!(service.actions_applied, [step.action.name], "{service:?}");
        assert_eq!(
            service.compensations_applied,
            [step.compensation.name],
            "{service:?}"
        );
    }
    assert!(ledger.service("entitlements").actions_applied.is_empty());
}

async fn a_successful_saga_costs_one_state_write_per_step_plus_its_creation(backend: Backend) {
    let world = World::new(backend).await;
    let counting = CountingStore::new(world.store.store());
    let engine = Engine::new(PURCHASE, &counting, &world.client);
    let record = engine.start(purchase()).await.unwrap();
    let finished = engine
        .run(&record.transaction_id, generous_deadline())
        .await
        .unwrap();
    assert_eq!(finished.status, SagaStatus::Completed);
    assert_eq!(step_statuses(&finished), [StepStatus::Succeeded; 3]);
    let n = PURCHASE.steps.len() as u64;
    // The contract allows N + 2; the engine folds RUNNING into the first step's result and
    // COMPLETED into the last one's, so it needs N + 1.
    assert_eq!(counting.state_writes(), n + 1);
    assert!(counting.state_writes() <= n + 2);
    assert_eq!(world.stored(&record.transaction_id).await, finished);
    assert_each_action_applied_once(&world.ledger(&record.transaction_id));
}

async fn a_permanent_failure_at_step_three_compensates_steps_three_two_one_in_order(
    backend: Backend,
) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "entitlements", "grant", declined(), None);
    let finished = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::Compensated);
    assert_eq!(step_statuses(&finished), [StepStatus::Compensated; 3]);
    assert!(
        finished.steps[2]
            .error
            .as_deref()
            .unwrap()
            .contains("declined"),
        "{finished:?}"
    );
    assert!(
        finished.error.as_deref().unwrap().contains("entitlement"),
        "{finished:?}"
    );

    let ledger = world.ledger(tx);
    let compensations: Vec<(&str, Effect)> = ledger
        .effects
        .iter()
        .filter(|e| e.effect != Effect::Applied)
        .map(|e| (e.step.as_str(), e.effect))
        .collect();
    assert_eq!(
        compensations,
        [
            ("entitlement", Effect::Noop),
            ("payment", Effect::Compensated),
            ("stock", Effect::Compensated)
        ]
    );
    assert!(
        ledger
            .effects
            .windows(2)
            .all(|pair| pair[0].seq < pair[1].seq)
    );
    assert_third_step_failure_fully_compensated(&ledger);
}

async fn transient_failures_and_rate_limits_are_retried_and_each_effect_applies_once(
    backend: Backend,
) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(
        tx,
        "inventory",
        "reserve",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        Some(1),
    );
    world.fail(tx, "payments", "charge", Fault::Unavailable, Some(2));
    let started = Instant::now();
    let finished = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::Completed);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After of 1 s was not honoured"
    );
    assert_eq!(finished.steps[0].attempts, 2);
    assert_eq!(finished.steps[1].attempts, 3);
    let ledger = world.ledger(tx);
    assert_each_action_applied_once(&ledger);
    assert_eq!(ledger.service("inventory").calls["reserve"], 2);
    assert_eq!(ledger.service("payments").calls["charge"], 3);
}

async fn a_lost_response_is_retried_with_the_same_key_without_a_second_effect(backend: Backend) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "payments", "charge", Fault::ResponseLost, Some(1));
    let finished = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::Completed);
    let ledger = world.ledger(tx);
    assert_each_action_applied_once(&ledger);
    let payments = ledger.service("payments");
    assert_eq!(payments.calls["charge"], 2);
    assert_eq!(payments.replays, 1);
}

/// Runs the saga until the crash point, checks it crashed, and resumes it with a healthy engine.
async fn crash_then_resume(world: &World, transaction_id: &str, point: CrashPoint) -> SagaRecord {
    let crash = Crash::at(point);
    let caller = CrashingCaller {
        inner: &world.client,
        crash: &crash,
    };
    let store = CrashingStore {
        inner: world.store.store(),
        crash: &crash,
    };
    let crashing = Engine::new(PURCHASE, &store, &caller);
    let outcome = crash
        .run(crashing.run(transaction_id, generous_deadline()))
        .await;
    assert!(
        outcome.is_none(),
        "{point:?}: the saga finished without reaching the crash point: {outcome:?}"
    );
    world
        .engine()
        .run(transaction_id, generous_deadline())
        .await
        .unwrap()
}

async fn a_crash_at_any_point_neither_skips_nor_repeats_an_effect(backend: Backend) {
    let world = World::new(backend).await;
    for n in 1..=PURCHASE.steps.len() {
        for point in [
            CrashPoint::BeforeCall(n),
            CrashPoint::AfterCall(n),
            CrashPoint::BeforeWrite(n),
            CrashPoint::AfterWrite(n),
        ] {
            let record = world.start().await;
            let tx = &record.transaction_id;
            let finished = crash_then_resume(&world, tx, point).await;
            assert_eq!(finished.status, SagaStatus::Completed, "{point:?}");
            assert_eq!(
                step_statuses(&finished),
                [StepStatus::Succeeded; 3],
                "{point:?}"
            );
            let ledger = world.ledger(tx);
            assert_each_action_applied_once(&ledger);
            // A crash after the call (or before recording it) makes the resume repeat that one
            // call, which the downstream answers from its idempotency record.
            let expected_replays = u64::from(matches!(
                point,
                CrashPoint::AfterCall(_) | CrashPoint::BeforeWrite(_)
            ));
            let replays: u64 = ledger.services.values().map(|s| s.replays).sum();
            assert_eq!(replays, expected_replays, "{point:?}: {ledger:?}");
        }
    }
}

async fn a_crash_during_compensation_resumes_without_repeating_or_skipping_an_undo(
    backend: Backend,
) {
    let world = World::new(backend).await;
    // Calls: 1 reserve, 2 charge, 3 grant (declined), 4 revoke, 5 refund, 6 release.
    // Writes: 1 stock, 2 payment, 3 COMPENSATING, 4 entitlement, 5 payment, 6 stock + COMPENSATED.
    let mut points = Vec::new();
    for n in 3..=6 {
        points.extend([
            CrashPoint::AfterCall(n),
            CrashPoint::BeforeWrite(n),
            CrashPoint::AfterWrite(n),
        ]);
        if n > 3 {
            points.push(CrashPoint::BeforeCall(n));
        }
    }
    for point in points {
        let record = world.start().await;
        let tx = &record.transaction_id;
        world.fail(tx, "entitlements", "grant", declined(), None);
        let finished = crash_then_resume(&world, tx, point).await;
        assert_eq!(finished.status, SagaStatus::Compensated, "{point:?}");
        assert_eq!(
            step_statuses(&finished),
            [StepStatus::Compensated; 3],
            "{point:?}"
        );
        assert_third_step_failure_fully_compensated(&world.ledger(tx));
    }
}

async fn a_saga_never_goes_forward_again_once_compensation_started(backend: Backend) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    // The grant is refused once; the step counts as failed and is compensated. The process
    // dies right after the grant's revoke. On resume the grant would now answer success (the
    // fault is spent): going forward would complete a saga whose purchase was being undone.
    world.fail(tx, "entitlements", "grant", declined(), Some(1));
    let revoke_call = 2 + 1 + 1;
    let finished = crash_then_resume(&world, tx, CrashPoint::AfterCall(revoke_call)).await;
    assert_eq!(finished.status, SagaStatus::Compensated);
    let ledger = world.ledger(tx);
    assert_eq!(ledger.outstanding(), 0, "{ledger:?}");
    assert_eq!(
        ledger.service("entitlements").calls["grant"],
        1,
        "{ledger:?}"
    );
    assert_eq!(ledger.service("payments").compensations_applied, ["refund"]);
}

async fn a_compensation_failing_transiently_is_retried_and_succeeds(backend: Backend) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "entitlements", "grant", declined(), None);
    world.fail(tx, "payments", "refund", Fault::Unavailable, Some(2));
    let finished = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::Compensated);
    assert_eq!(finished.steps[1].attempts, 1, "one charge");
    assert_eq!(finished.steps[1].compensation_attempts, 3, "three refunds");
    let ledger = world.ledger(tx);
    assert_third_step_failure_fully_compensated(&ledger);
    assert_eq!(ledger.service("payments").calls["refund"], 3);
}

async fn a_compensation_failing_for_good_still_undoes_the_earlier_steps_then_needs_a_human(
    backend: Backend,
) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "entitlements", "grant", declined(), None);
    world.fail(
        tx,
        "payments",
        "refund",
        Fault::Reject {
            status: 400,
            reason: "refund refused".into(),
        },
        None,
    );
    let finished = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::CompensationFailed);
    // The refund failing for good does not keep the stock reserved: compensations are
    // independent, so the release still runs.
    assert_eq!(
        step_statuses(&finished),
        [
            StepStatus::Compensated,
            StepStatus::CompensationFailed,
            StepStatus::Compensated
        ]
    );
    assert_eq!(
        world.ledger(tx).service("inventory").compensations_applied,
        ["release"]
    );
    assert!(
        finished
            .error
            .as_deref()
            .unwrap()
            .contains("compensation refund of step payment failed"),
        "{finished:?}"
    );
    // Nothing more happens to a saga that needs a human, however often it is resumed.
    let calls_before = world.ledger(tx).total_calls();
    let again = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(again, finished);
    assert_eq!(world.ledger(tx).total_calls(), calls_before);
}

async fn the_sqs_worker_leaves_retryable_failures_to_redelivery_until_retries_run_out(
    backend: Backend,
) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "payments", "charge", busy(), None);
    let max_deliveries = PURCHASE.step("payment").unwrap().retry.max_retries;
    for _ in 1..=max_deliveries {
        let error = world
            .engine()
            .advance(tx, generous_deadline())
            .await
            .unwrap_err();
        assert_eq!(error.class(), ErrorClass::Retryable, "{error}");
        let stored = world.stored(tx).await;
        assert_eq!(stored.status, SagaStatus::Running);
        assert_eq!(
            step_statuses(&stored),
            [
                StepStatus::Succeeded,
                StepStatus::Pending,
                StepStatus::Pending
            ]
        );
    }
    let finished = world
        .engine()
        .advance(tx, generous_deadline())
        .await
        .unwrap();
    assert_eq!(finished.status, SagaStatus::Compensated);
    let ledger = world.ledger(tx);
    assert_eq!(ledger.outstanding(), 0);
    assert_eq!(ledger.service("inventory").actions_applied, ["reserve"]);
    assert_eq!(
        ledger.service("payments").calls["charge"],
        u64::from(max_deliveries) + 1
    );

    // A duplicate delivery of a finished saga's message calls nothing and writes nothing.
    let calls = ledger.total_calls();
    let duplicate = world
        .engine()
        .advance(tx, generous_deadline())
        .await
        .unwrap();
    assert_eq!(duplicate, finished);
    assert_eq!(world.ledger(tx).total_calls(), calls);
}

async fn the_sqs_worker_completes_a_saga_once_the_failure_passes(backend: Backend) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "payments", "charge", Fault::Unavailable, Some(1));
    assert!(
        world
            .engine()
            .advance(tx, generous_deadline())
            .await
            .is_err()
    );
    let finished = world
        .engine()
        .advance(tx, generous_deadline())
        .await
        .unwrap();
    assert_eq!(finished.status, SagaStatus::Completed);
    assert_each_action_applied_once(&world.ledger(tx));
}

async fn step_functions_tasks_execute_and_compensate_one_step_each(backend: Backend) {
    let world = World::new(backend).await;
    let engine = world.engine();
    let deadline = generous_deadline;

    // Happy path: the first execute sets RUNNING, the last one COMPLETED; a retried task does
    // not call again.
    let happy = world.start().await;
    let tx = &happy.transaction_id;
    let after_first = engine.execute_step(tx, "stock", deadline()).await.unwrap();
    assert_eq!(after_first.status, SagaStatus::Running);
    engine.execute_step(tx, "stock", deadline()).await.unwrap();
    assert_eq!(world.ledger(tx).service("inventory").calls["reserve"], 1);
    let out_of_order = engine
        .execute_step(tx, "entitlement", deadline())
        .await
        .unwrap_err();
    assert_eq!(
        out_of_order.class(),
        ErrorClass::Permanent,
        "{out_of_order}"
    );
    engine
        .execute_step(tx, "payment", deadline())
        .await
        .unwrap();
    let done = engine
        .execute_step(tx, "entitlement", deadline())
        .await
        .unwrap();
    assert_eq!(done.status, SagaStatus::Completed);
    assert_each_action_applied_once(&world.ledger(tx));

    // Failure at step 3: the execute reports Permanent, then the state machine compensates
    // 3, 2, 1; the first compensate sets COMPENSATING, the last COMPENSATED.
    let failing = world.start().await;
    let tx = &failing.transaction_id;
    world.fail(tx, "entitlements", "grant", declined(), None);
    engine.execute_step(tx, "stock", deadline()).await.unwrap();
    engine
        .execute_step(tx, "payment", deadline())
        .await
        .unwrap();
    let error = engine
        .execute_step(tx, "entitlement", deadline())
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    let diagnostic: lambda_runtime::Diagnostic = error.into();
    assert_eq!(diagnostic.error_type, "Permanent");
    let first = engine
        .compensate_step(
            tx,
            "entitlement",
            Some("Permanent: declined".into()),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(first.status, SagaStatus::Compensating);
    assert_eq!(first.steps[2].error.as_deref(), Some("Permanent: declined"));
    engine
        .compensate_step(tx, "payment", None, deadline())
        .await
        .unwrap();
    let last = engine
        .compensate_step(tx, "stock", None, deadline())
        .await
        .unwrap();
    assert_eq!(last.status, SagaStatus::Compensated);
    assert_third_step_failure_fully_compensated(&world.ledger(tx));
    let late = engine
        .execute_step(tx, "entitlement", deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(late, EngineError::InvalidOperation { .. }),
        "{late}"
    );
}

async fn step_functions_mark_failed_records_a_compensation_that_failed_for_good(backend: Backend) {
    let world = World::new(backend).await;
    let engine = world.engine();
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "payments", "charge", declined(), None);
    world.fail(
        tx,
        "payments",
        "refund",
        Fault::Reject {
            status: 400,
            reason: "refund refused".into(),
        },
        None,
    );
    engine
        .execute_step(tx, "stock", generous_deadline())
        .await
        .unwrap();
    assert!(
        engine
            .execute_step(tx, "payment", generous_deadline())
            .await
            .is_err()
    );
    let error = engine
        .compensate_step(tx, "payment", None, generous_deadline())
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    let failed = engine
        .mark_failed(tx, "payment", Some("refund refused".into()))
        .await
        .unwrap();
    // The stock is still to be released: the saga keeps compensating.
    assert_eq!(failed.status, SagaStatus::Compensating);
    assert_eq!(failed.steps[1].status, StepStatus::CompensationFailed);
    // A retried mark_failed task changes nothing.
    let again = engine.mark_failed(tx, "payment", None).await.unwrap();
    assert_eq!(again, failed);
    let settled = engine
        .compensate_step(tx, "stock", None, generous_deadline())
        .await
        .unwrap();
    assert_eq!(settled.status, SagaStatus::CompensationFailed);
    assert_eq!(
        step_statuses(&settled),
        [
            StepStatus::Compensated,
            StepStatus::CompensationFailed,
            StepStatus::Pending
        ]
    );
    assert!(
        settled
            .error
            .as_deref()
            .unwrap()
            .contains("compensation refund of step payment failed: refund refused"),
        "{settled:?}"
    );
}

/// Delivers the saga's message until the worker finishes it, as the queue would; returns the
/// finished record and the number of deliveries.
async fn deliver_until_finished(world: &World, tx: &str) -> (SagaRecord, u32) {
    for delivery in 1..=100 {
        if let Ok(finished) = world.engine().advance(tx, generous_deadline()).await {
            return (finished, delivery);
        }
    }
    panic!(
        "the saga {tx} did not finish in 100 deliveries: {:?}",
        world.stored(tx).await
    );
}

async fn the_sqs_worker_gives_each_step_its_own_retries(backend: Backend) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    // Three transient stock failures use up the stock's retries but not the payment's: the
    // message's fourth receive, where the charge fails, is the charge's first attempt.
    world.fail(tx, "inventory", "reserve", Fault::Unavailable, Some(3));
    world.fail(tx, "payments", "charge", Fault::Unavailable, Some(1));
    let (finished, deliveries) = deliver_until_finished(&world, tx).await;
    assert_eq!(finished.status, SagaStatus::Completed, "{finished:?}");
    assert_eq!(deliveries, 5);
    assert_eq!(
        finished
            .steps
            .iter()
            .map(|s| s.attempts)
            .collect::<Vec<_>>(),
        [4, 2, 1]
    );
    assert_each_action_applied_once(&world.ledger(tx));
}

async fn the_sqs_worker_ends_compensation_failed_when_a_compensation_keeps_failing_transiently(
    backend: Backend,
) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "entitlements", "grant", declined(), None);
    world.fail(tx, "payments", "refund", Fault::Unavailable, None);
    let (finished, _) = deliver_until_finished(&world, tx).await;
    assert_eq!(
        finished.status,
        SagaStatus::CompensationFailed,
        "{finished:?}"
    );
    let refund = PURCHASE.step("payment").unwrap().compensation_retry;
    assert_eq!(
        finished.steps[1].compensation_attempts,
        refund.max_retries + 1
    );
    let ledger = world.ledger(tx);
    assert_eq!(
        ledger.service("payments").calls["refund"],
        u64::from(refund.max_retries) + 1
    );
    // The release ran although the refund never went through.
    assert_eq!(
        ledger.service("inventory").compensations_applied,
        ["release"]
    );
}

async fn a_deadline_too_close_leaves_the_saga_untouched_and_resumable(backend: Backend) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    let error = world
        .engine()
        .run(tx, Instant::now() + Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(error, EngineError::DeadlineReached { step: "stock", .. }),
        "{error}"
    );
    assert_eq!(error.class(), ErrorClass::Retryable);
    assert_eq!(world.stored(tx).await.version, 1);
    assert_eq!(world.ledger(tx).total_calls(), 0);
    let finished = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::Completed);
}

/// The charge gets no definite answer on any attempt while its effect lands late: the saga
/// parks IN_DOUBT with nothing compensated (the old engine refunded, ended COMPENSATED, and then
/// the charge landed: charged with nothing to show for it). Asked again, the provider answers
/// with the charge that landed and the saga completes, each effect once.
async fn an_action_in_doubt_parks_the_saga_and_asked_again_completes(backend: Backend) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "payments", "charge", late(), None);
    let parked = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(parked.status, SagaStatus::InDoubt, "{parked:#?}");
    assert_eq!(
        step_statuses(&parked),
        [
            StepStatus::Succeeded,
            StepStatus::InDoubt,
            StepStatus::Pending
        ]
    );
    assert!(parked.steps[1].in_doubt);
    let error = parked.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("step payment charge in doubt") && error.contains("saga retry"),
        "{error}"
    );
    let ledger = world.ledger(tx);
    assert!(
        !ledger.service("payments").calls.contains_key("refund"),
        "{ledger:?}"
    );
    assert!(ledger.service("inventory").compensations_applied.is_empty());
    // Parked means parked: running it again calls nothing.
    let calls = world.ledger(tx).total_calls();
    assert_eq!(
        world.engine().run(tx, generous_deadline()).await.unwrap(),
        parked
    );
    assert_eq!(world.ledger(tx).total_calls(), calls);

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        world.ledger(tx).service("payments").outstanding,
        1,
        "the charge landed"
    );
    world.fake.faults().clear();
    let reopened = world.engine().reopen(tx).await.unwrap();
    assert_eq!(reopened.status, SagaStatus::Running);
    assert_eq!(reopened.steps[1].status, StepStatus::Pending);
    let refused = world.engine().reopen(tx).await.unwrap_err();
    assert!(
        refused.to_string().contains("this one is RUNNING"),
        "{refused}"
    );
    let finished = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::Completed);
    assert_each_action_applied_once(&world.ledger(tx));
    assert!(!finished.steps[1].in_doubt);
}

/// A timeout then refused connections' kin (429s) until the retries end: the 429s say nothing
/// of the first attempt, so the step stays in doubt; a definite refusal after a timeout settles
/// it and the saga compensates.
async fn only_a_definite_answer_ends_a_doubt(backend: Backend) {
    let world = World::new(backend).await;
    let doubtful = world.start().await;
    let tx = &doubtful.transaction_id;
    world.fail(tx, "payments", "charge", Fault::Unavailable, Some(1));
    world.fail(tx, "payments", "charge", busy(), None);
    let parked = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(parked.status, SagaStatus::InDoubt, "{parked:#?}");

    let refused = world.start().await;
    let tx = &refused.transaction_id;
    world.fail(tx, "payments", "charge", Fault::Unavailable, Some(1));
    world.fail(tx, "payments", "charge", declined(), None);
    let compensated = world.engine().run(tx, generous_deadline()).await.unwrap();
    assert_eq!(
        compensated.status,
        SagaStatus::Compensated,
        "{compensated:#?}"
    );
}

/// The sqs worker: the doubt is stored with each failed attempt, so a redelivery that meets a
/// 429 does not make the charge look cleanly failed; the saga parks IN_DOUBT.
async fn the_sqs_worker_parks_a_saga_in_doubt_across_deliveries(backend: Backend) {
    let world = World::new(backend).await;
    let record = world.start().await;
    let tx = &record.transaction_id;
    world.fail(tx, "payments", "charge", Fault::Unavailable, Some(1));
    world.fail(tx, "payments", "charge", busy(), None);
    let (parked, deliveries) = deliver_until_finished(&world, tx).await;
    assert_eq!(parked.status, SagaStatus::InDoubt, "{parked:#?}");
    let retries = PURCHASE.step("payment").unwrap().retry.max_retries;
    assert_eq!(
        deliveries,
        retries + 1,
        "one delivery per charge attempt (the first also reserves the stock)"
    );
    assert_eq!(parked.steps[1].attempts, retries + 1);
    assert!(
        !world
            .ledger(tx)
            .service("payments")
            .calls
            .contains_key("refund")
    );
}

/// Step Functions: each in-doubt attempt is stored, and `give_up` decides from the caught error
/// and that: `InDoubt` and Lambda-level failures park, `Retryable` parks after an in-doubt
/// attempt, `Permanent` compensates, and a step found succeeded is left as it is.
async fn step_functions_give_up_parks_what_is_in_doubt_and_compensates_what_failed(
    backend: Backend,
) {
    let world = World::new(backend).await;
    let engine = world.engine();
    let give_up = |tx: String, caught: &'static str| {
        let engine = world.engine();
        async move {
            engine
                .give_up_step(&tx, "stock", caught, Some(format!("{caught}: boom")))
                .await
                .unwrap()
        }
    };
    for caught in [
        "InDoubt",
        "States.Timeout",
        "Lambda.Unknown",
        "States.TaskFailed",
    ] {
        let tx = world.start().await.transaction_id;
        let parked = give_up(tx.clone(), caught).await;
        assert_eq!(
            (parked.status, parked.steps[0].status),
            (SagaStatus::InDoubt, StepStatus::InDoubt),
            "{caught}"
        );
        // Repeated (a retried Task), it changes nothing.
        assert_eq!(give_up(tx, caught).await, parked);
    }

    let tx = world.start().await.transaction_id;
    let failed = give_up(tx.clone(), "Permanent").await;
    assert_eq!(
        (failed.status, failed.steps[0].status),
        (SagaStatus::Compensating, StepStatus::Failed)
    );
    let tx = world.start().await.transaction_id;
    let failed = give_up(tx, "Retryable").await;
    assert_eq!(failed.status, SagaStatus::Compensating);

    // A 503 is stored as a doubt; the 429s of the next attempts keep it.
    let tx = world.start().await.transaction_id;
    world.fail(&tx, "inventory", "reserve", Fault::Unavailable, Some(1));
    world.fail(&tx, "inventory", "reserve", busy(), None);
    let first = engine
        .execute_step(&tx, "stock", generous_deadline())
        .await
        .unwrap_err();
    assert_eq!(first.error_type(), "InDoubt");
    let second = engine
        .execute_step(&tx, "stock", generous_deadline())
        .await
        .unwrap_err();
    assert_eq!(second.error_type(), "Retryable");
    assert!(world.stored(&tx).await.steps[0].in_doubt);
    assert_eq!(give_up(tx, "Retryable").await.status, SagaStatus::InDoubt);

    // The step succeeded but the Task's answer was lost: giving up leaves it as it is.
    let tx = world.start().await.transaction_id;
    engine
        .execute_step(&tx, "stock", generous_deadline())
        .await
        .unwrap();
    let found = give_up(tx, "States.Timeout").await;
    assert_eq!(
        (found.status, found.steps[0].status),
        (SagaStatus::Running, StepStatus::Succeeded)
    );
}

/// Runs each behaviour against both stores, one test per store and behaviour.
macro_rules! for_each_store {
    ($($behaviour:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::Backend::Postgres).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::Backend::DynamoDb).await;
                }
            )*
        }
    };
}

for_each_store!(
    a_successful_saga_costs_one_state_write_per_step_plus_its_creation,
    a_permanent_failure_at_step_three_compensates_steps_three_two_one_in_order,
    transient_failures_and_rate_limits_are_retried_and_each_effect_applies_once,
    a_lost_response_is_retried_with_the_same_key_without_a_second_effect,
    a_crash_at_any_point_neither_skips_nor_repeats_an_effect,
    a_crash_during_compensation_resumes_without_repeating_or_skipping_an_undo,
    a_saga_never_goes_forward_again_once_compensation_started,
    a_compensation_failing_transiently_is_retried_and_succeeds,
    a_compensation_failing_for_good_still_undoes_the_earlier_steps_then_needs_a_human,
    the_sqs_worker_leaves_retryable_failures_to_redelivery_until_retries_run_out,
    the_sqs_worker_gives_each_step_its_own_retries,
    the_sqs_worker_ends_compensation_failed_when_a_compensation_keeps_failing_transiently,
    the_sqs_worker_completes_a_saga_once_the_failure_passes,
    step_functions_tasks_execute_and_compensate_one_step_each,
    step_functions_mark_failed_records_a_compensation_that_failed_for_good,
    a_deadline_too_close_leaves_the_saga_untouched_and_resumable,
    an_action_in_doubt_parks_the_saga_and_asked_again_completes,
    only_a_definite_answer_ends_a_doubt,
    the_sqs_worker_parks_a_saga_in_doubt_across_deliveries,
    step_functions_give_up_parks_what_is_in_doubt_and_compensates_what_failed,
);
