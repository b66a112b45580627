//! The sqs pattern end to end through its handlers, on both stores: the API records the saga
//! PENDING and enqueues it, the worker advances it on each delivery (driven like Lambda's event
//! source mapping, against a real queue and DLQ on moto), and the fake SaaS's ledger proves what
//! took effect downstream.

mod common;

use common::{SqsPattern, call, peek};
use sagaform_fake_saas::{Effect, Fault, FaultRule};
use sagaform_runtime::{SagaStatus, StepStatus};
use sagaform_testkit::{Backend, get_transaction, post_transactions, purchase};
use serde_json::{Value, json};

fn body() -> String {
    purchase().to_string()
}

#[tokio::test]
async fn an_accepted_saga_is_pending_enqueued_under_its_id_then_completed_by_the_worker() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        let (status, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
        assert_eq!(status, 202, "{backend:?}: {accepted:#}");
        let id = accepted["transaction_id"].as_str().unwrap().to_owned();
        assert_eq!(accepted["status_url"], format!("/transactions/{id}"));
        assert_eq!(pattern.store.saga(&id).await.status, SagaStatus::Pending);
        assert_eq!(
            pattern.fake.ledger().transaction(&id).total_calls(),
            0,
            "{backend:?}: nothing runs in the API"
        );

        let messages = peek(&pattern.queues.url).await;
        assert_eq!(messages.len(), 1, "{backend:?}");
        let message_body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
        assert_eq!(
            message_body,
            json!({"transaction_id": id, "request": purchase()})
        );
        let attribute = &messages[0].message_attributes().unwrap()["transaction_id"];
        assert_eq!(
            (attribute.data_type(), attribute.string_value()),
            ("String", Some(id.as_str()))
        );

        let drained = pattern.drain(10).await;
        assert_eq!(
            (drained.invocations, drained.deleted),
            (1, 1),
            "{backend:?}: {drained:?}"
        );
        let (status, shown, _) = pattern.call_api(get_transaction(&id)).await;
        assert_eq!(
            (status, shown["status"].as_str()),
            (200, Some("COMPLETED")),
            "{backend:?}"
        );
        assert_eq!(
            pattern.fake.ledger().transaction(&id).total_calls(),
            3,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_duplicate_submissions_make_one_saga_and_call_downstream_once() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        let apis = [
            pattern.another_api().await,
            pattern.another_api().await,
            pattern.another_api().await,
        ];
        let request = || post_transactions(&body(), Some("dup-concurrent"));
        let (a, b, c) = tokio::join!(
            call(&apis[0], request()),
            call(&apis[1], request()),
            call(&apis[2], request())
        );
        let saga = pattern.store.only_saga().await;
        for (status, answer, _) in [&a, &b, &c] {
            match status {
                202 => assert_eq!(
                    answer["transaction_id"],
                    saga.transaction_id.as_str(),
                    "{backend:?}"
                ),
                409 => assert_eq!(answer["error"], "request_in_progress", "{backend:?}"),
                other => panic!("{backend:?}: unexpected {other}: {answer:#}"),
            }
        }
        let fresh = [&a, &b, &c]
            .iter()
            .filter(|(status, _, replayed)| *status == 202 && replayed.is_none())
            .count();
        assert_eq!(
            fresh, 1,
            "{backend:?}: exactly one request recorded the saga"
        );

        pattern.drain(10).await;
        assert_eq!(
            pattern.store.saga(&saga.transaction_id).await.status,
            SagaStatus::Completed
        );
        let ledger = pattern.fake.ledger().snapshot();
        assert_eq!(ledger.transactions.len(), 1, "{backend:?}");
        assert_eq!(
            ledger.transactions[&saga.transaction_id].total_calls(),
            3,
            "{backend:?}: each service once"
        );
    }
}

#[tokio::test]
async fn a_sequential_duplicate_replays_the_202_without_work_and_another_body_gets_422() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        let (status, first, _) = pattern
            .call_api(post_transactions(&body(), Some("dup-sequential")))
            .await;
        assert_eq!(status, 202, "{backend:?}");
        pattern.drain(10).await;
        let id = first["transaction_id"].as_str().unwrap();
        let calls = pattern.fake.ledger().transaction(id).total_calls();

        let (status, second, replayed) = pattern
            .call_api(post_transactions(&body(), Some("dup-sequential")))
            .await;
        assert_eq!(
            (status, &second, replayed.as_deref()),
            (202, &first, Some("true")),
            "{backend:?}"
        );
        assert!(
            peek(&pattern.queues.url).await.is_empty(),
            "{backend:?}: a finished saga is not enqueued again"
        );
        assert_eq!(pattern.fake.ledger().transaction(id).total_calls(), calls);

        let mut other = purchase();
        other["item_id"] = json!("shield");
        let (status, refused, _) = pattern
            .call_api(post_transactions(
                &other.to_string(),
                Some("dup-sequential"),
            ))
            .await;
        assert_eq!(
            (status, refused["error"].as_str()),
            (422, Some("idempotency_key_reused")),
            "{backend:?}"
        );
        assert_eq!(pattern.store.all_sagas().await.len(), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn a_permanent_failure_at_step_three_compensates_three_two_one_and_the_message_is_done() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        pattern
            .fake
            .faults()
            .add(FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 403,
                    reason: "owned".into(),
                },
            ))
            .unwrap();
        let (_, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
        let id = accepted["transaction_id"].as_str().unwrap();
        let drained = pattern.drain(10).await;
        assert_eq!(
            (drained.invocations, drained.deleted),
            (1, 1),
            "{backend:?}: a compensated saga is finished"
        );

        let ledger = pattern.fake.ledger().transaction(id);
        let compensations: Vec<(&str, Effect)> = ledger
            .effects
            .iter()
            .filter(|e| e.effect != Effect::Applied)
            .map(|e| (e.step.as_str(), e.effect))
            .collect();
        assert_eq!(
            compensations,
            [
                ("entitlement", Effect::Noop),
                ("payment", Effect::Compensated),
                ("stock", Effect::Compensated)
            ]
        );
        assert_eq!(ledger.outstanding(), 0, "{backend:?}");
        assert_eq!(pattern.store.saga(id).await.status, SagaStatus::Compensated);
        assert!(
            peek(&pattern.queues.dlq_url).await.is_empty(),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn transient_failures_and_rate_limits_come_back_by_redelivery_and_land_once() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        let faults = pattern.fake.faults();
        faults
            .add(FaultRule::new("inventory", "reserve", Fault::Unavailable).times(1))
            .unwrap();
        faults
            .add(
                FaultRule::new(
                    "payments",
                    "charge",
                    Fault::RateLimited {
                        retry_after_secs: 1,
                    },
                )
                .times(1),
            )
            .unwrap();
        faults
            .add(FaultRule::new("entitlements", "grant", Fault::Unavailable).times(1))
            .unwrap();
        let (_, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
        let id = accepted["transaction_id"].as_str().unwrap();

        let drained = pattern.drain(10).await;
        assert_eq!(
            drained.invocations, 4,
            "{backend:?}: one delivery per transient failure, then success: {drained:?}"
        );
        assert_eq!(
            pattern.store.saga(id).await.status,
            SagaStatus::Completed,
            "{backend:?}"
        );
        let ledger = pattern.fake.ledger().transaction(id);
        for (service, action) in [
            ("inventory", "reserve"),
            ("payments", "charge"),
            ("entitlements", "grant"),
        ] {
            let service_ledger = ledger.service(service);
            assert_eq!(service_ledger.calls[action], 2, "{backend:?}: {service}");
            assert_eq!(
                service_ledger.actions_applied,
                [action],
                "{backend:?}: {service} applied once"
            );
        }
    }
}

#[tokio::test]
async fn a_lost_response_is_retried_on_redelivery_without_a_second_charge() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        pattern
            .fake
            .faults()
            .add(FaultRule::new("payments", "charge", Fault::ResponseLost).times(1))
            .unwrap();
        let (_, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
        let id = accepted["transaction_id"].as_str().unwrap();
        let drained = pattern.drain(10).await;
        assert_eq!(drained.invocations, 2, "{backend:?}");
        let payments = pattern.fake.ledger().transaction(id).service("payments");
        assert_eq!(
            (payments.calls["charge"], payments.replays),
            (2, 1),
            "{backend:?}"
        );
        assert_eq!(
            payments.actions_applied,
            ["charge"],
            "{backend:?}: charged once"
        );
        let saga = pattern.store.saga(id).await;
        assert_eq!(saga.status, SagaStatus::Completed);
        assert!(
            saga.steps.iter().all(|s| s.status == StepStatus::Succeeded),
            "{backend:?}: no step skipped"
        );
    }
}

#[tokio::test]
async fn a_compensation_failing_transiently_is_retried_by_redelivery() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        let faults = pattern.fake.faults();
        faults
            .add(FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 422,
                    reason: "no".into(),
                },
            ))
            .unwrap();
        faults
            .add(FaultRule::new("payments", "refund", Fault::Unavailable).times(1))
            .unwrap();
        let (_, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
        let id = accepted["transaction_id"].as_str().unwrap();
        let drained = pattern.drain(10).await;
        assert_eq!(drained.invocations, 2, "{backend:?}: {drained:?}");
        assert_eq!(
            pattern.store.saga(id).await.status,
            SagaStatus::Compensated,
            "{backend:?}"
        );
        assert_eq!(
            pattern.fake.ledger().transaction(id).outstanding(),
            0,
            "{backend:?}"
        );
        assert!(
            peek(&pattern.queues.dlq_url).await.is_empty(),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_compensation_failing_for_good_leaves_the_message_in_the_dlq_after_max_receive_count() {
    for backend in Backend::ALL {
        let max_receive_count = 3;
        let pattern = SqsPattern::new(backend, max_receive_count).await;
        let faults = pattern.fake.faults();
        faults
            .add(FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 422,
                    reason: "no".into(),
                },
            ))
            .unwrap();
        faults
            .add(FaultRule::new(
                "payments",
                "refund",
                Fault::Reject {
                    status: 400,
                    reason: "window closed".into(),
                },
            ))
            .unwrap();
        let (_, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
        let id = accepted["transaction_id"].as_str().unwrap();

        let drained = pattern.drain(10).await;
        assert_eq!(
            drained.invocations, max_receive_count as usize,
            "{backend:?}: {drained:?}"
        );
        assert_eq!(drained.deleted, 0, "{backend:?}");
        let saga = pattern.store.saga(id).await;
        assert_eq!(saga.status, SagaStatus::CompensationFailed, "{backend:?}");
        // The compensation was tried once: later deliveries find the saga needing a human and
        // call nothing.
        assert_eq!(
            pattern
                .fake
                .ledger()
                .transaction(id)
                .service("payments")
                .calls["refund"],
            1,
            "{backend:?}"
        );

        let dead = peek(&pattern.queues.dlq_url).await;
        assert_eq!(dead.len(), 1, "{backend:?}");
        let attribute = &dead[0].message_attributes().unwrap()["transaction_id"];
        assert_eq!(
            attribute.string_value(),
            Some(id),
            "{backend:?}: the DLQ message names its saga"
        );
    }
}

#[tokio::test]
async fn a_saga_the_queue_refused_stays_pending_and_a_retry_with_the_same_key_enqueues_it() {
    for backend in Backend::ALL {
        let pattern = SqsPattern::new(backend, 5).await;
        let missing_queue = format!("{}-missing", pattern.queues.url);
        let broken = api::Api::new(
            pattern.store.store(),
            api::Dispatch::Queue {
                client: sagaform_testkit::sqs_client(),
                queue_url: missing_queue,
            },
        );
        let (status, failed, _) =
            call(&broken, post_transactions(&body(), Some("enqueue-retry"))).await;
        assert_eq!(
            (status, failed["error"].as_str()),
            (503, Some("dispatch_failed")),
            "{backend:?}: {failed:#}"
        );
        let id = failed["transaction_id"].as_str().unwrap().to_owned();
        assert_eq!(
            pattern.store.saga(&id).await.status,
            SagaStatus::Pending,
            "{backend:?}"
        );

        let (status, accepted, replayed) = pattern
            .call_api(post_transactions(&body(), Some("enqueue-retry")))
            .await;
        assert_eq!(
            (status, replayed.as_deref()),
            (202, Some("true")),
            "{backend:?}: {accepted:#}"
        );
        assert_eq!(accepted["transaction_id"], id.as_str());
        pattern.drain(10).await;
        assert_eq!(
            pattern.store.saga(&id).await.status,
            SagaStatus::Completed,
            "{backend:?}"
        );
        assert_eq!(pattern.store.all_sagas().await.len(), 1, "{backend:?}");
    }
}
