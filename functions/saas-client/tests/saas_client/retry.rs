//! The in-process retry helper of the orchestrator pattern against the real fake server:
//! retries reuse the idempotency key, wait what the service asks, and respect the deadline.

use crate::common;

use std::time::{Duration, Instant};

use common::{client_for, fake_and_client};
use sagaform_fake_saas::{FakeSaas, Fault, FaultRule};
use sagaform_saas_client::{SaasError, StepCall};
use sagaform_saga::{PURCHASE, RetryPolicy};
use serde_json::json;

const QUICK: RetryPolicy = RetryPolicy {
    max_retries: 3,
    initial_delay: Duration::from_millis(5),
    backoff_rate: 2,
    max_delay: Duration::from_millis(20),
};

fn payment() -> &'static sagaform_saga::Step {
    PURCHASE.step("payment").unwrap()
}

fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn a_lost_response_retried_with_the_same_key_has_one_effect() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::ResponseLost).times(1))
        .unwrap();
    let request = json!({"amount_minor": 100});
    let call = StepCall::action(payment(), "tx-lost", &request);
    let answer = client
        .call_with_retry(&call, &QUICK, far_deadline())
        .await
        .unwrap();
    assert_eq!(answer["effect"], "applied");

    let payments = fake.ledger().transaction("tx-lost").service("payments");
    assert_eq!(payments.calls["charge"], 2);
    assert_eq!(payments.actions_applied, ["charge"]);
    assert_eq!(payments.outstanding, 1);
    assert_eq!(payments.replays, 1);
}

#[tokio::test]
async fn transient_failures_are_retried_until_success_with_one_effect() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::Unavailable).times(2))
        .unwrap();
    let request = json!({});
    let call = StepCall::action(payment(), "tx-flaky", &request);
    client
        .call_with_retry(&call, &QUICK, far_deadline())
        .await
        .unwrap();
    let payments = fake.ledger().transaction("tx-flaky").service("payments");
    assert_eq!(payments.calls["charge"], 3);
    assert_eq!(payments.faults_injected, 2);
    assert_eq!(payments.actions_applied, ["charge"]);
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::Unavailable))
        .unwrap();
    let request = json!({});
    let call = StepCall::action(payment(), "tx-down", &request);
    let err = client
        .call_with_retry(&call, &QUICK, far_deadline())
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    let payments = fake.ledger().transaction("tx-down").service("payments");
    assert_eq!(payments.calls["charge"], u64::from(1 + QUICK.max_retries));
    assert_eq!(payments.outstanding, 0);
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried() {
    let (fake, client) = fake_and_client().await;
    let reject = Fault::Reject {
        status: 422,
        reason: "declined".into(),
    };
    fake.faults()
        .add(FaultRule::new("payments", "charge", reject))
        .unwrap();
    let request = json!({});
    let call = StepCall::action(payment(), "tx-declined", &request);
    let err = client
        .call_with_retry(&call, &QUICK, far_deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SaasError::Rejected { status: 422, .. }),
        "{err:?}"
    );
    assert_eq!(
        fake.ledger()
            .transaction("tx-declined")
            .service("payments")
            .calls["charge"],
        1
    );
}

#[tokio::test]
async fn retry_after_longer_than_the_backoff_is_waited() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(
            FaultRule::new(
                "payments",
                "charge",
                Fault::RateLimited {
                    retry_after_secs: 1,
                },
            )
            .times(1),
        )
        .unwrap();
    let request = json!({});
    let call = StepCall::action(payment(), "tx-429", &request);
    let started = Instant::now();
    client
        .call_with_retry(&call, &QUICK, far_deadline())
        .await
        .unwrap();
    // The policy alone would wait at most 5 ms.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
    let payments = fake.ledger().transaction("tx-429").service("payments");
    assert_eq!(payments.calls["charge"], 2);
    assert_eq!(payments.actions_applied, ["charge"]);
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_gives_up_at_once_without_calling_again() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new(
            "payments",
            "charge",
            Fault::RateLimited {
                retry_after_secs: 30,
            },
        ))
        .unwrap();
    let request = json!({});
    let call = StepCall::action(payment(), "tx-patience", &request);
    let deadline = Instant::now() + Duration::from_secs(2);
    let err = client
        .call_with_retry(&call, &QUICK, deadline)
        .await
        .unwrap_err();
    assert!(Instant::now() < deadline, "returned after the deadline");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(
        fake.ledger()
            .transaction("tx-patience")
            .service("payments")
            .calls["charge"],
        1
    );
}

#[tokio::test]
async fn an_attempt_is_cut_at_the_deadline_even_if_the_request_timeout_is_longer() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let client = client_for(&fake.base_url(), Duration::from_secs(20));
    fake.faults()
        .add(FaultRule::new(
            "payments",
            "charge",
            Fault::Hang { hang_ms: 60_000 },
        ))
        .unwrap();
    let request = json!({});
    let call = StepCall::action(payment(), "tx-hang", &request);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(400);
    let err = client
        .call_with_retry(&call, &QUICK, deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, SaasError::Timeout { .. }), "{err:?}");
    // Far below the 20 s request timeout: the deadline bounded the attempt.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        fake.ledger()
            .transaction("tx-hang")
            .service("payments")
            .calls["charge"],
        1
    );
}
