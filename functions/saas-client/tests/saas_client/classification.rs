//! How the client classifies what the real fake server answers, one fault kind at a time, and
//! what it sends.

use crate::common;

use std::time::{Duration, Instant};

use common::{client_for, fake_and_client};
use sagaform_fake_saas::{Effect, Fault, FaultRule};
use sagaform_saas_client::{SaasError, StepCall};
use sagaform_saga::PURCHASE;
use serde_json::json;

fn payment() -> &'static sagaform_saga::Step {
    PURCHASE.step("payment").unwrap()
}

#[tokio::test]
async fn a_successful_call_returns_the_answer_and_carries_correlation_and_idempotency_headers() {
    let (fake, client) = fake_and_client().await;
    let request = json!({"player_id": "p1", "amount_minor": 499});
    let answer = client
        .call(&StepCall::action(payment(), "tx-ok", &request))
        .await
        .unwrap();
    assert_eq!(answer["effect"], "applied");
    assert_eq!(answer["transaction_id"], "tx-ok");

    // The fake refuses a call whose X-Correlation-Id is not the transaction id or whose
    // Idempotency-Key is not {transaction_id}:{step}:{action}; the effect is proof both arrived.
    let ledger = fake.ledger().transaction("tx-ok");
    let payments = ledger.service("payments");
    assert_eq!(payments.actions_applied, ["charge"]);
    assert_eq!(payments.calls["charge"], 1);
    assert_eq!(ledger.effects.len(), 1);
    assert_eq!(
        (ledger.effects[0].step.as_str(), ledger.effects[0].effect),
        ("payment", Effect::Applied)
    );
}

#[tokio::test]
async fn a_503_is_retried_and_in_doubt() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::Unavailable).times(1))
        .unwrap();
    let err = client
        .call(&StepCall::action(payment(), "tx-503", &json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SaasError::Unavailable { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // A 5xx says nothing about whether the charge landed: never compensated blind.
    assert!(err.is_in_doubt());
    assert_eq!(err.error_type(), "InDoubt");
    assert_eq!(fake.ledger().transaction("tx-503").outstanding(), 0);
}

#[tokio::test]
async fn a_422_is_permanent_and_keeps_the_reason() {
    let (fake, client) = fake_and_client().await;
    let reject = Fault::Reject {
        status: 422,
        reason: "card declined".into(),
    };
    fake.faults()
        .add(FaultRule::new("payments", "charge", reject))
        .unwrap();
    let err = client
        .call(&StepCall::action(payment(), "tx-422", &json!({})))
        .await
        .unwrap_err();
    match &err {
        SaasError::Rejected { status, reason, .. } => {
            assert_eq!((*status, reason.as_str()), (422, "card declined"))
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(err.error_type(), "Permanent");
}

#[tokio::test]
async fn a_429_is_retryable_and_carries_the_retry_after_delay() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new(
            "payments",
            "charge",
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        ))
        .unwrap();
    let err = client
        .call(&StepCall::action(payment(), "tx-429", &json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, SaasError::RateLimited { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn a_hanging_service_is_a_retryable_timeout_within_the_request_timeout() {
    let fake = sagaform_fake_saas::FakeSaas::start("127.0.0.1:0")
        .await
        .unwrap();
    let request_timeout = Duration::from_millis(300);
    let client = client_for(&fake.base_url(), request_timeout);
    fake.faults()
        .add(FaultRule::new(
            "payments",
            "charge",
            Fault::Hang { hang_ms: 60_000 },
        ))
        .unwrap();
    let started = Instant::now();
    let err = client
        .call(&StepCall::action(payment(), "tx-hang", &json!({})))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, SaasError::Timeout { timeout, .. } if timeout == request_timeout),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // The hang lasts a minute: returning within seconds shows the request timeout cut it.
    assert!(
        waited >= request_timeout && waited < Duration::from_secs(10),
        "waited {waited:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    // A port that was free a moment ago and has no listener now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = client_for(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    let err = client
        .call(&StepCall::action(payment(), "tx-refused", &json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, SaasError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_permanent_invalid_response() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::InvalidBody))
        .unwrap();
    let err = client
        .call(&StepCall::action(payment(), "tx-garbage", &json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SaasError::InvalidResponse { status: 200, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn response_lost_is_a_retryable_500_although_the_effect_was_applied() {
    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::ResponseLost).times(1))
        .unwrap();
    let err = client
        .call(&StepCall::action(payment(), "tx-lost", &json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SaasError::Unavailable { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(
        fake.ledger()
            .transaction("tx-lost")
            .service("payments")
            .actions_applied,
        ["charge"]
    );
}

#[tokio::test]
async fn a_call_after_the_deadline_is_not_sent() {
    let (fake, client) = fake_and_client().await;
    let past = Instant::now();
    let err = client
        .call_before(&StepCall::action(payment(), "tx-late", &json!({})), past)
        .await
        .unwrap_err();
    assert!(matches!(err, SaasError::DeadlineReached { .. }), "{err:?}");
    assert_eq!(fake.ledger().transaction("tx-late").total_calls(), 0);
}

#[tokio::test]
async fn a_transaction_id_that_cannot_be_a_header_is_a_permanent_invalid_request() {
    let (fake, client) = fake_and_client().await;
    let err = client
        .call(&StepCall::action(payment(), "tx\nbroken", &json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, SaasError::InvalidRequest { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(fake.ledger().snapshot().transactions.is_empty());
}
