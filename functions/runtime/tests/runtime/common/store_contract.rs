//! The behaviour both stores must share, written once and run against each (from
//! `store_postgres.rs` and `store_dynamodb.rs`).

use std::time::{Duration, SystemTime};

use sagaform_runtime::errors::StoreError;
use sagaform_runtime::idempotency::payload_hash;
use sagaform_runtime::model::{
    SagaRecord, SagaStatus, StepStatus, new_transaction_id, now_rfc3339, rfc3339,
};
use sagaform_runtime::store::{
    ClaimOutcome, IdempotencyClaim, IdempotencyCompletion, IdempotencyStatus, IdempotencyStore,
    SagaStore,
};
use sagaform_saga::PURCHASE;
use serde_json::json;

use sagaform_testkit::{TestStore, purchase};

fn new_saga() -> SagaRecord {
    SagaRecord::new(&PURCHASE, new_transaction_id(), purchase())
}

pub async fn a_created_saga_reads_back_field_for_field(t: &TestStore) {
    let mut record = new_saga();
    record.steps[0].error = Some("an error with 'quotes' and \"double quotes\"".into());
    record.steps[0].updated_at = Some(now_rfc3339());
    record.steps[0].attempts = 4;
    record.steps[0].compensation_attempts = 2;
    let version = t.store().create(&record).await.unwrap();
    assert_eq!(version, 1);
    let stored = t
        .store()
        .get(&record.transaction_id)
        .await
        .unwrap()
        .expect("created saga is found");
    record.version = 1;
    assert_eq!(stored, record);
    assert!(
        t.store()
            .get(&new_transaction_id())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn a_second_create_is_refused_and_keeps_the_first(t: &TestStore) {
    let record = new_saga();
    t.store().create(&record).await.unwrap();
    let mut other = record.clone();
    other.request = json!({"other": true});
    let error = t.store().create(&other).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists(_)), "{error}");
    let stored = t
        .store()
        .get(&record.transaction_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.request, record.request);
}

pub async fn a_stale_writer_loses_the_version_race_and_changes_nothing(t: &TestStore) {
    let record = new_saga();
    t.store().create(&record).await.unwrap();
    let mut winner = t
        .store()
        .get(&record.transaction_id)
        .await
        .unwrap()
        .unwrap();
    let mut loser = winner.clone();

    winner.status = SagaStatus::Running;
    winner.steps[0].status = StepStatus::Succeeded;
    winner.steps[0].attempts = 2;
    winner.steps[1].compensation_attempts = 3;
    assert_eq!(t.store().transition(&winner).await.unwrap(), 2);

    loser.status = SagaStatus::Compensating;
    loser.steps[0].status = StepStatus::Failed;
    loser.error = Some("stale".into());
    let error = t.store().transition(&loser).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict { expected: 1, .. }),
        "{error}"
    );

    let stored = t
        .store()
        .get(&record.transaction_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.status, SagaStatus::Running);
    assert_eq!(stored.steps[0].status, StepStatus::Succeeded);
    assert_eq!(
        (
            stored.steps[0].attempts,
            stored.steps[1].compensation_attempts
        ),
        (2, 3),
        "a transition writes both attempt counts"
    );
    assert_eq!(stored.error, None);
}

pub async fn of_concurrent_writers_from_one_version_exactly_one_wins(t: &TestStore) {
    let record = new_saga();
    t.store().create(&record).await.unwrap();
    let read = t
        .store()
        .get(&record.transaction_id)
        .await
        .unwrap()
        .unwrap();
    let mut handles = Vec::new();
    for writer in 0..6 {
        let store = t.second_handle().await;
        let mut attempt = read.clone();
        attempt.error = Some(format!("writer {writer}"));
        handles.push(tokio::spawn(async move {
            (writer, store.transition(&attempt).await)
        }));
    }
    let mut winners = Vec::new();
    for handle in handles {
        let (writer, result) = handle.await.unwrap();
        match result {
            Ok(version) => winners.push((writer, version)),
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("writer {writer}: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = t
        .store()
        .get(&record.transaction_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.error, Some(format!("writer {}", winners[0].0)));
}

pub async fn a_transition_of_an_unknown_saga_is_not_found(t: &TestStore) {
    let mut record = new_saga();
    record.version = 1;
    let error = t.store().transition(&record).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");
}

pub async fn stuck_sagas_are_active_ones_not_updated_for_a_while(t: &TestStore) {
    let hour_ago = rfc3339(SystemTime::now() - Duration::from_secs(3600));
    // A saga is created before it is last updated: those last updated an hour ago were created
    // then too. A saga created long ago but updated just now is busy, not stuck.
    let old = |status| {
        let mut record = new_saga();
        record.status = status;
        record.created_at = hour_ago.clone();
        record.updated_at = hour_ago.clone();
        record
    };
    let old_running = old(SagaStatus::Running);
    let old_completed = old(SagaStatus::Completed);
    let old_compensating = old(SagaStatus::Compensating);
    let mut busy_running = old(SagaStatus::Running);
    busy_running.updated_at = new_saga().updated_at;
    let fresh_pending = new_saga();
    for record in [
        &old_running,
        &old_completed,
        &old_compensating,
        &busy_running,
        &fresh_pending,
    ] {
        t.store().create(record).await.unwrap();
    }
    let stuck: Vec<String> = t
        .store()
        .list_stuck(Duration::from_secs(600), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.transaction_id)
        .collect();
    assert_eq!(stuck.len(), 2, "{stuck:?}");
    assert!(stuck.contains(&old_running.transaction_id));
    assert!(stuck.contains(&old_compensating.transaction_id));

    let pending = t
        .store()
        .list_by_status(SagaStatus::Pending, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0],
        SagaRecord {
            version: 1,
            ..fresh_pending
        }
    );
    assert_eq!(
        t.store()
            .list_by_status(SagaStatus::Completed, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn creating_a_saga_completes_the_idempotency_record_atomically(t: &TestStore) {
    let key = format!("api:{}", new_transaction_id());
    let payload = purchase();
    let hash = payload_hash(&payload);
    let claim = IdempotencyClaim {
        key: &key,
        payload_hash: &hash,
        in_progress_until: SystemTime::now() + Duration::from_secs(30),
        expiration: SystemTime::now() + Duration::from_secs(3600),
    };
    assert_eq!(
        t.store().claim(&claim).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let record = new_saga();
    let response = json!({"transaction_id": record.transaction_id, "status": "PENDING"});
    let completion = IdempotencyCompletion {
        key: &key,
        response: &response,
        expiration: SystemTime::now() + Duration::from_secs(3600),
    };
    t.store()
        .create_completing_idempotency(&record, &completion)
        .await
        .unwrap();
    let stored = t.store().get_idempotency(&key).await.unwrap().unwrap();
    assert_eq!(stored.status, IdempotencyStatus::Completed);
    assert_eq!(stored.response, Some(response.clone()));
    assert!(
        t.store()
            .get(&record.transaction_id)
            .await
            .unwrap()
            .is_some()
    );

    // The record is completed now, so a second saga for the same key must not appear.
    let second = new_saga();
    let error = t
        .store()
        .create_completing_idempotency(&second, &completion)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::IdempotencyNotInProgress(_)),
        "{error}"
    );
    assert!(
        t.store()
            .get(&second.transaction_id)
            .await
            .unwrap()
            .is_none()
    );

    // A saga id that exists leaves the idempotency record in progress.
    let other_key = format!("api:{}", new_transaction_id());
    let other_claim = IdempotencyClaim {
        key: &other_key,
        ..claim
    };
    assert_eq!(
        t.store().claim(&other_claim).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let error = t
        .store()
        .create_completing_idempotency(
            &record,
            &IdempotencyCompletion {
                key: &other_key,
                ..completion
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists(_)), "{error}");
    let untouched = t
        .store()
        .get_idempotency(&other_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.status, IdempotencyStatus::InProgress);
}
