//! The orchestrator pattern through its handler: the API runs the saga in the request, against
//! both stores and the fake SaaS with injected faults; the ledger of the fake proves what took
//! effect downstream.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::resume::SendFuture;
use api::{Api, ApiSettings, ResumeError, Resumer};
use common::{INVOCATION_TIME, Reply, send, send_with};
use sagaform_fake_saas::{Effect, FakeSaas, Fault, FaultRule};
use sagaform_runtime::{SagaStatus, StepStatus};
use sagaform_saas_client::SaasClient;
use sagaform_testkit::{
    Backend, TestStore, event, fake_saas, get_transaction, post_transactions, purchase,
};
use serde_json::{Value, json};

struct Setup {
    store: TestStore,
    fake: FakeSaas,
    client: SaasClient,
    api: Api,
}

async fn setup(backend: Backend) -> Setup {
    let store = TestStore::new(backend).await;
    let (fake, client) = fake_saas().await;
    let api = Api::orchestrator(store.store(), client.clone());
    Setup {
        store,
        fake,
        client,
        api,
    }
}

fn body() -> String {
    purchase().to_string()
}

async fn post(setup: &Setup, key: Option<&str>) -> Reply {
    send(&setup.api, post_transactions(&body(), key)).await
}

#[tokio::test]
async fn concurrent_duplicates_run_one_saga_and_call_each_service_once() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        // Four Lambda instances, each with its own store connection, get the same request.
        let mut apis = Vec::new();
        for _ in 0..4 {
            apis.push(Api::orchestrator(
                setup.store.second_handle().await,
                setup.client.clone(),
            ));
        }
        let request = || post_transactions(&body(), Some("dup-concurrent"));
        let (a, b, c, d) = tokio::join!(
            send(&apis[0], request()),
            send(&apis[1], request()),
            send(&apis[2], request()),
            send(&apis[3], request()),
        );
        let replies = [a, b, c, d];
        let saga = setup.store.only_saga().await;
        assert_eq!(saga.status, SagaStatus::Completed, "{backend:?}");
        for reply in &replies {
            match reply.status {
                200 => assert_eq!(reply.transaction_id(), saga.transaction_id, "{backend:?}"),
                409 => assert_eq!(reply.body["error"], "request_in_progress", "{backend:?}"),
                other => panic!("{backend:?}: unexpected {other}: {:#}", reply.body),
            }
        }
        let fresh = replies
            .iter()
            .filter(|r| r.status == 200 && r.header("idempotent-replayed").is_none());
        assert_eq!(
            fresh.count(),
            1,
            "{backend:?}: exactly one request ran the saga"
        );
        let ledger = setup.fake.ledger().snapshot();
        assert_eq!(
            ledger.transactions.len(),
            1,
            "{backend:?}: one transaction downstream"
        );
        let calls = ledger.transactions[&saga.transaction_id].total_calls();
        assert_eq!(calls, 3, "{backend:?}: each service called once");
    }
}

#[tokio::test]
async fn a_sequential_duplicate_gets_the_stored_answer_without_calling_downstream() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        let first = post(&setup, Some("dup-sequential")).await;
        assert_eq!(first.status, 200, "{backend:?}: {:#}", first.body);
        let calls_after_first = setup
            .fake
            .ledger()
            .transaction(first.transaction_id())
            .total_calls();

        let second = post(&setup, Some("dup-sequential")).await;
        assert_eq!(second.status, 200, "{backend:?}");
        assert_eq!(second.body, first.body, "{backend:?}: the same answer");
        assert_eq!(second.header("idempotent-replayed"), Some("true"));
        assert_eq!(
            setup
                .fake
                .ledger()
                .transaction(first.transaction_id())
                .total_calls(),
            calls_after_first
        );
        assert_eq!(setup.store.all_sagas().await.len(), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_with_422() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        let first = post(&setup, Some("reused")).await;
        assert_eq!(first.status, 200, "{backend:?}");
        let mut other = purchase();
        other["quantity"] = json!(2);
        let reused = send(
            &setup.api,
            post_transactions(&other.to_string(), Some("reused")),
        )
        .await;
        assert_eq!(reused.status, 422, "{backend:?}: {:#}", reused.body);
        assert_eq!(reused.body["error"], "idempotency_key_reused");
        assert_eq!(
            setup.store.all_sagas().await.len(),
            1,
            "{backend:?}: no second saga"
        );
        // Key order and white space do not make another body.
        let reordered = r#"{ "currency": "EUR", "amount_minor": 499, "quantity": 1, "item_id": "sword", "player_id": "p-1" }"#;
        let same = send(&setup.api, post_transactions(reordered, Some("reused"))).await;
        assert_eq!(
            (same.status, same.header("idempotent-replayed")),
            (200, Some("true")),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_permanent_failure_at_step_three_compensates_three_two_one_and_leaves_nothing() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        setup
            .fake
            .faults()
            .add(FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 403,
                    reason: "already owned".into(),
                },
            ))
            .unwrap();
        let reply = post(&setup, None).await;
        assert_eq!(reply.status, 422, "{backend:?}: {:#}", reply.body);
        assert_eq!(reply.body["status"], "COMPENSATED");
        assert_eq!(reply.body["error_code"], "saga_compensated");

        let id = reply.transaction_id();
        let ledger = setup.fake.ledger().transaction(id);
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
            ],
            "{backend:?}: compensations in reverse order, the failed step's included"
        );
        assert_eq!(ledger.outstanding(), 0, "{backend:?}: ledger back to zero");
        let saga = setup.store.saga(id).await;
        assert_eq!(saga.status, SagaStatus::Compensated);
        assert!(
            saga.steps
                .iter()
                .all(|s| s.status == StepStatus::Compensated),
            "{backend:?}: {saga:#?}"
        );
    }
}

#[tokio::test]
async fn transient_failures_and_rate_limits_are_retried_and_each_effect_lands_once() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        let faults = setup.fake.faults();
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
        let reply = post(&setup, Some("transient")).await;
        assert_eq!(reply.status, 200, "{backend:?}: {:#}", reply.body);

        let ledger = setup.fake.ledger().transaction(reply.transaction_id());
        for (service, action, calls) in [
            ("inventory", "reserve", 3),
            ("payments", "charge", 2),
            ("entitlements", "grant", 2),
        ] {
            let service_ledger = ledger.service(service);
            assert_eq!(
                service_ledger.calls[action], calls,
                "{backend:?}: {service} {action}"
            );
            assert_eq!(
                service_ledger.actions_applied,
                [action],
                "{backend:?}: {service} applied once"
            );
        }
        let saga = setup.store.saga(reply.transaction_id()).await;
        let attempts: Vec<u32> = saga.steps.iter().map(|s| s.attempts).collect();
        assert_eq!(attempts, [3, 2, 2], "{backend:?}");
    }
}

#[tokio::test]
async fn a_lost_response_is_retried_with_the_same_key_and_applied_once() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        setup
            .fake
            .faults()
            .add(FaultRule::new("payments", "charge", Fault::ResponseLost).times(1))
            .unwrap();
        let reply = post(&setup, None).await;
        assert_eq!(reply.status, 200, "{backend:?}: {:#}", reply.body);
        let payments = setup
            .fake
            .ledger()
            .transaction(reply.transaction_id())
            .service("payments");
        assert_eq!(payments.calls["charge"], 2, "{backend:?}");
        assert_eq!(
            payments.actions_applied,
            ["charge"],
            "{backend:?}: charged once"
        );
        assert_eq!(
            payments.replays, 1,
            "{backend:?}: the retry was answered from the stored answer"
        );
    }
}

#[tokio::test]
async fn a_compensation_failing_transiently_is_retried_and_the_saga_compensated() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        let faults = setup.fake.faults();
        faults
            .add(FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 422,
                    reason: "region locked".into(),
                },
            ))
            .unwrap();
        faults
            .add(FaultRule::new("payments", "refund", Fault::Unavailable).times(2))
            .unwrap();
        let reply = post(&setup, None).await;
        assert_eq!(
            (reply.status, reply.body["status"].as_str()),
            (422, Some("COMPENSATED")),
            "{backend:?}: {:#}",
            reply.body
        );
        let ledger = setup.fake.ledger().transaction(reply.transaction_id());
        assert_eq!(ledger.service("payments").calls["refund"], 3, "{backend:?}");
        assert_eq!(ledger.outstanding(), 0, "{backend:?}");
    }
}

#[tokio::test]
async fn a_compensation_failing_for_good_ends_compensation_failed() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        let faults = setup.fake.faults();
        faults
            .add(FaultRule::new(
                "entitlements",
                "grant",
                Fault::Reject {
                    status: 422,
                    reason: "region locked".into(),
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
        let reply = post(&setup, None).await;
        assert_eq!(reply.status, 500, "{backend:?}: {:#}", reply.body);
        assert_eq!(reply.body["status"], "COMPENSATION_FAILED");
        assert_eq!(reply.body["error_code"], "saga_compensation_failed");
        let saga = setup.store.saga(reply.transaction_id()).await;
        assert_eq!(saga.status, SagaStatus::CompensationFailed);
        let statuses: Vec<StepStatus> = saga.steps.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [
                StepStatus::Succeeded,
                StepStatus::CompensationFailed,
                StepStatus::Compensated
            ],
            "{backend:?}"
        );
        assert!(
            saga.error.as_deref().is_some_and(|e| e.contains("refund")),
            "{backend:?}: {saga:#?}"
        );
    }
}

#[tokio::test]
async fn a_request_cut_off_by_its_deadline_is_resumed_by_a_retry_with_the_same_key() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        // Too little time for any step: the saga is recorded and left PENDING.
        let first = send_with(
            &setup.api,
            post_transactions(&body(), Some("cut-off")),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(first.status, 503, "{backend:?}: {:#}", first.body);
        assert_eq!(first.header("retry-after"), Some("1"));
        let id = first.transaction_id().to_owned();
        assert_eq!(first.body["status"], "PENDING");

        // While the first invocation may still be alive, a retry must not run the saga too.
        let early = post(&setup, Some("cut-off")).await;
        assert_eq!(
            (early.status, early.transaction_id()),
            (409, id.as_str()),
            "{backend:?}: {:#}",
            early.body
        );

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let resumed = post(&setup, Some("cut-off")).await;
        assert_eq!(resumed.status, 200, "{backend:?}: {:#}", resumed.body);
        assert_eq!(resumed.transaction_id(), id);
        assert_eq!(setup.store.all_sagas().await.len(), 1, "{backend:?}");
        assert_eq!(
            setup.fake.ledger().transaction(&id).total_calls(),
            3,
            "{backend:?}"
        );
    }
}

/// A [`Resumer`] standing in for Lambda's asynchronous invoke: it keeps each event the API sends,
/// and the test delivers them to the function's handler as Lambda would.
#[derive(Debug, Default)]
struct RecordingResumer {
    sent: Mutex<Vec<Value>>,
    /// Refuse every send, as an Invoke failing would.
    refuse: bool,
}

impl RecordingResumer {
    fn sent(&self) -> Vec<Value> {
        self.sent.lock().unwrap().clone()
    }
}

impl Resumer for RecordingResumer {
    fn send<'a>(&'a self, event: &'a Value) -> SendFuture<'a> {
        Box::pin(async move {
            if self.refuse {
                return Err(ResumeError::Invoke {
                    function_name: "sagaform-test-api".into(),
                    message: "ServiceUnavailable".into(),
                });
            }
            self.sent.lock().unwrap().push(event.clone());
            Ok(())
        })
    }
}

/// Long enough for the first step (3 s timeout) to start, too short for the second (5 s).
const BUDGET_FOR_ONE_STEP: Duration = Duration::from_millis(4_000);

fn budgeted_api(setup: &Setup, budget: Duration, resumer: Arc<RecordingResumer>) -> Api {
    let settings = ApiSettings {
        response_budget: budget,
        ..ApiSettings::default()
    };
    Api::orchestrator(setup.store.store(), setup.client.clone())
        .with_settings(settings)
        .with_resumer(resumer)
}

#[tokio::test]
async fn a_saga_outliving_the_response_budget_is_accepted_and_finished_by_a_resume_event() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        // The first step is slow, so the second no longer fits in the budget.
        setup
            .fake
            .faults()
            .add(FaultRule::new("inventory", "reserve", Fault::Latency { delay_ms: 500 }).times(1))
            .unwrap();
        let resumer = Arc::new(RecordingResumer::default());
        let api = budgeted_api(&setup, BUDGET_FOR_ONE_STEP, resumer.clone());

        let accepted = send(&api, post_transactions(&body(), Some("slow"))).await;
        assert_eq!(accepted.status, 202, "{backend:?}: {:#}", accepted.body);
        let id = accepted.transaction_id().to_owned();
        let url = format!("/transactions/{id}");
        assert_eq!(accepted.header("location"), Some(url.as_str()));
        assert_eq!(accepted.body["status_url"], url);
        assert_eq!(accepted.body["status"], "RUNNING", "{backend:?}");
        let sent = resumer.sent();
        assert_eq!(
            sent,
            [json!({"resume": {"transaction_id": id}})],
            "{backend:?}"
        );

        // Lambda delivers the event to the same function, which tells it from an HTTP event.
        let resumed = api
            .handle_event(event(sent[0].clone(), INVOCATION_TIME))
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e:?}"));
        assert_eq!(resumed["status"], "COMPLETED", "{backend:?}");

        let shown = send(&api, get_transaction(&id)).await;
        assert_eq!(shown.body["status"], "COMPLETED", "{backend:?}");
        let ledger = setup.fake.ledger().transaction(&id);
        for (service, action) in [
            ("inventory", "reserve"),
            ("payments", "charge"),
            ("entitlements", "grant"),
        ] {
            let service_ledger = ledger.service(service);
            assert_eq!(
                service_ledger.calls[action], 1,
                "{backend:?}: {service} called once"
            );
            assert_eq!(service_ledger.actions_applied, [action], "{backend:?}");
        }
        // A second delivery of the same event finds the saga finished and changes nothing.
        let again = api
            .handle_event(event(sent[0].clone(), INVOCATION_TIME))
            .await
            .unwrap();
        assert_eq!(again["status"], "COMPLETED");
        assert_eq!(
            setup.fake.ledger().transaction(&id).total_calls(),
            3,
            "{backend:?}"
        );

        // The client's retry with the same key gets the saga's final answer.
        let replayed = send(&api, post_transactions(&body(), Some("slow"))).await;
        assert_eq!(
            (replayed.status, replayed.transaction_id()),
            (200, id.as_str()),
            "{backend:?}: {:#}",
            replayed.body
        );
        assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
        assert_eq!(setup.store.all_sagas().await.len(), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn a_resume_event_for_an_unknown_saga_fails_permanently() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        let unknown = uuid::Uuid::now_v7().to_string();
        let failure = setup
            .api
            .handle_event(event(
                json!({"resume": {"transaction_id": unknown}}),
                INVOCATION_TIME,
            ))
            .await
            .unwrap_err();
        assert_eq!(failure.error_type, "Permanent", "{backend:?}: {failure:?}");
        assert!(failure.error_message.contains(&unknown), "{failure:?}");
        let malformed = setup
            .api
            .handle_event(event(json!({"resume": {}}), INVOCATION_TIME))
            .await
            .unwrap_err();
        assert_eq!(malformed.error_type, "Permanent");
        assert!(setup.store.all_sagas().await.is_empty(), "{backend:?}");
    }
}

#[tokio::test]
async fn a_fast_saga_is_answered_in_the_request_without_a_resume() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        let resumer = Arc::new(RecordingResumer::default());
        let api = budgeted_api(&setup, BUDGET_FOR_ONE_STEP * 5, resumer.clone());
        let http_event = serde_json::to_value(post_transactions(&body(), None)).unwrap();
        let response = api
            .handle_event(event(http_event, INVOCATION_TIME))
            .await
            .unwrap();
        assert_eq!(response["statusCode"], 200, "{backend:?}: {response:#}");
        let answer: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert_eq!(answer["status"], "COMPLETED", "{backend:?}");
        assert!(resumer.sent().is_empty(), "{backend:?}");
    }
}

#[tokio::test]
async fn a_failed_self_invoke_falls_back_to_503_and_the_retry_resumes() {
    for backend in Backend::ALL {
        let setup = setup(backend).await;
        let resumer = Arc::new(RecordingResumer {
            refuse: true,
            ..RecordingResumer::default()
        });
        // Below every step's timeout: the saga is recorded and no step starts.
        let api = budgeted_api(&setup, Duration::from_millis(300), resumer);
        let first = send_with(
            &api,
            post_transactions(&body(), Some("no-invoke")),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(first.status, 503, "{backend:?}: {:#}", first.body);
        assert_eq!(first.header("retry-after"), Some("1"));
        assert_eq!(first.body["status"], "PENDING");
        let id = first.transaction_id().to_owned();

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let resumed = post(&setup, Some("no-invoke")).await;
        assert_eq!(
            (resumed.status, resumed.transaction_id()),
            (200, id.as_str()),
            "{backend:?}: {:#}",
            resumed.body
        );
    }
}
