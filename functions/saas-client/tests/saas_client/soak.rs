//! A soak of 500 sagas' worth of calls through the client into the fake, with 20 % transient
//! failures, proving that every effect lands exactly once; prints the throughput (a figure, not
//! an assertion).

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_and_client;
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_saas_client::StepCall;
use sagaform_saga::{PURCHASE, RetryPolicy};
use serde_json::json;
use tokio::sync::Semaphore;

const SAGAS: usize = 500;
const CONCURRENCY: usize = 50;

const PATIENT: RetryPolicy = RetryPolicy {
    max_retries: 12,
    initial_delay: Duration::from_millis(1),
    backoff_rate: 2,
    max_delay: Duration::from_millis(10),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_sagas_with_transient_failures_apply_each_effect_once() {
    let (fake, client) = fake_and_client().await;
    for service in PURCHASE.services() {
        fake.faults()
            .add(FaultRule::on_service(service, Fault::Unavailable).rate(0.2))
            .unwrap();
    }

    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut sagas = tokio::task::JoinSet::new();
    for n in 0..SAGAS {
        let client = client.clone();
        let limit = limit.clone();
        sagas.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let transaction_id = format!("soak-{n:04}");
            let request = json!({"player_id": format!("p{n}"), "amount_minor": n});
            let deadline = Instant::now() + Duration::from_secs(60);
            for step in PURCHASE.steps {
                let call = StepCall::action(step, &transaction_id, &request);
                client
                    .call_with_retry(&call, &PATIENT, deadline)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = sagas.join_next().await {
        done.unwrap();
    }
    let elapsed = started.elapsed();

    let snapshot = fake.ledger().snapshot();
    assert_eq!(snapshot.transactions.len(), SAGAS);
    let mut calls = 0;
    let mut faults = 0;
    for (id, transaction) in &snapshot.transactions {
        assert_eq!(
            transaction.outstanding(),
            PURCHASE.steps.len() as i64,
            "{id}"
        );
        for step in PURCHASE.steps {
            assert_eq!(
                transaction.service(step.service).actions_applied,
                [step.action.name],
                "{id}"
            );
        }
        calls += transaction.total_calls();
        faults += transaction
            .services
            .values()
            .map(|s| s.faults_injected)
            .sum::<u64>();
    }
    assert!(faults > 0, "the 20 % fault rate injected nothing");
    println!(
        "soak: {SAGAS} sagas x {} steps, {calls} calls ({faults} injected failures) in {:.2?}: {:.0} calls/s, {:.0} sagas/s",
        PURCHASE.steps.len(),
        elapsed,
        calls as f64 / elapsed.as_secs_f64(),
        SAGAS as f64 / elapsed.as_secs_f64(),
    );
}
