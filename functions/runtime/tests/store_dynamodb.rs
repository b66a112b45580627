//! The DynamoDB store against moto server 5.2.5: the shared store contract and the TTL of
//! finished sagas.

mod common;

use common::store_contract as contract;
use sagaform_runtime::model::{SagaRecord, SagaStatus, new_transaction_id};
use sagaform_runtime::store::{ConfiguredStore, SagaStore};
use sagaform_saga::PURCHASE;
use sagaform_testkit::{Backend, TestStore, purchase};

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
