//! The acceptance suite of the three saga patterns, written once against [`PatternDriver`].
//!
//! Each scenario submits purchases through the pattern's real API handler, has the saga run to
//! its end the way the pattern runs it (the orchestrator in the request, the sqs worker on each
//! delivery, the stepfunctions `step` handler per Task), and then judges the outcome from what a
//! client and the downstream see: the API's answers, the saga in the store, and the fake SaaS's
//! ledger. What only one pattern shows (the worker's deliveries, the execution's states) the
//! driver checks itself in [`PatternDriver::check_run`], told how the saga went ([`Course`]).
//!
//! [`acceptance_suite!`](crate::acceptance_suite) instantiates every scenario for a driver on
//! both stores.

use std::collections::HashSet;
use std::fmt::Debug;

pub use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
pub use sagaform_fake_saas::FakeSaas;
use sagaform_fake_saas::{Effect, Fault, FaultRule};
use sagaform_runtime::{SagaStatus, StepStatus};
use sagaform_saga::PURCHASE;
use serde_json::{Value, json};

use crate::{
    Backend, LogCapture, Reply, TestStore, get_transaction, post_transactions, purchase,
    request_ids_issued, request_ids_since,
};

/// How a saga went, for the driver's own checks of the answer and of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Course {
    /// Every step succeeded; `failed_calls` calls failed transiently on the way and were retried.
    Completed { failed_calls: usize },
    /// The last step failed for good and the saga was compensated in reverse order;
    /// `failed_calls` calls failed transiently on the way and were retried.
    Compensated { failed_calls: usize },
    /// The last step failed for good and the payment's compensation failed for good too.
    CompensationFailed,
    /// The payment's charge got no definite answer on any attempt: the saga parked IN_DOUBT
    /// with nothing compensated.
    InDoubt,
}

impl Course {
    /// A saga that completed without any failed call.
    pub const CLEAN: Course = Course::Completed { failed_calls: 0 };

    /// The status the saga ends with.
    pub fn status(self) -> SagaStatus {
        match self {
            Course::Completed { .. } => SagaStatus::Completed,
            Course::Compensated { .. } => SagaStatus::Compensated,
            Course::CompensationFailed => SagaStatus::CompensationFailed,
            Course::InDoubt => SagaStatus::InDoubt,
        }
    }
}

/// Where the Lambda instance running a saga dies in the crash scenarios. "Dies" means its
/// invocation's future is dropped there: nothing after that point runs, as when the instance is
/// killed (timeout, out of memory, a host failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// While the payment's charge is in flight: the scenario makes the fake hold its answer, and
    /// the instance dies before the answer comes ([`until_called`] tells the driver when).
    WhileChargeInFlight,
    /// After the invocation did all its work, before the event source saw its answer: the
    /// client's response, the message's deletion or the Task's result is lost.
    AfterTheWork,
}

/// Time left in an invocation that the crash scenarios kill: enough for the engine to start a
/// step (its longest call timeout, 5 s, plus the margin); a recovering driver waits it out
/// where the pattern guards a running saga until its invocation's deadline.
pub const KILLED_INVOCATION: std::time::Duration = std::time::Duration::from_secs(6);

/// Returns once the fake received a call of `service`'s `action`, for any transaction.
pub async fn until_called(fake: &FakeSaas, service: &str, action: &str) {
    loop {
        let called = fake.ledger().snapshot().transactions.values().any(|t| {
            t.service(service)
                .calls
                .get(action)
                .is_some_and(|calls| *calls > 0)
        });
        if called {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// One saga pattern with its handlers on a test store, the fake SaaS and the pattern's own
/// infrastructure (queue, state machine), driven as AWS would drive it.
// The suite runs on the current-thread runtime of `#[tokio::test]`: no future has to be Send.
#[allow(async_fn_in_trait)]
pub trait PatternDriver: Sized {
    /// An instance of the pattern's API function.
    type Api;
    /// What running a saga to its end showed beyond the store and the ledger.
    type Run: Debug;
    /// True when the API hands the saga over (to a queue or a state machine) and answers 202;
    /// false when it runs the saga in the request.
    const HANDS_OVER: bool;
    /// True when the saga record counts every attempt of a step's call; false where each retry
    /// is a new invocation that records its attempt afresh (Step Functions retrying a Task).
    const COUNTS_ATTEMPTS: bool;

    /// The pattern on a fresh store of `backend` and a fresh fake SaaS.
    async fn start(backend: Backend) -> Self;
    /// The store of the pattern's functions.
    fn store(&self) -> &TestStore;
    /// The fake SaaS the functions call.
    fn fake(&self) -> &FakeSaas;
    /// The API instance the scenarios use by default.
    fn api(&self) -> &Self::Api;
    /// Another API instance with its own store connection, as a second Lambda instance has.
    async fn another_api(&self) -> Self::Api;
    /// Sends `request` to `api` in an ordinary invocation.
    async fn call(&self, api: &Self::Api, request: ApiGatewayV2httpRequest) -> Reply;
    /// The hand-overs of sagas that are waiting to be run (messages in the queue, executions
    /// not run yet); always 0 where the API runs the saga itself.
    async fn waiting_handovers(&self) -> usize;
    /// Runs the saga `transaction_id` to its end as the pattern does, after the API answered.
    async fn finish(&self, transaction_id: &str) -> Self::Run;
    /// Checks what the pattern's own run of a saga showed, given how the saga went.
    async fn check_run(&self, run: &Self::Run, course: Course);
    /// Submits `request` (which carries an `Idempotency-Key`) and kills the Lambda instance that
    /// runs its saga at `kill` (the API's own invocation where the API runs the saga, else the
    /// first worker or Task invocation), then recovers the way the pattern recovers on AWS (the
    /// client's retry with the same key once the dead invocation's deadline passed, the
    /// message's redelivery, the Task's retry) and runs the saga to its end; its transaction id.
    async fn run_killed(&self, request: ApiGatewayV2httpRequest, kill: Kill) -> String;
    /// The operator's `saga retry` of the saga `transaction_id`, IN_DOUBT, as the pattern
    /// carries it out: the saga is reopened
    /// ([`reopen_in_doubt`](sagaform_runtime::engine::reopen_in_doubt)) and handed over again
    /// (a resume event, a work message, a new execution), then run to its end.
    async fn retry(&self, transaction_id: &str);

    /// Checks the API's first answer to a purchase whose saga goes `course`: 202 Accepted
    /// with the saga PENDING where the saga is handed over.
    fn check_answer(&self, answer: &Reply, course: Course) {
        assert!(
            Self::HANDS_OVER,
            "a pattern that runs the saga checks its own answers"
        );
        let url = format!("/transactions/{}", answer.transaction_id());
        assert_eq!(
            (answer.status, answer.body["status"].as_str()),
            (202, Some("PENDING")),
            "{course:?}: {:#}",
            answer.body
        );
        assert_eq!(answer.body["status_url"], url.as_str());
        assert_eq!(answer.header("location"), Some(url.as_str()));
    }
}

/// Writes, inside a driver's `impl PatternDriver`, the parts every driver has alike: the
/// accessors of its fields `store`, `fake` and `api`, and [`PatternDriver::call`] as an
/// invocation of the API's `handle` with `$invocation_time` until its deadline.
#[macro_export]
macro_rules! driver_fields_and_call {
    (invocation_time: $invocation_time:expr) => {
        fn store(&self) -> &$crate::TestStore {
            &self.store
        }

        fn fake(&self) -> &$crate::acceptance::FakeSaas {
            &self.fake
        }

        fn api(&self) -> &Self::Api {
            &self.api
        }

        async fn call(
            &self,
            api: &Self::Api,
            request: $crate::acceptance::ApiGatewayV2httpRequest,
        ) -> $crate::Reply {
            $crate::Reply::new(api.handle($crate::event(request, $invocation_time)).await)
        }
    };
}

/// Instantiates every scenario of the suite for `$driver`, once on DynamoDB (module `dynamodb`)
/// and once on PostgreSQL (module `postgres`); the test names are the scenarios'.
#[macro_export]
macro_rules! acceptance_suite {
    ($driver:ty) => {
        $crate::acceptance_suite!(@store dynamodb, DynamoDb, $driver);
        $crate::acceptance_suite!(@store postgres, Postgres, $driver);
    };
    (@store $module:ident, $backend:ident, $driver:ty) => {
        mod $module {
            use super::*;
            $crate::acceptance_suite!(@scenarios $backend, $driver,
                a_purchase_completes_with_each_effect_applied_once,
                concurrent_duplicates_run_one_saga_and_call_each_service_once,
                a_sequential_duplicate_replays_the_answer_without_calling_downstream,
                the_same_key_with_another_body_is_refused_with_422,
                a_permanent_failure_at_step_three_compensates_three_two_one_and_leaves_nothing,
                transient_failures_and_rate_limits_are_retried_and_each_effect_lands_once,
                each_step_gets_its_own_retries_however_often_the_saga_was_retried_before,
                a_lost_response_is_retried_with_the_same_key_and_applied_once,
                a_compensation_failing_transiently_is_retried_and_the_saga_compensated,
                a_compensation_failing_for_good_still_undoes_the_earlier_steps_then_needs_a_human,
                a_compensation_failing_transiently_past_its_retries_needs_a_human,
                a_charge_in_doubt_parks_the_saga_and_asked_again_completes_charging_once,
                an_instance_killed_while_a_call_is_in_flight_is_taken_over_and_charges_once,
                an_answer_lost_after_the_work_is_redelivered_without_a_second_effect,
                every_log_line_carries_its_request_id_and_the_transaction_id,
            );
        }
    };
    (@scenarios $backend:ident, $driver:ty, $($scenario:ident,)*) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let driver = <$driver as $crate::acceptance::PatternDriver>::start(
                    $crate::Backend::$backend,
                )
                .await;
                $crate::acceptance::$scenario(&driver).await;
            }
        )*
    };
}

/// A purchase as the API accepts it, as JSON text.
fn purchase_body() -> String {
    purchase().to_string()
}

/// Submits the purchase to the driver's API, with `key` as its `Idempotency-Key` when given.
async fn submit<D: PatternDriver>(driver: &D, key: Option<&str>) -> Reply {
    driver
        .call(driver.api(), post_transactions(&purchase_body(), key))
        .await
}

/// What the store's backend is, for assertion messages.
fn backend<D: PatternDriver>(driver: &D) -> Backend {
    driver.store().backend()
}

/// Injects `fault` for `service`'s `action`, `times` times (every time when `None`).
fn inject<D: PatternDriver>(
    driver: &D,
    service: &str,
    action: &str,
    fault: Fault,
    times: Option<u32>,
) {
    let rule = FaultRule::new(service, action, fault);
    let rule = match times {
        Some(times) => rule.times(times),
        None => rule,
    };
    driver
        .fake()
        .faults()
        .add(rule)
        .expect("a valid fault rule");
}

/// A refusal the SaaS gives for good.
fn reject(status: u16, reason: &str) -> Fault {
    Fault::Reject {
        status,
        reason: reason.into(),
    }
}

/// Each service's action was called `calls` times and took effect exactly once.
fn assert_each_action_applied_once<D: PatternDriver>(
    driver: &D,
    transaction_id: &str,
    calls: [u64; 3],
) {
    let ledger = driver.fake().ledger().transaction(transaction_id);
    let actions = [
        ("inventory", "reserve"),
        ("payments", "charge"),
        ("entitlements", "grant"),
    ];
    for ((service, action), calls) in actions.into_iter().zip(calls) {
        let service_ledger = ledger.service(service);
        assert_eq!(
            service_ledger.calls[action],
            calls,
            "{:?}: {service} {action} calls",
            backend(driver)
        );
        assert_eq!(
            service_ledger.actions_applied,
            [action],
            "{:?}: {service} applied once",
            backend(driver)
        );
    }
}

/// The saga's steps are, in order, `statuses`.
async fn assert_steps<D: PatternDriver>(
    driver: &D,
    transaction_id: &str,
    statuses: [StepStatus; 3],
) {
    let saga = driver.store().saga(transaction_id).await;
    let found: Vec<StepStatus> = saga.steps.iter().map(|s| s.status).collect();
    assert_eq!(found, statuses, "{:?}: {saga:#?}", backend(driver));
}

pub async fn a_purchase_completes_with_each_effect_applied_once<D: PatternDriver>(driver: &D) {
    let backend = backend(driver);
    let answer = submit(driver, None).await;
    driver.check_answer(&answer, Course::CLEAN);
    let id = answer.transaction_id().to_owned();
    if D::HANDS_OVER {
        assert_eq!(driver.waiting_handovers().await, 1, "{backend:?}");
        assert_eq!(
            driver.store().saga(&id).await.status,
            SagaStatus::Pending,
            "{backend:?}"
        );
        assert_eq!(
            driver.fake().ledger().transaction(&id).total_calls(),
            0,
            "{backend:?}: nothing runs in the API"
        );
    }

    let run = driver.finish(&id).await;
    driver.check_run(&run, Course::CLEAN).await;
    assert_eq!(driver.waiting_handovers().await, 0, "{backend:?}");
    let shown = driver.call(driver.api(), get_transaction(&id)).await;
    assert_eq!(
        (shown.status, shown.body["status"].as_str()),
        (200, Some("COMPLETED")),
        "{backend:?}: {:#}",
        shown.body
    );
    assert_each_action_applied_once(driver, &id, [1, 1, 1]);
    assert_steps(driver, &id, [StepStatus::Succeeded; 3]).await;
    assert_eq!(driver.store().saga(&id).await.request, purchase());
}

pub async fn concurrent_duplicates_run_one_saga_and_call_each_service_once<D: PatternDriver>(
    driver: &D,
) {
    let backend = backend(driver);
    // Four Lambda instances, each with its own store connection, get the same request.
    let apis = [
        driver.another_api().await,
        driver.another_api().await,
        driver.another_api().await,
        driver.another_api().await,
    ];
    let request = || post_transactions(&purchase_body(), Some("dup-concurrent"));
    let (a, b, c, d) = tokio::join!(
        driver.call(&apis[0], request()),
        driver.call(&apis[1], request()),
        driver.call(&apis[2], request()),
        driver.call(&apis[3], request()),
    );
    let replies = [a, b, c, d];
    let saga = driver.store().only_saga().await;
    let fresh: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none() && r.status != 409)
        .collect();
    assert_eq!(
        fresh.len(),
        1,
        "{backend:?}: exactly one request took the saga: {replies:#?}"
    );
    driver.check_answer(fresh[0], Course::CLEAN);
    for reply in &replies {
        match reply.status {
            409 => assert_eq!(reply.body["error"], "request_in_progress", "{backend:?}"),
            _ => assert_eq!(
                (reply.status, reply.transaction_id()),
                (fresh[0].status, saga.transaction_id.as_str()),
                "{backend:?}: {:#}",
                reply.body
            ),
        }
    }
    // A duplicate answered from the stored 202 may hand the PENDING saga over again.
    let waiting = driver.waiting_handovers().await;
    assert_eq!(waiting > 0, D::HANDS_OVER, "{backend:?}: {waiting} waiting");

    let run = driver.finish(&saga.transaction_id).await;
    driver.check_run(&run, Course::CLEAN).await;
    assert_eq!(
        driver.store().saga(&saga.transaction_id).await.status,
        SagaStatus::Completed,
        "{backend:?}"
    );
    let ledger = driver.fake().ledger().snapshot();
    assert_eq!(
        ledger.transactions.len(),
        1,
        "{backend:?}: one transaction downstream"
    );
    assert_eq!(
        ledger.transactions[&saga.transaction_id].total_calls(),
        3,
        "{backend:?}: each service called once"
    );
}

pub async fn a_sequential_duplicate_replays_the_answer_without_calling_downstream<
    D: PatternDriver,
>(
    driver: &D,
) {
    let backend = backend(driver);
    let first = submit(driver, Some("dup-sequential")).await;
    driver.check_answer(&first, Course::CLEAN);
    let id = first.transaction_id();
    let run = driver.finish(id).await;
    driver.check_run(&run, Course::CLEAN).await;
    let calls = driver.fake().ledger().transaction(id).total_calls();

    let second = submit(driver, Some("dup-sequential")).await;
    assert_eq!(
        (
            second.status,
            &second.body,
            second.header("idempotent-replayed")
        ),
        (first.status, &first.body, Some("true")),
        "{backend:?}: the same answer, replayed"
    );
    assert_eq!(
        driver.waiting_handovers().await,
        0,
        "{backend:?}: a finished saga is not handed over again"
    );
    assert_eq!(
        driver.fake().ledger().transaction(id).total_calls(),
        calls,
        "{backend:?}"
    );
    assert_eq!(driver.store().all_sagas().await.len(), 1, "{backend:?}");
}

pub async fn the_same_key_with_another_body_is_refused_with_422<D: PatternDriver>(driver: &D) {
    let backend = backend(driver);
    let first = submit(driver, Some("reused")).await;
    driver.check_answer(&first, Course::CLEAN);
    driver.finish(first.transaction_id()).await;

    let mut other = purchase();
    other["quantity"] = json!(2);
    let reused = driver
        .call(
            driver.api(),
            post_transactions(&other.to_string(), Some("reused")),
        )
        .await;
    assert_eq!(
        (reused.status, reused.body["error"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{backend:?}: {:#}",
        reused.body
    );
    assert_eq!(
        driver.store().all_sagas().await.len(),
        1,
        "{backend:?}: no second saga"
    );
    // Key order and white space do not make another body.
    let reordered = r#"{ "currency": "EUR", "amount_minor": 499, "quantity": 1, "item_id": "sword", "player_id": "p-1" }"#;
    let same = driver
        .call(driver.api(), post_transactions(reordered, Some("reused")))
        .await;
    assert_eq!(
        (same.status, same.header("idempotent-replayed")),
        (first.status, Some("true")),
        "{backend:?}"
    );
    assert_eq!(driver.waiting_handovers().await, 0, "{backend:?}");
}

/// Runs a purchase whose saga goes `course` to its end, with the driver's checks of the answer
/// and of the run; its transaction id.
async fn run_purchase<D: PatternDriver>(driver: &D, key: Option<&str>, course: Course) -> String {
    let answer = submit(driver, key).await;
    driver.check_answer(&answer, course);
    let id = answer.transaction_id().to_owned();
    let run = driver.finish(&id).await;
    driver.check_run(&run, course).await;
    assert_eq!(
        driver.store().saga(&id).await.status,
        course.status(),
        "{:?}",
        backend(driver)
    );
    id
}

pub async fn a_permanent_failure_at_step_three_compensates_three_two_one_and_leaves_nothing<
    D: PatternDriver,
>(
    driver: &D,
) {
    let backend = backend(driver);
    inject(
        driver,
        "entitlements",
        "grant",
        reject(403, "already owned"),
        None,
    );
    let course = Course::Compensated { failed_calls: 0 };
    let id = run_purchase(driver, None, course).await;

    let ledger = driver.fake().ledger().transaction(&id);
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
        ],
        "{backend:?}: compensations in reverse order, the failed step's included"
    );
    assert_eq!(ledger.outstanding(), 0, "{backend:?}: ledger back to zero");
    assert_steps(driver, &id, [StepStatus::Compensated; 3]).await;
    let saga = driver.store().saga(&id).await;
    assert!(
        saga.error
            .as_deref()
            .is_some_and(|e| e.contains("already owned")),
        "{backend:?}: {saga:#?}"
    );
}

pub async fn transient_failures_and_rate_limits_are_retried_and_each_effect_lands_once<
    D: PatternDriver,
>(
    driver: &D,
) {
    inject(driver, "inventory", "reserve", Fault::Unavailable, Some(2));
    let rate_limited = Fault::RateLimited {
        retry_after_secs: 1,
    };
    inject(driver, "payments", "charge", rate_limited, Some(1));
    let course = Course::Completed { failed_calls: 3 };
    let id = run_purchase(driver, Some("transient"), course).await;

    assert_each_action_applied_once(driver, &id, [3, 2, 1]);
    let saga = driver.store().saga(&id).await;
    let attempts: Vec<u32> = saga.steps.iter().map(|s| s.attempts).collect();
    let expected = if D::COUNTS_ATTEMPTS {
        [3, 2, 1]
    } else {
        [1, 1, 1]
    };
    assert_eq!(attempts, expected, "{:?}", backend(driver));
}

/// The stock's retries all used, then one transient payment failure: the payment has retries
/// of its own. (The sqs worker once counted the message's deliveries, which span the whole
/// saga, and so cancelled this purchase.)
pub async fn each_step_gets_its_own_retries_however_often_the_saga_was_retried_before<
    D: PatternDriver,
>(
    driver: &D,
) {
    let stock_retries = PURCHASE
        .step("stock")
        .expect("a stock step")
        .retry
        .max_retries;
    inject(
        driver,
        "inventory",
        "reserve",
        Fault::Unavailable,
        Some(stock_retries),
    );
    inject(driver, "payments", "charge", Fault::Unavailable, Some(1));
    let failed_calls = stock_retries as usize + 1;
    let id = run_purchase(driver, None, Course::Completed { failed_calls }).await;

    let calls = u64::from(stock_retries) + 1;
    assert_each_action_applied_once(driver, &id, [calls, 2, 1]);
    let saga = driver.store().saga(&id).await;
    let attempts: Vec<u32> = saga.steps.iter().map(|s| s.attempts).collect();
    let expected = if D::COUNTS_ATTEMPTS {
        [stock_retries + 1, 2, 1]
    } else {
        [1, 1, 1]
    };
    assert_eq!(attempts, expected, "{:?}", backend(driver));
}

pub async fn a_lost_response_is_retried_with_the_same_key_and_applied_once<D: PatternDriver>(
    driver: &D,
) {
    let backend = backend(driver);
    inject(driver, "payments", "charge", Fault::ResponseLost, Some(1));
    let id = run_purchase(driver, None, Course::Completed { failed_calls: 1 }).await;

    let payments = driver.fake().ledger().transaction(&id).service("payments");
    assert_eq!(payments.calls["charge"], 2, "{backend:?}");
    assert_eq!(
        payments.actions_applied,
        ["charge"],
        "{backend:?}: charged once"
    );
    assert_eq!(
        payments.replays, 1,
        "{backend:?}: the retry was answered from the stored answer"
    );
    assert_steps(driver, &id, [StepStatus::Succeeded; 3]).await;
}

/// Every charge times out and its effect lands after the client gave up (a provider whose
/// gateway answers late): the saga parks IN_DOUBT and nothing is compensated — no refund races
/// the late charge, the stock stays reserved. Once the provider answers again, the operator's
/// `saga retry` asks with the same key, gets the charge that landed, and the saga completes with
/// each effect once. (Before, the saga was compensated blind: refunded with nothing to refund,
/// COMPENSATED, and then charged.)
pub async fn a_charge_in_doubt_parks_the_saga_and_asked_again_completes_charging_once<
    D: PatternDriver,
>(
    driver: &D,
) {
    let backend = backend(driver);
    let late = Fault::LateEffect {
        effect_after_ms: LATE_EFFECT_MS,
        hang_ms: 30_000,
    };
    inject(driver, "payments", "charge", late, None);
    let id = run_purchase(driver, None, Course::InDoubt).await;

    assert_steps(
        driver,
        &id,
        [
            StepStatus::Succeeded,
            StepStatus::InDoubt,
            StepStatus::Pending,
        ],
    )
    .await;
    let saga = driver.store().saga(&id).await;
    assert!(
        saga.error
            .as_deref()
            .is_some_and(|e| e.contains("step payment charge in doubt")),
        "{backend:?}: {saga:#?}"
    );
    let ledger = driver.fake().ledger().transaction(&id);
    assert!(
        !ledger.service("payments").calls.contains_key("refund"),
        "{backend:?}: nothing refunded blind: {ledger:?}"
    );
    assert!(
        ledger.service("inventory").compensations_applied.is_empty(),
        "{backend:?}: the stock stays reserved: {ledger:?}"
    );

    // The charge lands after the client gave up.
    tokio::time::sleep(std::time::Duration::from_millis(LATE_EFFECT_MS + 300)).await;
    let charged = driver.fake().ledger().transaction(&id).service("payments");
    assert_eq!(charged.actions_applied, ["charge"], "{backend:?}");

    driver.fake().faults().clear();
    driver.retry(&id).await;
    assert_eq!(
        driver.store().saga(&id).await.status,
        SagaStatus::Completed,
        "{backend:?}"
    );
    assert_every_effect_once(driver.fake(), &id, backend);
    let payments = driver.fake().ledger().transaction(&id).service("payments");
    assert!(
        payments.replays >= 1,
        "{backend:?}: the retry was answered with the charge that landed: {payments:?}"
    );
}

/// When the in-doubt scenario's late charge lands after its call: past the test client's 2 s
/// request timeout.
const LATE_EFFECT_MS: u64 = 2_300;

/// Each action of the purchase saga `transaction_id` took effect exactly once at the fake SaaS.
pub fn assert_every_effect_once(fake: &FakeSaas, transaction_id: &str, backend: Backend) {
    let ledger = fake.ledger().transaction(transaction_id);
    for (service, action) in [
        ("inventory", "reserve"),
        ("payments", "charge"),
        ("entitlements", "grant"),
    ] {
        assert_eq!(
            ledger.service(service).actions_applied,
            [action],
            "{backend:?}: {service} applied once"
        );
    }
}

/// A saga recovered after a kill ended COMPLETED, as the store and the API show it, with each
/// effect applied once downstream and nothing left waiting.
async fn assert_recovered_once<D: PatternDriver>(driver: &D, transaction_id: &str) {
    let backend = backend(driver);
    assert_steps(driver, transaction_id, [StepStatus::Succeeded; 3]).await;
    let shown = driver
        .call(driver.api(), get_transaction(transaction_id))
        .await;
    assert_eq!(
        (shown.status, shown.body["status"].as_str()),
        (200, Some("COMPLETED")),
        "{backend:?}: {:#}",
        shown.body
    );
    assert_every_effect_once(driver.fake(), transaction_id, backend);
    assert_eq!(driver.waiting_handovers().await, 0, "{backend:?}");
    assert_eq!(driver.store().all_sagas().await.len(), 1, "{backend:?}");
}

pub async fn an_instance_killed_while_a_call_is_in_flight_is_taken_over_and_charges_once<
    D: PatternDriver,
>(
    driver: &D,
) {
    // The charge's answer is held long enough for the instance to die while it is in flight.
    inject(
        driver,
        "payments",
        "charge",
        Fault::Latency { delay_ms: 1500 },
        Some(1),
    );
    let request = post_transactions(&purchase_body(), Some("killed-in-flight"));
    let id = driver.run_killed(request, Kill::WhileChargeInFlight).await;
    assert_recovered_once(driver, &id).await;
}

pub async fn an_answer_lost_after_the_work_is_redelivered_without_a_second_effect<
    D: PatternDriver,
>(
    driver: &D,
) {
    let request = post_transactions(&purchase_body(), Some("answer-lost"));
    let id = driver.run_killed(request, Kill::AfterTheWork).await;
    assert_recovered_once(driver, &id).await;
    // The redelivered work found the saga done: nothing was called again.
    let ledger = driver.fake().ledger().transaction(&id);
    assert_eq!(
        ledger.total_calls(),
        3,
        "{:?}: {ledger:#?}",
        backend(driver)
    );
}

pub async fn a_compensation_failing_transiently_is_retried_and_the_saga_compensated<
    D: PatternDriver,
>(
    driver: &D,
) {
    let backend = backend(driver);
    let course = Course::Compensated { failed_calls: 2 };
    let id = refund_after_a_refused_grant(driver, Fault::Unavailable, Some(2), course).await;

    let ledger = driver.fake().ledger().transaction(&id);
    assert_eq!(ledger.service("payments").calls["refund"], 3, "{backend:?}");
    assert_eq!(ledger.outstanding(), 0, "{backend:?}");
}

pub async fn a_compensation_failing_for_good_still_undoes_the_earlier_steps_then_needs_a_human<
    D: PatternDriver,
>(
    driver: &D,
) {
    let backend = backend(driver);
    let refused = reject(400, "refund window closed");
    let id = refund_after_a_refused_grant(driver, refused, None, Course::CompensationFailed).await;

    assert_compensation_failed_at_the_refund(driver, &id, "refund window closed").await;
    // The compensation was tried once: a refusal is not retried, and nothing calls the SaaS
    // for a saga needing a human.
    assert_eq!(refunds(driver, &id), 1, "{backend:?}");
}

/// A refund that fails transiently on every attempt ends COMPENSATION_FAILED after its own
/// retries, in every pattern. (The sqs worker once decided from the message's receive count,
/// so the message reached the dead-letter queue with the saga still COMPENSATING.)
pub async fn a_compensation_failing_transiently_past_its_retries_needs_a_human<D: PatternDriver>(
    driver: &D,
) {
    let backend = backend(driver);
    let course = Course::CompensationFailed;
    let id = refund_after_a_refused_grant(driver, Fault::Unavailable, None, course).await;

    assert_compensation_failed_at_the_refund(driver, &id, "503").await;
    let refund = PURCHASE
        .step("payment")
        .expect("a payment step")
        .compensation_retry;
    assert_eq!(
        refunds(driver, &id),
        u64::from(refund.max_retries) + 1,
        "{backend:?}"
    );
}

/// A purchase whose grant is refused for good and whose refund then meets `refund` (`times`
/// times, or always), run to the end `course` says.
async fn refund_after_a_refused_grant<D: PatternDriver>(
    driver: &D,
    refund: Fault,
    times: Option<u32>,
    course: Course,
) -> String {
    inject(
        driver,
        "entitlements",
        "grant",
        reject(422, "region locked"),
        None,
    );
    inject(driver, "payments", "refund", refund, times);
    run_purchase(driver, None, course).await
}

/// Refund calls the fake SaaS received for the saga.
fn refunds<D: PatternDriver>(driver: &D, transaction_id: &str) -> u64 {
    driver
        .fake()
        .ledger()
        .transaction(transaction_id)
        .service("payments")
        .calls["refund"]
}

/// The saga ended COMPENSATION_FAILED at the refund (its error says `reason`), and the other
/// compensations still ran: the stock was released and the grant's failure undone, so only the
/// charge stands.
async fn assert_compensation_failed_at_the_refund<D: PatternDriver>(
    driver: &D,
    transaction_id: &str,
    reason: &str,
) {
    let backend = backend(driver);
    assert_steps(
        driver,
        transaction_id,
        [
            StepStatus::Compensated,
            StepStatus::CompensationFailed,
            StepStatus::Compensated,
        ],
    )
    .await;
    let saga = driver.store().saga(transaction_id).await;
    assert!(
        saga.error
            .as_deref()
            .is_some_and(|e| e.contains("step payment") && e.contains(reason)),
        "{backend:?}: {saga:#?}"
    );
    let ledger = driver.fake().ledger().transaction(transaction_id);
    assert_eq!(
        ledger.service("inventory").compensations_applied,
        ["release"],
        "{backend:?}: the release ran after the refund failed"
    );
    assert_eq!(
        ledger.outstanding(),
        1,
        "{backend:?}: only the charge stands"
    );
}

/// Every line carries the saga's id, and a request id of an invocation the test made: each
/// invocation's lines in one run, the invocations in the order they were made, none silent.
fn assert_correlated(lines: &[Value], transaction_id: &str, invocations: &[String]) {
    let mut seen: Vec<&str> = Vec::new();
    for line in lines {
        assert_eq!(line["transaction_id"], transaction_id, "{line}");
        let request_id = line["requestId"]
            .as_str()
            .unwrap_or_else(|| panic!("a line without requestId: {line}"));
        if seen.last() != Some(&request_id) {
            seen.push(request_id);
        }
    }
    let distinct: HashSet<&&str> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "an invocation's lines are interleaved with another's: {seen:?}"
    );
    assert_eq!(
        seen, invocations,
        "one run of lines per invocation, in order"
    );
}

pub async fn every_log_line_carries_its_request_id_and_the_transaction_id<D: PatternDriver>(
    driver: &D,
) {
    let backend = backend(driver);
    // A retried call and a compensation make the saga log more than the happy path does.
    inject(driver, "payments", "charge", Fault::Unavailable, Some(1));
    inject(driver, "entitlements", "grant", reject(422, "no"), None);
    let course = Course::Compensated { failed_calls: 1 };

    let (logs, _guard) = LogCapture::start();
    let issued_before = request_ids_issued();
    let answer = submit(driver, Some("corr")).await;
    driver.check_answer(&answer, course);
    let id = answer.transaction_id().to_owned();
    let run = driver.finish(&id).await;
    let invocations = request_ids_since(issued_before);
    driver.check_run(&run, course).await;

    let lines = logs.function_lines();
    assert!(
        lines.len() >= 8,
        "{backend:?}: expected the saga's lines, got {lines:#?}"
    );
    assert_correlated(&lines, &id, &invocations);
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(
        messages.contains(&"saga recorded"),
        "{backend:?}: {messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("compensat")),
        "{backend:?}: {messages:?}"
    );
    // Every call reached the fake under the saga's id (`X-Correlation-Id`), none under another.
    let ledger = driver.fake().ledger().snapshot();
    assert_eq!(
        ledger.transactions.keys().collect::<Vec<_>>(),
        [&id],
        "{backend:?}"
    );
}
