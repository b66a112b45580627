//! The idempotency ledger over HTTP: one effect per key, even under concurrent duplicates;
//! compensations undo or are no-ops; strict header checks; readable and resettable state.

use crate::common;

use common::post_call;
use reqwest::{Client, StatusCode};
use sagaform_fake_saas::{FakeSaas, LedgerSnapshot, TransactionLedger};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_of_a_key_apply_the_effect_once() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    let duplicates = 20;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..duplicates {
        let http = http.clone();
        let url = format!("{}/charge", fake.service_url("payments"));
        calls.spawn(async move {
            let response = http
                .post(url)
                .header("X-Correlation-Id", "tx-dup")
                .header("Idempotency-Key", "tx-dup:payment:charge")
                .json(&json!({"transaction_id": "tx-dup", "step": "payment", "action": "charge", "request": {"amount_minor": 5}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        });
    }
    let answers: Vec<Value> = calls.join_all().await;
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "every duplicate gets the first answer"
    );

    let payments = fake.ledger().transaction("tx-dup").service("payments");
    assert_eq!(payments.actions_applied, ["charge"]);
    assert_eq!(payments.outstanding, 1);
    assert_eq!(payments.calls["charge"], duplicates);
    assert_eq!(payments.replays, duplicates - 1);
}

#[tokio::test]
async fn a_replayed_answer_is_marked_and_identical() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    let first = post_call(
        &http,
        &fake,
        "inventory",
        "stock",
        "reserve",
        "tx-r",
        json!({"q": 1}),
    )
    .await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post_call(
        &http,
        &fake,
        "inventory",
        "stock",
        "reserve",
        "tx-r",
        json!({"q": 1}),
    )
    .await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
}

#[tokio::test]
async fn a_key_reused_with_another_request_is_refused() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    post_call(
        &http,
        &fake,
        "inventory",
        "stock",
        "reserve",
        "tx-k",
        json!({"q": 1}),
    )
    .await;
    let other = post_call(
        &http,
        &fake,
        "inventory",
        "stock",
        "reserve",
        "tx-k",
        json!({"q": 2}),
    )
    .await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        fake.ledger()
            .transaction("tx-k")
            .service("inventory")
            .actions_applied
            .len(),
        1
    );
}

#[tokio::test]
async fn a_compensation_of_an_action_never_applied_is_a_recorded_noop() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    let response = post_call(
        &http,
        &fake,
        "payments",
        "payment",
        "refund",
        "tx-noop",
        json!({}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["effect"], "noop");
    let payments = fake.ledger().transaction("tx-noop").service("payments");
    assert_eq!(payments.compensations_noop, ["refund"]);
    assert!(payments.compensations_applied.is_empty());
    assert_eq!(payments.outstanding, 0);
}

#[tokio::test]
async fn a_full_compensation_in_reverse_order_brings_the_ledger_back_to_zero() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    let steps = [
        ("inventory", "stock", "reserve", "release"),
        ("payments", "payment", "charge", "refund"),
    ];
    for (service, step, action, _) in steps {
        post_call(&http, &fake, service, step, action, "tx-comp", json!({})).await;
    }
    for (service, step, _, compensation) in steps.iter().rev() {
        let response = post_call(
            &http,
            &fake,
            service,
            step,
            compensation,
            "tx-comp",
            json!({}),
        )
        .await;
        assert_eq!(
            response.json::<Value>().await.unwrap()["effect"],
            "compensated"
        );
    }

    let ledger: TransactionLedger = http
        .get(format!("{}/_ledger/tx-comp", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger.outstanding(), 0);
    assert_eq!(ledger.service("payments").compensations_applied, ["refund"]);
    let order: Vec<&str> = ledger.effects.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(order, ["reserve", "charge", "refund", "release"]);
}

#[tokio::test]
async fn every_action_and_compensation_of_the_saga_has_an_endpoint() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    for step in sagaform_saga::PURCHASE.steps {
        for action in [step.action, step.compensation] {
            let response = post_call(
                &http,
                &fake,
                step.service,
                step.name,
                action.name,
                "tx-all",
                json!({}),
            )
            .await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{} {}",
                step.service,
                action.name
            );
        }
    }
    let unknown = post_call(
        &http,
        &fake,
        "payments",
        "payment",
        "reserve",
        "tx-all",
        json!({}),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(fake.ledger().transaction("tx-all").outstanding(), 0);
}

#[tokio::test]
async fn calls_without_the_contract_headers_are_refused_without_effect() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    let url = format!("{}/reserve", fake.service_url("inventory"));
    let body =
        json!({"transaction_id": "tx-h", "step": "stock", "action": "reserve", "request": {}});

    let no_correlation = http
        .post(&url)
        .header("Idempotency-Key", "tx-h:stock:reserve")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_correlation.status(), StatusCode::BAD_REQUEST);

    let no_key = http
        .post(&url)
        .header("X-Correlation-Id", "tx-h")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::BAD_REQUEST);

    let wrong_key = http
        .post(&url)
        .header("X-Correlation-Id", "tx-h")
        .header("Idempotency-Key", "tx-h:stock")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let wrong_correlation = http
        .post(&url)
        .header("X-Correlation-Id", "tx-other")
        .header("Idempotency-Key", "tx-h:stock:reserve")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_correlation.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let malformed = http.post(&url).body("{").send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    let inventory = fake.ledger().transaction("tx-h").service("inventory");
    assert_eq!(
        inventory.calls["reserve"], 4,
        "refused calls are still counted"
    );
    assert_eq!(inventory.outstanding, 0);
}

#[tokio::test]
async fn the_ledger_lists_every_transaction_and_resets() {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let http = Client::new();
    post_call(
        &http,
        &fake,
        "inventory",
        "stock",
        "reserve",
        "tx-1",
        json!({}),
    )
    .await;
    post_call(
        &http,
        &fake,
        "inventory",
        "stock",
        "reserve",
        "tx-2",
        json!({}),
    )
    .await;
    let ledger_url = format!("{}/_ledger", fake.base_url());

    let all: LedgerSnapshot = http
        .get(&ledger_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        all.transactions.keys().collect::<Vec<_>>(),
        ["tx-1", "tx-2"]
    );

    let reset = http.delete(&ledger_url).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let all: LedgerSnapshot = http
        .get(&ledger_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(all.transactions.is_empty());
    // The stored answers went too: the same key applies again.
    post_call(
        &http,
        &fake,
        "inventory",
        "stock",
        "reserve",
        "tx-1",
        json!({}),
    )
    .await;
    assert_eq!(
        fake.ledger()
            .transaction("tx-1")
            .service("inventory")
            .replays,
        0
    );
}
