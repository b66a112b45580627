//! Bad input to `POST /transactions`: always a 400 naming the field and the reason, never a 500,
//! and nothing written anywhere (no saga, no idempotency record, no downstream call), on both
//! stores.

use crate::common;

use aws_lambda_events::http::Method;
use base64::Engine as _;
use common::send;
use sagaform_api::Api;
use sagaform_runtime::IdempotencyStore;
use sagaform_testkit::{Backend, TestStore, fake_saas, http_request, post_transactions};

struct Case {
    what: &'static str,
    body: Option<String>,
    base64: bool,
    key: Option<String>,
    field: &'static str,
    reason_starts: &'static str,
}

fn case(what: &'static str, body: &str, field: &'static str, reason_starts: &'static str) -> Case {
    Case {
        what,
        body: Some(body.to_owned()),
        base64: false,
        key: Some(format!("key-{what}").replace(' ', "-")),
        field,
        reason_starts,
    }
}

fn cases() -> Vec<Case> {
    let valid =
        r#"{"player_id":"p-1","item_id":"sword","quantity":1,"amount_minor":499,"currency":"EUR"}"#;
    vec![
        case(
            "malformed json",
            r#"{"player_id": "p-1", "#,
            "body",
            "malformed JSON at line 1",
        ),
        case("not an object", "[1, 2]", "body", "must be a JSON object"),
        case(
            "missing field",
            r#"{"player_id":"p-1","item_id":"sword","quantity":1,"currency":"EUR"}"#,
            "amount_minor",
            "required",
        ),
        case(
            "string quantity",
            &valid.replace(r#""quantity":1"#, r#""quantity":"1""#),
            "quantity",
            "must be an integer, got a string",
        ),
        case(
            "zero quantity",
            &valid.replace(r#""quantity":1"#, r#""quantity":0"#),
            "quantity",
            "must be an integer from 1",
        ),
        case(
            "fractional amount",
            &valid.replace("499", "4.99"),
            "amount_minor",
            "must be an integer, got 4.99",
        ),
        case(
            "negative amount",
            &valid.replace("499", "-1"),
            "amount_minor",
            "must be an integer from 0",
        ),
        case(
            "bad currency",
            &valid.replace("EUR", "euro"),
            "currency",
            "must be three upper-case letters",
        ),
        case(
            "numeric player",
            &valid.replace(r#""p-1""#, "7"),
            "player_id",
            "must be a string, got a number",
        ),
        case(
            "unknown field",
            &valid.replace('}', r#","coupon":"FREE"}"#),
            "coupon",
            "unknown field",
        ),
        case(
            "oversize body",
            &format!(r#"{{"player_id":"{}"}}"#, "p".repeat(17 * 1024)),
            "body",
            "larger than 16384 bytes",
        ),
        Case {
            what: "missing body",
            body: None,
            base64: false,
            key: None,
            field: "body",
            reason_starts: "required",
        },
        Case {
            what: "bad base64",
            body: Some("!!not base64!!".into()),
            base64: true,
            key: None,
            field: "body",
            reason_starts: "marked base64 but not valid",
        },
        Case {
            what: "base64 of bad json",
            body: Some(base64::engine::general_purpose::STANDARD.encode("{nope")),
            base64: true,
            key: None,
            field: "body",
            reason_starts: "malformed JSON",
        },
        Case {
            what: "bad idempotency key",
            body: Some(valid.to_owned()),
            base64: false,
            key: Some("spaces are not allowed".into()),
            field: "Idempotency-Key",
            reason_starts: "may contain only",
        },
        Case {
            what: "overlong idempotency key",
            body: Some(valid.to_owned()),
            base64: false,
            key: Some("k".repeat(200)),
            field: "Idempotency-Key",
            reason_starts: "longer than 128 bytes",
        },
    ]
}

#[tokio::test]
async fn bad_input_is_a_400_naming_field_and_reason_and_writes_nothing() {
    for backend in Backend::ALL {
        let store = TestStore::new(backend).await;
        let (fake, client) = fake_saas().await;
        let api = Api::orchestrator(store.store().clone(), client);
        for case in cases() {
            let mut request = post_transactions(
                case.body.as_deref().unwrap_or_default(),
                case.key.as_deref(),
            );
            request.body = case.body.clone();
            request.is_base64_encoded = case.base64;
            let reply = send(&api, request).await;
            let context = format!("{backend:?} / {}: {:#}", case.what, reply.body);
            assert_eq!(reply.status, 400, "{context}");
            assert_eq!(reply.body["error"], "invalid_request", "{context}");
            assert_eq!(reply.body["field"], case.field, "{context}");
            let reason = reply.body["reason"].as_str().unwrap_or_default();
            assert!(reason.starts_with(case.reason_starts), "{context}");
            if let Some(key) = case.key.as_deref() {
                let record = store
                    .store()
                    .get_idempotency(&format!("api:{key}"))
                    .await
                    .unwrap();
                assert!(
                    record.is_none(),
                    "{context}: an idempotency record was written"
                );
            }
        }
        assert!(
            store.all_sagas().await.is_empty(),
            "{backend:?}: a saga was recorded for bad input"
        );
        assert!(
            fake.ledger().snapshot().transactions.is_empty(),
            "{backend:?}: a SaaS was called for bad input"
        );
    }
}

#[tokio::test]
async fn every_problem_of_a_body_is_listed() {
    let store = TestStore::new(Backend::DynamoDb).await;
    let (_fake, client) = fake_saas().await;
    let api = Api::orchestrator(store.store().clone(), client);
    let body = r#"{"player_id":"","item_id":"sword","quantity":0,"amount_minor":1,"currency":"E"}"#;
    let reply = send(&api, post_transactions(body, None)).await;
    assert_eq!(reply.status, 400);
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["player_id", "quantity", "currency"]);
}

#[tokio::test]
async fn a_base64_encoded_valid_body_is_accepted() {
    let store = TestStore::new(Backend::DynamoDb).await;
    let (fake, client) = fake_saas().await;
    let api = Api::orchestrator(store.store().clone(), client);
    let body =
        base64::engine::general_purpose::STANDARD.encode(sagaform_testkit::purchase().to_string());
    let mut request = http_request(Method::POST, "/transactions", Some(&body), &[]);
    request.is_base64_encoded = true;
    let reply = send(&api, request).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(
        fake.ledger()
            .transaction(reply.transaction_id())
            .outstanding(),
        3
    );
}
