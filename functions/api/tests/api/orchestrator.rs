//! The orchestrator pattern through its handler: the API runs the saga in the request, against
//! both stores and the fake SaaS with injected faults; the ledger of the fake proves what took
//! effect downstream.
//!
//! The scenarios every pattern shares are the acceptance suite of `sagaform-testkit`, run here
//! through [`Orchestrator`]; below it, what only the orchestrator does: answering within the
//! invocation's deadline and the response budget, and finishing a saga by a resume event.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{INVOCATION_TIME, Reply, send, send_with};
use sagaform_api::resume::{SendFuture, resume_event};
use sagaform_api::{Api, ApiSettings, ResumeError, Resumer};
use sagaform_contract::log;
use sagaform_fake_saas::{FakeSaas, Fault, FaultRule};
use sagaform_runtime::engine::reopen_in_doubt;
use sagaform_saas_client::SaasClient;
use sagaform_testkit::acceptance::{
    ApiGatewayV2httpRequest, Course, KILLED_INVOCATION, Kill, PatternDriver, until_called,
};
use sagaform_testkit::logs::LogCapture;
use sagaform_testkit::{
    Backend, TestStore, acceptance_suite, driver_fields_and_call, event, fake_saas,
    get_transaction, post_transactions, purchase,
};
use serde_json::{Value, json};

/// The orchestrator pattern: one API function that runs the saga in the request.
struct Orchestrator {
    store: TestStore,
    fake: FakeSaas,
    client: SaasClient,
    api: Api,
}

impl PatternDriver for Orchestrator {
    type Api = Api;
    /// Nothing runs after the API has answered.
    type Run = ();
    const HANDS_OVER: bool = false;
    const COUNTS_ATTEMPTS: bool = true;

    driver_fields_and_call!(invocation_time: INVOCATION_TIME);

    async fn start(backend: Backend) -> Orchestrator {
        let store = TestStore::new(backend).await;
        let (fake, client) = fake_saas().await;
        let api = Api::orchestrator(store.store().clone(), client.clone());
        Orchestrator {
            store,
            fake,
            client,
            api,
        }
    }

    async fn another_api(&self) -> Api {
        Api::orchestrator(self.store.second_handle().await, self.client.clone())
    }

    async fn waiting_handovers(&self) -> usize {
        0
    }

    /// The API ran the saga in the request.
    async fn finish(&self, _transaction_id: &str) {}

    async fn check_run(&self, _run: &(), _course: Course) {}

    /// The answer is the finished saga: its status and, for a failed one, the error code.
    fn check_answer(&self, answer: &Reply, course: Course) {
        let expected = match course {
            Course::Completed { .. } => (200, "COMPLETED", None),
            Course::Compensated { .. } => (422, "COMPENSATED", Some("saga_compensated")),
            Course::CompensationFailed => {
                (500, "COMPENSATION_FAILED", Some("saga_compensation_failed"))
            }
            Course::InDoubt => (202, "IN_DOUBT", Some("saga_in_doubt")),
        };
        let body = &answer.body;
        assert_eq!(
            (
                answer.status,
                body["status"].as_str().unwrap_or_default(),
                body["error_code"].as_str()
            ),
            expected,
            "{course:?}: {body:#}"
        );
    }

    /// The operator's retry sends the function its resume event, as `saga retry` does with an
    /// asynchronous invoke.
    async fn retry(&self, transaction_id: &str) {
        reopen_in_doubt(self.store.store(), transaction_id)
            .await
            .expect("reopen the saga in doubt");
        let resumed = self
            .api
            .handle_event(event(resume_event(transaction_id), INVOCATION_TIME))
            .await
            .expect("the resume event runs the saga");
        assert_eq!(resumed["status"], "COMPLETED", "{resumed}");
    }

    /// The API runs the saga in the request, so the request's own invocation is killed; the
    /// client's retry with the same key (after the dead invocation's deadline, until which its
    /// claim on the key holds) resumes the saga from the store and answers it.
    async fn run_killed(&self, request: ApiGatewayV2httpRequest, kill: Kill) -> String {
        match kill {
            Kill::WhileChargeInFlight => {
                tokio::select! {
                    reply = send_with(&self.api, request.clone(), KILLED_INVOCATION) => {
                        panic!("the invocation was meant to die mid-saga: {:#}", reply.body)
                    }
                    () = until_called(&self.fake, "payments", "charge") => {}
                }
                tokio::time::sleep(KILLED_INVOCATION).await;
            }
            Kill::AfterTheWork => {
                let lost = send(&self.api, request.clone()).await;
                assert_eq!(lost.status, 200, "{:#}", lost.body);
            }
        }
        let retried = send(&self.api, request).await;
        assert_eq!(
            (retried.status, retried.body["status"].as_str()),
            (200, Some("COMPLETED")),
            "{:#}",
            retried.body
        );
        retried.transaction_id().to_owned()
    }
}

acceptance_suite!(Orchestrator);

fn body() -> String {
    purchase().to_string()
}

async fn post(orchestrator: &Orchestrator, key: Option<&str>) -> Reply {
    send(&orchestrator.api, post_transactions(&body(), key)).await
}

#[tokio::test]
async fn a_request_cut_off_by_its_deadline_is_resumed_by_a_retry_with_the_same_key() {
    for backend in Backend::ALL {
        let pattern = Orchestrator::start(backend).await;
        // Too little time for any step: the saga is recorded and left PENDING.
        let first = send_with(
            &pattern.api,
            post_transactions(&body(), Some("cut-off")),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(first.status, 503, "{backend:?}: {:#}", first.body);
        assert_eq!(first.header("retry-after"), Some("1"));
        let id = first.transaction_id().to_owned();
        assert_eq!(first.body["status"], "PENDING");

        // While the first invocation may still be alive, a retry must not run the saga too.
        let early = post(&pattern, Some("cut-off")).await;
        assert_eq!(
            (early.status, early.transaction_id()),
            (409, id.as_str()),
            "{backend:?}: {:#}",
            early.body
        );

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let resumed = post(&pattern, Some("cut-off")).await;
        assert_eq!(resumed.status, 200, "{backend:?}: {:#}", resumed.body);
        assert_eq!(resumed.transaction_id(), id);
        assert_eq!(pattern.store.all_sagas().await.len(), 1, "{backend:?}");
        assert_eq!(
            pattern.fake.ledger().transaction(&id).total_calls(),
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

fn budgeted_api(pattern: &Orchestrator, budget: Duration, resumer: Arc<RecordingResumer>) -> Api {
    let settings = ApiSettings {
        response_budget: budget,
        ..ApiSettings::default()
    };
    Api::orchestrator(pattern.store.store().clone(), pattern.client.clone())
        .with_settings(settings)
        .with_resumer(resumer)
}

#[tokio::test]
async fn a_saga_outliving_the_response_budget_is_accepted_and_finished_by_a_resume_event() {
    for backend in Backend::ALL {
        let pattern = Orchestrator::start(backend).await;
        // The first step is slow, so the second no longer fits in the budget.
        pattern
            .fake
            .faults()
            .add(FaultRule::new("inventory", "reserve", Fault::Latency { delay_ms: 500 }).times(1))
            .unwrap();
        let resumer = Arc::new(RecordingResumer::default());
        let api = budgeted_api(&pattern, BUDGET_FOR_ONE_STEP, resumer.clone());

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
        let ledger = pattern.fake.ledger().transaction(&id);
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
            pattern.fake.ledger().transaction(&id).total_calls(),
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
        assert_eq!(pattern.store.all_sagas().await.len(), 1, "{backend:?}");
    }
}

// The compensation-failed alarm counts one line per saga from the api function's log group:
// a saga that the asynchronous resume finishes COMPENSATION_FAILED writes it there too, though
// no HTTP request is left to answer with a 500.
#[tokio::test(flavor = "current_thread")]
async fn a_resume_ending_compensation_failed_writes_the_line_its_alarm_counts() {
    let pattern = Orchestrator::start(Backend::Postgres).await;
    let rejected = || Fault::Reject {
        status: 422,
        reason: "refused on purpose".to_owned(),
    };
    let faults = pattern.fake.faults();
    faults
        .add(FaultRule::new("inventory", "reserve", Fault::Latency { delay_ms: 500 }).times(1))
        .unwrap();
    faults
        .add(FaultRule::new("entitlements", "grant", rejected()))
        .unwrap();
    faults
        .add(FaultRule::new("payments", "refund", rejected()))
        .unwrap();
    let resumer = Arc::new(RecordingResumer::default());
    let api = budgeted_api(&pattern, BUDGET_FOR_ONE_STEP, resumer.clone());
    let capture = LogCapture::default();
    let _subscriber = capture.install();

    let accepted = send(&api, post_transactions(&body(), Some("refused"))).await;
    assert_eq!(accepted.status, 202, "{:#}", accepted.body);
    assert!(capture.counted().is_empty(), "nothing settled yet");
    let resumed = api
        .handle_event(event(resumer.sent()[0].clone(), INVOCATION_TIME))
        .await
        .unwrap();
    assert_eq!(resumed["status"], "COMPENSATION_FAILED");

    capture.the_one_counted(log::SAGA_COMPENSATION_FAILED, accepted.transaction_id());
}

#[tokio::test]
async fn a_resume_event_for_an_unknown_saga_fails_permanently() {
    for backend in Backend::ALL {
        let pattern = Orchestrator::start(backend).await;
        let unknown = uuid::Uuid::now_v7().to_string();
        let failure = pattern
            .api
            .handle_event(event(
                json!({"resume": {"transaction_id": unknown}}),
                INVOCATION_TIME,
            ))
            .await
            .unwrap_err();
        assert_eq!(failure.error_type, "Permanent", "{backend:?}: {failure:?}");
        assert!(failure.error_message.contains(&unknown), "{failure:?}");
        let malformed = pattern
            .api
            .handle_event(event(json!({"resume": {}}), INVOCATION_TIME))
            .await
            .unwrap_err();
        assert_eq!(malformed.error_type, "Permanent");
        assert!(pattern.store.all_sagas().await.is_empty(), "{backend:?}");
    }
}

#[tokio::test]
async fn a_fast_saga_is_answered_in_the_request_without_a_resume() {
    for backend in Backend::ALL {
        let pattern = Orchestrator::start(backend).await;
        let resumer = Arc::new(RecordingResumer::default());
        let api = budgeted_api(&pattern, BUDGET_FOR_ONE_STEP * 5, resumer.clone());
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
        let pattern = Orchestrator::start(backend).await;
        let resumer = Arc::new(RecordingResumer {
            refuse: true,
            ..RecordingResumer::default()
        });
        // Below every step's timeout: the saga is recorded and no step starts.
        let api = budgeted_api(&pattern, Duration::from_millis(300), resumer);
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
        let resumed = post(&pattern, Some("no-invoke")).await;
        assert_eq!(
            (resumed.status, resumed.transaction_id()),
            (200, id.as_str()),
            "{backend:?}: {:#}",
            resumed.body
        );
    }
}
