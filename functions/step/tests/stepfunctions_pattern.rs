//! The stepfunctions pattern end to end through its handlers, on both stores: the API records
//! the saga PENDING and starts an execution named by its `transaction_id` on moto; the execution
//! is then run by the test's driver of the generated definition, which invokes the real `step`
//! handler per Task with the generated Retry and Catch; the fake SaaS's ledger proves what took
//! effect downstream.

mod common;

use common::{Ending, StepFunctionsPattern, call};
use sagaform_fake_saas::{Effect, Fault, FaultRule};
use sagaform_runtime::{SagaStatus, StepStatus};
use sagaform_testkit::{Backend, post_transactions, purchase};
use serde_json::json;

fn body() -> String {
    purchase().to_string()
}

async fn start(pattern: &StepFunctionsPattern) -> String {
    let (status, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
    assert_eq!(status, 202, "{accepted:#}");
    accepted["transaction_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_accepted_saga_starts_an_execution_named_by_its_id_whose_tasks_complete_it() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
        let id = start(&pattern).await;
        assert_eq!(
            pattern.store.saga(&id).await.status,
            SagaStatus::Pending,
            "{backend:?}"
        );
        let executions = pattern.executions().await;
        assert_eq!(
            executions,
            [(
                id.clone(),
                json!({"transaction_id": id, "request": purchase()})
            )],
            "{backend:?}"
        );

        let execution = pattern.run_execution(&id).await;
        assert_eq!(
            execution.ending,
            Ending::Succeeded,
            "{backend:?}: {execution:?}"
        );
        assert_eq!(
            execution.tasks(),
            ["Execute stock", "Execute payment", "Execute entitlement"]
        );
        assert_eq!(
            execution.data["results"]["entitlement"]["Payload"]["saga_status"],
            "COMPLETED"
        );
        assert_eq!(
            pattern.store.saga(&id).await.status,
            SagaStatus::Completed,
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
async fn concurrent_duplicate_submissions_make_one_saga_and_one_execution() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
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
            assert!(
                matches!(status, 202 | 409),
                "{backend:?}: {status} {answer:#}"
            );
        }
        let fresh = [&a, &b, &c]
            .iter()
            .filter(|(status, _, replayed)| *status == 202 && replayed.is_none())
            .count();
        assert_eq!(fresh, 1, "{backend:?}");
        let executions = pattern.executions().await;
        assert_eq!(executions.len(), 1, "{backend:?}: one execution");
        assert_eq!(executions[0].0, saga.transaction_id);
        assert_eq!(
            pattern.run_execution(&saga.transaction_id).await.ending,
            Ending::Succeeded
        );
        assert_eq!(
            pattern
                .fake
                .ledger()
                .transaction(&saga.transaction_id)
                .total_calls(),
            3,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_replay_before_the_execution_ran_starts_it_again_harmlessly() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
        let (status, first, _) = pattern
            .call_api(post_transactions(&body(), Some("replay-pending")))
            .await;
        assert_eq!(status, 202);
        // Still PENDING: the replay hands the saga over again, which finds the execution there.
        let (status, second, replayed) = pattern
            .call_api(post_transactions(&body(), Some("replay-pending")))
            .await;
        assert_eq!(
            (status, &second, replayed.as_deref()),
            (202, &first, Some("true")),
            "{backend:?}: {second:#}"
        );
        assert_eq!(pattern.executions().await.len(), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn a_sequential_duplicate_after_completion_replays_and_another_body_gets_422() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
        let (_, first, _) = pattern
            .call_api(post_transactions(&body(), Some("dup-sequential")))
            .await;
        let id = first["transaction_id"].as_str().unwrap();
        pattern.run_execution(id).await;
        let calls = pattern.fake.ledger().transaction(id).total_calls();

        let (status, second, replayed) = pattern
            .call_api(post_transactions(&body(), Some("dup-sequential")))
            .await;
        assert_eq!(
            (status, &second, replayed.as_deref()),
            (202, &first, Some("true")),
            "{backend:?}"
        );
        assert_eq!(pattern.executions().await.len(), 1, "{backend:?}");
        assert_eq!(
            pattern.fake.ledger().transaction(id).total_calls(),
            calls,
            "{backend:?}"
        );

        let mut other = purchase();
        other["amount_minor"] = json!(1);
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
    }
}

#[tokio::test]
async fn a_permanent_failure_at_step_three_compensates_three_two_one_and_the_execution_fails_compensated()
 {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
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
        let id = start(&pattern).await;
        let execution = pattern.run_execution(&id).await;
        assert!(
            matches!(&execution.ending, Ending::Failed { error, .. } if error == "SagaCompensated"),
            "{execution:?}"
        );
        assert_eq!(
            execution.tasks(),
            [
                "Execute stock",
                "Execute payment",
                "Execute entitlement",
                "Compensate entitlement",
                "Compensate payment",
                "Compensate stock"
            ],
            "{backend:?}: a permanent error is not retried"
        );
        assert_eq!(execution.data["error"]["Error"], "Permanent");

        let ledger = pattern.fake.ledger().transaction(&id);
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
        let saga = pattern.store.saga(&id).await;
        assert_eq!(saga.status, SagaStatus::Compensated, "{backend:?}");
        assert!(
            saga.error.as_deref().is_some_and(|e| e.contains("owned")),
            "{backend:?}: {saga:#?}"
        );
    }
}

#[tokio::test]
async fn transient_failures_and_rate_limits_are_retried_by_the_state_machine_and_land_once() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
        let faults = pattern.fake.faults();
        faults
            .add(FaultRule::new("inventory", "reserve", Fault::Unavailable).times(2))
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
        let id = start(&pattern).await;
        let execution = pattern.run_execution(&id).await;
        assert_eq!(
            execution.ending,
            Ending::Succeeded,
            "{backend:?}: {execution:?}"
        );
        let count = |state: &str| execution.attempts.iter().filter(|a| *a == state).count();
        assert_eq!(
            (
                count("Execute stock"),
                count("Execute payment"),
                count("Execute entitlement")
            ),
            (3, 2, 2)
        );
        let ledger = pattern.fake.ledger().transaction(&id);
        for (service, action) in [
            ("inventory", "reserve"),
            ("payments", "charge"),
            ("entitlements", "grant"),
        ] {
            assert_eq!(
                ledger.service(service).actions_applied,
                [action],
                "{backend:?}: {service} applied once"
            );
        }
        assert_eq!(pattern.store.saga(&id).await.status, SagaStatus::Completed);
    }
}

#[tokio::test]
async fn a_lost_response_is_retried_with_the_same_key_without_a_second_charge() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
        pattern
            .fake
            .faults()
            .add(FaultRule::new("payments", "charge", Fault::ResponseLost).times(1))
            .unwrap();
        let id = start(&pattern).await;
        assert_eq!(pattern.run_execution(&id).await.ending, Ending::Succeeded);
        let payments = pattern.fake.ledger().transaction(&id).service("payments");
        assert_eq!(
            (payments.calls["charge"], payments.replays),
            (2, 1),
            "{backend:?}"
        );
        assert_eq!(payments.actions_applied, ["charge"], "{backend:?}");
    }
}

#[tokio::test]
async fn a_task_run_again_after_its_work_was_done_does_not_call_again() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
        let id = start(&pattern).await;
        let payload = json!({"operation": "execute", "step": "stock", "transaction_id": id, "request": purchase()});
        for _ in 0..2 {
            // The second invocation is Step Functions retrying a Task whose answer it lost.
            let output = pattern
                .handler
                .handle(sagaform_testkit::event(
                    payload.clone(),
                    common::INVOCATION_TIME,
                ))
                .await
                .unwrap();
            assert_eq!(
                (
                    output["saga_status"].as_str(),
                    output["step_status"].as_str()
                ),
                (Some("RUNNING"), Some("SUCCEEDED"))
            );
        }
        assert_eq!(
            pattern
                .fake
                .ledger()
                .transaction(&id)
                .service("inventory")
                .calls["reserve"],
            1,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_compensation_failing_transiently_is_retried_and_the_saga_compensated() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
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
            .add(FaultRule::new("payments", "refund", Fault::Unavailable).times(2))
            .unwrap();
        let id = start(&pattern).await;
        let execution = pattern.run_execution(&id).await;
        assert!(
            matches!(&execution.ending, Ending::Failed { error, .. } if error == "SagaCompensated"),
            "{execution:?}"
        );
        assert_eq!(
            execution
                .attempts
                .iter()
                .filter(|a| *a == "Compensate payment")
                .count(),
            3,
            "{backend:?}"
        );
        assert_eq!(
            pattern.store.saga(&id).await.status,
            SagaStatus::Compensated,
            "{backend:?}"
        );
        assert_eq!(
            pattern.fake.ledger().transaction(&id).outstanding(),
            0,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_compensation_failing_for_good_is_marked_and_fails_the_execution() {
    for backend in Backend::ALL {
        let pattern = StepFunctionsPattern::new(backend).await;
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
                    reason: "refund window closed".into(),
                },
            ))
            .unwrap();
        let id = start(&pattern).await;
        let execution = pattern.run_execution(&id).await;
        assert!(
            matches!(&execution.ending, Ending::Failed { error, .. } if error == "CompensationFailed"),
            "{execution:?}"
        );
        assert_eq!(
            execution.tasks().last(),
            Some(&"Mark payment compensation failed"),
            "{backend:?}"
        );
        // The failure that ended the saga is in the execution's data, as the Catch put it.
        assert_eq!(execution.data["error"]["Error"], "Permanent");
        assert!(
            execution.data["error"]["Cause"]
                .as_str()
                .unwrap()
                .contains("refund window closed")
        );

        let saga = pattern.store.saga(&id).await;
        assert_eq!(saga.status, SagaStatus::CompensationFailed, "{backend:?}");
        assert_eq!(
            saga.steps[1].status,
            StepStatus::CompensationFailed,
            "{backend:?}"
        );
        assert!(
            saga.error
                .as_deref()
                .is_some_and(|e| e.contains("refund window closed")),
            "{backend:?}: {saga:#?}"
        );
    }
}
