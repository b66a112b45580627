//! Idempotency with Powertools semantics, against both stores: one winner among concurrent
//! duplicates, replay of a completed response, refusal of another payload, takeover of a claim
//! whose invocation timed out, and release after a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use sagaform_runtime::errors::IdempotencyError;
use sagaform_runtime::idempotency::{Idempotency, IdempotentResponse, RunError, payload_hash};
use sagaform_runtime::model::new_transaction_id;
use sagaform_runtime::store::{
    ClaimOutcome, IdempotencyClaim, IdempotencyCompletion, IdempotencyStatus, IdempotencyStore,
};
use sagaform_testkit::{Backend, TestStore, purchase};
use serde_json::{Value, json};

fn key() -> String {
    format!("test:{}", new_transaction_id())
}

fn in_thirty_seconds() -> SystemTime {
    SystemTime::now() + Duration::from_secs(30)
}

async fn concurrent_duplicates_claim_once_and_the_others_are_told_in_progress(backend: Backend) {
    let t = TestStore::new(backend).await;
    let payload = purchase();
    let hash = payload_hash(&payload);
    // Many rounds, so the race is really exercised rather than won by the first spawn (on
    // moto it needs the launcher's lock: moto's own conditional put is not atomic).
    for _ in 0..30 {
        let key = key();
        let mut claims = Vec::new();
        for _ in 0..6 {
            let store = t.second_handle().await;
            let (key, hash) = (key.clone(), hash.clone());
            claims.push(tokio::spawn(async move {
                store
                    .claim(&IdempotencyClaim {
                        key: &key,
                        payload_hash: &hash,
                        in_progress_until: in_thirty_seconds(),
                        expiration: SystemTime::now() + Duration::from_secs(3600),
                    })
                    .await
            }));
        }
        let mut claimed = 0;
        for claim in claims {
            match claim.await.unwrap() {
                Ok(ClaimOutcome::Claimed) => claimed += 1,
                Err(IdempotencyError::InProgress(_)) => {}
                other => panic!("unexpected claim outcome {other:?}"),
            }
        }
        assert_eq!(claimed, 1);
    }
}

async fn concurrent_duplicate_requests_run_the_work_once(backend: Backend) {
    let t = TestStore::new(backend).await;
    let key = key();
    let executions = Arc::new(AtomicU32::new(0));
    let mut requests = Vec::new();
    for _ in 0..5 {
        let idempotency = Idempotency::new(t.second_handle().await, Duration::from_secs(3600));
        let (key, executions) = (key.clone(), executions.clone());
        requests.push(tokio::spawn(async move {
            idempotency
                .run(&key, &purchase(), in_thirty_seconds(), || async {
                    executions.fetch_add(1, Ordering::SeqCst);
                    // Long enough that every duplicate arrives while the first is in progress.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<Value, std::convert::Infallible>(json!({"status": "COMPLETED"}))
                })
                .await
        }));
    }
    let mut fresh = 0;
    for request in requests {
        match request.await.unwrap() {
            Ok(IdempotentResponse::Fresh(_)) => fresh += 1,
            Ok(IdempotentResponse::Replayed(_))
            | Err(RunError::Idempotency(IdempotencyError::InProgress(_))) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

async fn a_completed_key_replays_the_stored_response_without_running_again(backend: Backend) {
    let t = TestStore::new(backend).await;
    let idempotency = Idempotency::new(t.store().clone(), Duration::from_secs(3600));
    let key = key();
    let payload = purchase();
    let executions = AtomicU32::new(0);
    let work = || async {
        executions.fetch_add(1, Ordering::SeqCst);
        Ok::<Value, std::convert::Infallible>(
            json!({"transaction_id": "tx-1", "status": "COMPLETED"}),
        )
    };
    let first = idempotency
        .run(&key, &payload, in_thirty_seconds(), work)
        .await
        .unwrap();
    let second = idempotency
        .run(&key, &payload, in_thirty_seconds(), work)
        .await
        .unwrap();
    assert_eq!(
        first,
        IdempotentResponse::Fresh(json!({"transaction_id": "tx-1", "status": "COMPLETED"}))
    );
    assert_eq!(
        second,
        IdempotentResponse::Replayed(json!({"transaction_id": "tx-1", "status": "COMPLETED"}))
    );
    assert_eq!(executions.load(Ordering::SeqCst), 1);
    let record = t.store().get_idempotency(&key).await.unwrap().unwrap();
    assert_eq!(record.status, IdempotencyStatus::Completed);
}

async fn the_same_key_with_another_payload_is_refused(backend: Backend) {
    let t = TestStore::new(backend).await;
    let idempotency = Idempotency::new(t.store().clone(), Duration::from_secs(3600));
    let key = key();
    let done = || async { Ok::<Value, std::convert::Infallible>(json!({"ok": true})) };
    idempotency
        .run(&key, &json!({"quantity": 1}), in_thirty_seconds(), done)
        .await
        .unwrap();
    let error = idempotency
        .run(&key, &json!({"quantity": 2}), in_thirty_seconds(), done)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RunError::Idempotency(IdempotencyError::PayloadMismatch(_))
        ),
        "{error}"
    );
    // Key order is not a different payload.
    let same = idempotency
        .run(
            &key,
            &serde_json::from_str(r#"{ "quantity" : 1 }"#).unwrap(),
            in_thirty_seconds(),
            done,
        )
        .await
        .unwrap();
    assert!(matches!(same, IdempotentResponse::Replayed(_)));
}

async fn a_claim_whose_invocation_timed_out_is_taken_over(backend: Backend) {
    let t = TestStore::new(backend).await;
    let key = key();
    let hash = payload_hash(&json!({"a": 1}));
    let expired_invocation = IdempotencyClaim {
        key: &key,
        payload_hash: &hash,
        // The first invocation's deadline has already passed: it timed out without finishing.
        in_progress_until: SystemTime::now() - Duration::from_secs(1),
        expiration: SystemTime::now() + Duration::from_secs(3600),
    };
    assert_eq!(
        t.store().claim(&expired_invocation).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let retry = IdempotencyClaim {
        in_progress_until: in_thirty_seconds(),
        ..expired_invocation
    };
    assert_eq!(
        t.store().claim(&retry).await.unwrap(),
        ClaimOutcome::Claimed
    );
    // The retry's own window is live, so a third attempt must wait.
    let error = t.store().claim(&retry).await.unwrap_err();
    assert!(matches!(error, IdempotencyError::InProgress(_)), "{error}");
}

async fn an_expired_record_is_forgotten_even_when_completed(backend: Backend) {
    let t = TestStore::new(backend).await;
    let key = key();
    let hash = payload_hash(&json!({"a": 1}));
    let claim = IdempotencyClaim {
        key: &key,
        payload_hash: &hash,
        in_progress_until: in_thirty_seconds(),
        expiration: SystemTime::now() + Duration::from_secs(3600),
    };
    assert_eq!(
        t.store().claim(&claim).await.unwrap(),
        ClaimOutcome::Claimed
    );
    t.store()
        .complete(&IdempotencyCompletion {
            key: &key,
            response: &json!({"old": true}),
            expiration: SystemTime::now() - Duration::from_secs(5),
        })
        .await
        .unwrap();
    let other_hash = payload_hash(&json!({"a": 2}));
    let fresh = IdempotencyClaim {
        payload_hash: &other_hash,
        ..claim
    };
    assert_eq!(
        t.store().claim(&fresh).await.unwrap(),
        ClaimOutcome::Claimed
    );
}

async fn failed_work_releases_the_claim_so_a_retry_runs_it(backend: Backend) {
    let t = TestStore::new(backend).await;
    let idempotency = Idempotency::new(t.store().clone(), Duration::from_secs(3600));
    let key = key();
    let payload = json!({"a": 1});
    let failed = idempotency
        .run(&key, &payload, in_thirty_seconds(), || async {
            Err::<Value, &str>("downstream unavailable")
        })
        .await
        .unwrap_err();
    assert!(matches!(failed, RunError::Work("downstream unavailable")));
    assert!(t.store().get_idempotency(&key).await.unwrap().is_none());
    let retried = idempotency
        .run(&key, &payload, in_thirty_seconds(), || async {
            Ok::<Value, &str>(json!({"ok": true}))
        })
        .await
        .unwrap();
    assert_eq!(retried, IdempotentResponse::Fresh(json!({"ok": true})));
}

/// Runs each behaviour against both stores, one test per store and behaviour.
macro_rules! for_each_store {
    ($($behaviour:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $behaviour() {
                    super::$behaviour(super::Backend::Postgres).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $behaviour() {
                    super::$behaviour(super::Backend::DynamoDb).await;
                }
            )*
        }
    };
}

for_each_store!(
    concurrent_duplicates_claim_once_and_the_others_are_told_in_progress,
    concurrent_duplicate_requests_run_the_work_once,
    a_completed_key_replays_the_stored_response_without_running_again,
    the_same_key_with_another_payload_is_refused,
    a_claim_whose_invocation_timed_out_is_taken_over,
    an_expired_record_is_forgotten_even_when_completed,
    failed_work_releases_the_claim_so_a_retry_runs_it,
);
