//! Fault injection over HTTP and in process: each fault kind answers as documented, `times`
//! counts down, seeded rates are reproducible.

use crate::common;

use std::time::{Duration, Instant};

use common::post_call;
use reqwest::{Client, StatusCode};
use sagaform_fake_saas::{FakeSaas, Fault, FaultRule, FaultStatus};
use sagaform_saga::PURCHASE;
use serde_json::{Value, json};

async fn charge(http: &Client, fake: &FakeSaas, transaction_id: &str) -> reqwest::Response {
    post_call(
        http,
        fake,
        "payments",
        "payment",
        "charge",
        transaction_id,
        json!({}),
    )
    .await
}

#[tokio::test]
async fn a_times_rule_fires_for_the_next_n_matching_calls_then_stops() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    let faults_url = format!("{}/_faults", fake.base_url());
    let added = http
        .post(&faults_url)
        .json(
            &json!({"service": "payments", "action": "charge", "fault": "unavailable", "times": 2}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);

    // A call of another action does not use up the rule.
    let refund = post_call(
        &http,
        &fake,
        "payments",
        "payment",
        "refund",
        "tx-t",
        json!({}),
    )
    .await;
    assert_eq!(refund.status(), StatusCode::OK);

    let statuses = [
        charge(&http, &fake, "tx-t").await.status(),
        charge(&http, &fake, "tx-t").await.status(),
        charge(&http, &fake, "tx-t").await.status(),
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::OK
        ]
    );

    let listed: Vec<FaultStatus> = http
        .get(&faults_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((listed[0].remaining, listed[0].fired), (Some(0), 2));
    let payments = fake.ledger().transaction("tx-t").service("payments");
    assert_eq!(payments.faults_injected, 2);
    assert_eq!(payments.calls["charge"], 3);

    assert_eq!(
        http.delete(&faults_url).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let listed: Vec<FaultStatus> = http
        .get(&faults_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.is_empty());
}

/// Which of `calls` sequential charges fail under a 30 % fault rate, for a seed.
async fn failure_pattern(seed: u64, calls: usize) -> Vec<bool> {
    let fake = FakeSaas::start_with("127.0.0.1:0", &PURCHASE, seed)
        .await
        .unwrap();
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::Unavailable).rate(0.3))
        .unwrap();
    let http = Client::new();
    let mut failed = Vec::new();
    for n in 0..calls {
        failed.push(charge(&http, &fake, &format!("tx-{n}")).await.status() != StatusCode::OK);
    }
    failed
}

#[tokio::test]
async fn a_seeded_rate_fails_the_same_calls_in_every_run() {
    let first = failure_pattern(42, 60).await;
    let second = failure_pattern(42, 60).await;
    assert_eq!(first, second);
    let failures = first.iter().filter(|f| **f).count();
    assert!(
        (5..=35).contains(&failures),
        "{failures} of 60 failed at a 30 % rate"
    );
    assert_ne!(
        first,
        failure_pattern(7, 60).await,
        "another seed gives another pattern"
    );
}

#[tokio::test]
async fn clearing_the_faults_restarts_the_random_sequence() {
    let fake = FakeSaas::start_with("127.0.0.1:0", &PURCHASE, 9)
        .await
        .unwrap();
    let rule = FaultRule::new("payments", "charge", Fault::Unavailable).rate(0.5);
    let http = Client::new();
    let mut runs = Vec::new();
    for run in 0..2 {
        fake.faults().clear();
        fake.faults().add(rule.clone()).unwrap();
        let mut failed = Vec::new();
        for n in 0..30 {
            failed.push(
                charge(&http, &fake, &format!("tx-{run}-{n}"))
                    .await
                    .status()
                    != StatusCode::OK,
            );
        }
        runs.push(failed);
    }
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test]
async fn a_rule_for_one_transaction_fails_only_that_transaction() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::Unavailable).for_transaction("tx-bad"))
        .unwrap();
    let http = Client::new();
    assert_eq!(
        charge(&http, &fake, "tx-good").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        charge(&http, &fake, "tx-bad").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn each_fault_kind_answers_as_documented() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    let faults = fake.faults();

    faults
        .add(
            FaultRule::new(
                "payments",
                "charge",
                Fault::RateLimited {
                    retry_after_secs: 3,
                },
            )
            .times(1),
        )
        .unwrap();
    let limited = charge(&http, &fake, "tx-429").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "3");

    let reject = Fault::Reject {
        status: 409,
        reason: "duplicate order".into(),
    };
    faults
        .add(FaultRule::new("payments", "charge", reject).times(1))
        .unwrap();
    let rejected = charge(&http, &fake, "tx-409").await;
    assert_eq!(rejected.status(), StatusCode::CONFLICT);
    assert_eq!(
        rejected.json::<Value>().await.unwrap()["reason"],
        "duplicate order"
    );

    faults
        .add(FaultRule::new("payments", "charge", Fault::InvalidBody).times(1))
        .unwrap();
    let garbage = charge(&http, &fake, "tx-garbage").await;
    assert_eq!(garbage.status(), StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&garbage.bytes().await.unwrap()).is_err());

    faults
        .add(FaultRule::new("payments", "charge", Fault::ResponseLost).times(1))
        .unwrap();
    let lost = charge(&http, &fake, "tx-lost").await;
    assert_eq!(lost.status(), StatusCode::INTERNAL_SERVER_ERROR);

    faults
        .add(FaultRule::new("payments", "charge", Fault::Latency { delay_ms: 300 }).times(1))
        .unwrap();
    let started = Instant::now();
    let slow = charge(&http, &fake, "tx-slow").await;
    assert_eq!(slow.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let ledger = fake.ledger();
    for failed_without_effect in ["tx-429", "tx-409", "tx-garbage"] {
        assert_eq!(
            ledger.transaction(failed_without_effect).outstanding(),
            0,
            "{failed_without_effect}"
        );
    }
    // "Response lost" and latency answer late or not at all, but the effect is there.
    assert_eq!(
        ledger
            .transaction("tx-lost")
            .service("payments")
            .actions_applied,
        ["charge"]
    );
    assert_eq!(
        ledger
            .transaction("tx-slow")
            .service("payments")
            .actions_applied,
        ["charge"]
    );
}

#[tokio::test]
async fn a_hang_outlasts_the_client_and_ends_when_the_server_stops() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    fake.faults()
        .add(FaultRule::new(
            "payments",
            "charge",
            Fault::Hang { hang_ms: 60_000 },
        ))
        .unwrap();
    let http = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = post_call_result(&http, &fake).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");

    // A patient client is released when the fake stops instead of waiting a minute.
    let patient = Client::new();
    let url = format!("{}/charge", fake.service_url("payments"));
    let waiting = tokio::spawn(async move {
        patient
            .post(url)
            .header("X-Correlation-Id", "tx-hang")
            .header("Idempotency-Key", "tx-hang:payment:charge")
            .json(&json!({"transaction_id": "tx-hang", "step": "payment", "action": "charge", "request": {}}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    fake.shutdown().await;
    let answer = waiting.await.unwrap().unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_late_effect_lands_after_the_client_gave_up_and_once_per_key() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    fake.faults()
        .add(
            FaultRule::new(
                "payments",
                "charge",
                Fault::LateEffect {
                    effect_after_ms: 600,
                    hang_ms: 60_000,
                },
            )
            .times(2),
        )
        .unwrap();
    let impatient = Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = post_call_result(&impatient, &fake).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let charged = |fake: &FakeSaas| fake.ledger().transaction("tx-hang").outstanding();
    assert_eq!(charged(&fake), 0, "no effect while the client waits");

    // The client has gone; the effect lands anyway, and a second late call with the same key
    // (a retry that also timed out) adds nothing.
    let err = post_call_result(&impatient, &fake).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let ledger = fake.ledger().transaction("tx-hang");
    assert_eq!(ledger.outstanding(), 1, "{ledger:?}");
    assert_eq!(ledger.service("payments").faults_injected, 2, "{ledger:?}");

    // Asked again with the same key once the fault is gone, the provider answers what landed.
    let answer = post_call_result(&Client::new(), &fake).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(charged(&fake), 1);
}

#[tokio::test]
async fn a_late_effect_due_after_its_answer_is_refused() {
    let rule = FaultRule::new(
        "payments",
        "charge",
        Fault::LateEffect {
            effect_after_ms: 5_000,
            hang_ms: 1_000,
        },
    );
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let err = fake.faults().add(rule).unwrap_err();
    assert!(err.reason.contains("effect_after_ms: 5000"), "{err}");
}

async fn post_call_result(http: &Client, fake: &FakeSaas) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{}/charge", fake.service_url("payments")))
        .header("X-Correlation-Id", "tx-hang")
        .header("Idempotency-Key", "tx-hang:payment:charge")
        .json(&json!({"transaction_id": "tx-hang", "step": "payment", "action": "charge", "request": {}}))
        .send()
        .await
}

#[tokio::test]
async fn invalid_rules_are_refused_over_http_with_the_reason() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    let faults_url = format!("{}/_faults", fake.base_url());
    for (rule, reason) in [
        (
            json!({"service": "billing", "fault": "unavailable"}),
            "service: billing",
        ),
        (
            json!({"service": "payments", "fault": "explode"}),
            "unknown variant",
        ),
        (
            json!({"service": "payments", "fault": "unavailable", "rate": 1.5}),
            "rate: 1.5",
        ),
    ] {
        let response = http.post(&faults_url).json(&rule).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{rule}");
        let body: Value = response.json().await.unwrap();
        assert!(body["reason"].as_str().unwrap().contains(reason), "{body}");
    }
    assert!(fake.faults().list().is_empty());
}
