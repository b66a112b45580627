//! The DynamoDB store against moto server 5.2.5: the shared store contract, the TTL of finished
//! sagas, and writes whose answer was lost (the SDK retries them, and the retry must recognise
//! the first write instead of reporting a conflict).

use crate::common;

use common::store_contract as contract;
use std::time::{Duration, SystemTime};

use sagaform_contract::saga_table;
use sagaform_runtime::engine::Engine;
use sagaform_runtime::errors::{IdempotencyError, StoreError};
use sagaform_runtime::model::{SagaRecord, SagaStatus, StepStatus, new_transaction_id};
use sagaform_runtime::store::{
    ClaimOutcome, ConfiguredStore, CountingStore, IdempotencyClaim, IdempotencyCompletion,
    IdempotencyStore, SagaStore,
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

/// The index entry of the saga `transaction_id`: its `open_status` attribute, if any.
async fn open_status_of(test: &TestStore, transaction_id: &str) -> Option<String> {
    let ConfiguredStore::DynamoDb(store) = test.store() else {
        panic!("a DynamoDB store")
    };
    let item = store
        .client()
        .get_item()
        .table_name(store.saga_table())
        .key(
            "transaction_id",
            aws_sdk_dynamodb::types::AttributeValue::S(transaction_id.to_owned()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    item.item()
        .and_then(|item| item.get(saga_table::OPEN_STATUS_ATTRIBUTE))
        .map(|value| value.as_s().unwrap().clone())
}

// The index of open sagas must not become a hot partition: only open sagas are in it, under
// their status and shard, and a successful saga writes it when it enters, when it starts
// running and when it leaves, not on every step.
#[tokio::test]
async fn only_open_sagas_are_in_the_status_index_sharded_and_written_on_status_changes_only() {
    let test = store().await;
    let (_fake, client) = sagaform_testkit::fake_saas().await;
    let counting = CountingStore::new(test.store());
    let engine = Engine::new(PURCHASE, &counting, &client);

    let record = engine.start(purchase()).await.unwrap();
    let tx = record.transaction_id.clone();
    let shard = saga_table::status_shard(&tx);
    assert_eq!(
        open_status_of(&test, &tx).await,
        Some(format!("PENDING#{shard}"))
    );
    let listed = test
        .store()
        .list_by_status(SagaStatus::Pending, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].transaction_id, tx);

    let finished = engine.run(&tx, common::generous_deadline()).await.unwrap();
    assert_eq!(finished.status, SagaStatus::Completed);
    assert_eq!(
        open_status_of(&test, &tx).await,
        None,
        "a finished saga leaves the index"
    );
    // Enters (1), PENDING -> RUNNING (a delete and a put: 2), the later steps (0), leaves (1);
    // the former index (status + updated_at, every saga) took 1 + 2 per later write.
    assert_eq!(counting.state_writes(), 4);
    assert_eq!(counting.open_index_writes(), 4);
    // Finished sagas are still listed, by a scan.
    let completed = test
        .store()
        .list_by_status(SagaStatus::Completed, 10)
        .await
        .unwrap();
    assert_eq!(completed, [finished]);
}

// Sagas of one status spread over the shards, and listing finds every one of them, least
// recently updated first.
#[tokio::test]
async fn sagas_of_one_status_spread_over_the_shards_and_are_all_listed() {
    let test = store().await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
        test.store().create(&record).await.unwrap();
        ids.push(record.transaction_id);
    }
    let shards: std::collections::BTreeSet<u32> =
        ids.iter().map(|id| saga_table::status_shard(id)).collect();
    assert!(shards.len() > 8, "40 sagas on {} shards", shards.len());
    let listed = test
        .store()
        .list_by_status(SagaStatus::Pending, 100)
        .await
        .unwrap();
    let mut listed_ids: Vec<String> = listed.iter().map(|r| r.transaction_id.clone()).collect();
    assert!(
        listed
            .windows(2)
            .all(|pair| pair[0].updated_at <= pair[1].updated_at),
        "least recently updated first"
    );
    listed_ids.sort();
    ids.sort();
    assert_eq!(listed_ids, ids);
    assert_eq!(
        test.store()
            .list_by_status(SagaStatus::Pending, 5)
            .await
            .unwrap()
            .len(),
        5
    );
}
