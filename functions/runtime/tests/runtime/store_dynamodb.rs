//! The DynamoDB store against moto server 5.2.5: the shared store contract, the TTL of finished
//! sagas, and writes whose answer was lost (the SDK retries them, and the retry must recognise
//! the first write instead of reporting a conflict).

use crate::common;

use common::store_contract as contract;
use std::time::{Duration, SystemTime};

use sagaform_runtime::errors::{IdempotencyError, StoreError};
use sagaform_runtime::model::{SagaRecord, SagaStatus, StepStatus, new_transaction_id};
use sagaform_runtime::store::{
    ClaimOutcome, ConfiguredStore, IdempotencyClaim, IdempotencyCompletion, IdempotencyStore,
    SagaStore,
};
use sagaform_saga::PURCHASE;
use sagaform_testkit::{Backend, LostResponses, TestStore, purchase};

async fn store() -> TestStore {
    TestStore::new(Backend::DynamoDb).await
}

#[tokio::test]
async fn a_created_saga_reads_back_field_for_field() {
    contract::a_created_saga_reads_back_field_for_field(&store().await).await;
}

#[tokio::test]
async fn a_second_create_is_refused_and_keeps_the_first() {
    contract::a_second_create_is_refused_and_keeps_the_first(&store().await).await;
}

#[tokio::test]
async fn a_stale_writer_loses_the_version_race_and_changes_nothing() {
    contract::a_stale_writer_loses_the_version_race_and_changes_nothing(&store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_writers_from_one_version_exactly_one_wins() {
    contract::of_concurrent_writers_from_one_version_exactly_one_wins(&store().await).await;
}

#[tokio::test]
async fn a_transition_of_an_unknown_saga_is_not_found() {
    contract::a_transition_of_an_unknown_saga_is_not_found(&store().await).await;
}

#[tokio::test]
async fn stuck_sagas_are_active_ones_not_updated_for_a_while() {
    contract::stuck_sagas_are_active_ones_not_updated_for_a_while(&store().await).await;
}

#[tokio::test]
async fn creating_a_saga_completes_the_idempotency_record_atomically() {
    contract::creating_a_saga_completes_the_idempotency_record_atomically(&store().await).await;
}

#[tokio::test]
async fn only_finished_sagas_get_an_expiry_for_the_table_ttl() {
    let t = store().await;
    let ConfiguredStore::DynamoDb(dynamo) = t.store() else {
        unreachable!("a dynamodb test store")
    };
    let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    t.store().create(&record).await.unwrap();
    let expires_at = |item: Option<
        &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    >| {
        item.and_then(|i| i.get("expires_at"))
            .map(|v| v.as_n().unwrap().parse::<i64>().unwrap())
    };
    let table = dynamo.saga_table().to_owned();
    let key = aws_sdk_dynamodb::types::AttributeValue::S(record.transaction_id.clone());
    let item = dynamo
        .client()
        .get_item()
        .table_name(&table)
        .key("transaction_id", key.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        expires_at(item.item()),
        None,
        "an active saga must not expire"
    );

    let mut finished = t
        .store()
        .get(&record.transaction_id)
        .await
        .unwrap()
        .unwrap();
    finished.status = SagaStatus::Completed;
    t.store().transition(&finished).await.unwrap();
    let item = dynamo
        .client()
        .get_item()
        .table_name(&table)
        .key("transaction_id", key)
        .send()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expiry = expires_at(item.item()).expect("a finished saga expires");
    assert!(
        (now + 3500..=now + 3700).contains(&expiry),
        "expiry {expiry} is about an hour after {now}"
    );
}

/// A store whose DynamoDB calls go through a proxy that loses the answer of the next call of
/// `operation`, after moto applied it: the SDK retries, and its retry meets the first write.
async fn losing_the_answer_of(operation: &str) -> (TestStore, LostResponses) {
    let proxy = LostResponses::start().await;
    let t = TestStore::dynamodb_through(&proxy).await;
    proxy.lose(operation, 1);
    (t, proxy)
}

fn claim_for<'a>(key: &'a str, payload_hash: &'a str) -> IdempotencyClaim<'a> {
    IdempotencyClaim {
        key,
        payload_hash,
        in_progress_until: SystemTime::now() + Duration::from_secs(30),
        expiration: SystemTime::now() + Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_recognised_on_the_retry_not_refused() {
    let (t, proxy) = losing_the_answer_of("PutItem").await;
    let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    // Before: the retry's failed condition was reported as AlreadyExists (500 to the client).
    assert_eq!(t.store().create(&record).await.unwrap(), 1);
    assert_eq!(proxy.lost(), ["PutItem"]);
    assert_eq!(t.all_sagas().await.len(), 1);
    // A different saga under the same id is still refused.
    let mut other = record.clone();
    other.request = serde_json::json!({"another": "request"});
    assert!(matches!(
        t.store().create(&other).await,
        Err(StoreError::AlreadyExists(_))
    ));
}

#[tokio::test]
async fn a_create_with_its_key_whose_answer_was_lost_is_recognised_on_the_retry() {
    let (t, proxy) = losing_the_answer_of("TransactWriteItems").await;
    let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    let claim = claim_for("api:lost-create", "hash");
    assert_eq!(
        t.store().claim(&claim).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let response = serde_json::json!({"transaction_id": record.transaction_id});
    let completion = IdempotencyCompletion {
        key: claim.key,
        response: &response,
        expiration: claim.expiration,
    };
    assert_eq!(
        t.store()
            .create_completing_idempotency(&record, &completion)
            .await
            .unwrap(),
        1
    );
    assert_eq!(proxy.lost(), ["TransactWriteItems"]);
    let key = t.store().get_idempotency(claim.key).await.unwrap().unwrap();
    assert_eq!(key.response, Some(response));
}

#[tokio::test]
async fn a_transition_whose_answer_was_lost_is_recognised_on_the_retry_not_a_conflict() {
    let (t, proxy) = losing_the_answer_of("PutItem").await;
    let mut record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    // The create's answer is lost too; both writes must come through as written.
    record.version = t.store().create(&record).await.unwrap();
    proxy.lose("PutItem", 1);
    record.status = SagaStatus::Running;
    record.steps[0].status = StepStatus::Succeeded;
    record.updated_at = sagaform_runtime::model::now_rfc3339();
    assert_eq!(t.store().transition(&record).await.unwrap(), 2);
    assert_eq!(proxy.lost(), ["PutItem", "PutItem"]);
    // A stale writer with other news still loses.
    record.status = SagaStatus::Compensating;
    assert!(matches!(
        t.store().transition(&record).await,
        Err(StoreError::Conflict { expected: 1, .. })
    ));
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_still_the_claimers_and_no_one_elses() {
    let (t, proxy) = losing_the_answer_of("PutItem").await;
    let claim = claim_for("api:lost-claim", "hash");
    // Before: the retry found the claim and reported it in progress, to its own writer.
    assert_eq!(
        t.store().claim(&claim).await.unwrap(),
        ClaimOutcome::Claimed
    );
    assert_eq!(proxy.lost(), ["PutItem"]);
    // A second claimer of the same key with the same deadline is not taken for the first.
    assert!(matches!(
        t.store().claim(&claim).await,
        Err(IdempotencyError::InProgress(_))
    ));
}

#[tokio::test]
async fn a_completion_whose_answer_was_lost_is_recognised_on_the_retry() {
    let (t, proxy) = losing_the_answer_of("UpdateItem").await;
    let claim = claim_for("api:lost-complete", "hash");
    t.store().claim(&claim).await.unwrap();
    let response = serde_json::json!({"status": "COMPLETED"});
    let completion = IdempotencyCompletion {
        key: claim.key,
        response: &response,
        expiration: claim.expiration,
    };
    t.store().complete(&completion).await.unwrap();
    assert_eq!(proxy.lost(), ["UpdateItem"]);
}
