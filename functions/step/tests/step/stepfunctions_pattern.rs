//! The stepfunctions pattern end to end through its handlers, on both stores: the API records
//! the saga PENDING and starts an execution named by its `transaction_id` on moto; the execution
//! is then run by the test's driver of the generated definition, which invokes the real `step`
//! handler per Task with the generated Retry and Catch; the fake SaaS's ledger proves what took
//! effect downstream.
//!
//! The scenarios every pattern shares are the acceptance suite of `sagaform-testkit`, run here
//! through [`StepFunctionsPattern`]; below it, what only this pattern shows: replays and Tasks
//! run again by Step Functions.

use crate::common;

use common::{Ending, Execution, StepFunctionsPattern};
use sagaform_api::Api;
use sagaform_contract::message::{WorkMessage, retry_execution_name};
use sagaform_runtime::engine::reopen_in_doubt;
use sagaform_testkit::acceptance::{ApiGatewayV2httpRequest, Course, Kill, PatternDriver};
use sagaform_testkit::{
    Backend, acceptance_suite, driver_fields_and_call, post_transactions, purchase,
};
use serde_json::json;

/// The Task states of the purchase saga's actions, in order.
const EXECUTE_STATES: [&str; 3] = ["Execute stock", "Execute payment", "Execute entitlement"];

/// An execution of one saga, run to its end.
#[derive(Debug)]
pub struct ExecutionRun {
    execution: Execution,
}

impl PatternDriver for StepFunctionsPattern {
    type Api = Api;
    type Run = ExecutionRun;
    const HANDS_OVER: bool = true;
    const COUNTS_ATTEMPTS: bool = false;

    driver_fields_and_call!(invocation_time: common::INVOCATION_TIME);

    async fn start(backend: Backend) -> StepFunctionsPattern {
        StepFunctionsPattern::new(backend).await
    }

    async fn another_api(&self) -> Api {
        StepFunctionsPattern::another_api(self).await
    }

    async fn waiting_handovers(&self) -> usize {
        self.executions_not_run().await
    }

    /// Runs the execution named by the saga, after checking it was started with the saga's id
    /// and request as its input.
    async fn finish(&self, transaction_id: &str) -> ExecutionRun {
        let saga = self.store.saga(transaction_id).await;
        let input = self
            .executions()
            .await
            .into_iter()
            .find_map(|(name, input)| (name == transaction_id).then_some(input));
        assert_eq!(
            input,
            Some(json!({"transaction_id": transaction_id, "request": saga.request}))
        );
        ExecutionRun {
            execution: self.run_execution(transaction_id).await,
        }
    }

    /// One execution per saga; a Task attempt per call that failed transiently, on top of
    /// each step's Tasks; the ending and the states the generated definition goes through.
    async fn check_run(&self, run: &ExecutionRun, course: Course) {
        let execution = &run.execution;
        let sagas = self.store.all_sagas().await.len();
        assert_eq!(
            self.executions().await.len(),
            sagas,
            "one execution per saga"
        );
        let failed = |error: &str| matches!(&execution.ending, Ending::Failed { error: e, .. } if e == error);
        match course {
            Course::Completed { failed_calls } => {
                assert_eq!(execution.ending, Ending::Succeeded, "{execution:?}");
                assert_eq!(execution.tasks(), EXECUTE_STATES);
                assert_eq!(execution.attempts.len(), 3 + failed_calls, "{execution:?}");
                assert_eq!(
                    execution.data["results"]["entitlement"]["Payload"]["saga_status"],
                    "COMPLETED"
                );
            }
            Course::Compensated { failed_calls } => {
                // A compensated saga is not a failed execution (the failed-executions alarm
                // is for sagas that need a human).
                assert_eq!(execution.ending, Ending::Succeeded, "{execution:?}");
                assert_eq!(execution.end_state, "Compensated", "{execution:?}");
                let compensations = [
                    "Compensate entitlement",
                    "Compensate payment",
                    "Compensate stock",
                ];
                assert_eq!(
                    execution.tasks(),
                    [
                        &EXECUTE_STATES[..],
                        &["Give up entitlement"],
                        &compensations[..]
                    ]
                    .concat(),
                    "a permanent error is not retried, and giving up decides it failed"
                );
                assert_eq!(execution.attempts.len(), 7 + failed_calls, "{execution:?}");
                assert_eq!(execution.data["error"]["Error"], "Permanent");
            }
            Course::InDoubt => {
                assert!(failed("SagaInDoubt"), "{execution:?}");
                assert_eq!(
                    execution.tasks(),
                    ["Execute stock", "Execute payment", "Give up payment"],
                    "nothing compensated"
                );
                assert_eq!(execution.data["error"]["Error"], "InDoubt");
                assert_eq!(
                    execution.data["given_up"]["Payload"]["saga_status"],
                    "IN_DOUBT"
                );
            }
            Course::CompensationFailed => {
                assert!(failed("CompensationFailed"), "{execution:?}");
                // The refund failed for good and was marked; the stock was still released.
                assert_eq!(
                    execution.tasks()[execution.tasks().len() - 2..],
                    ["Mark payment compensation failed", "Compensate stock"]
                );
                assert!(
                    execution.data["compensation_failures"]["payment"].is_object(),
                    "{execution:?}"
                );
                // The refund's failure is in the execution's data, as the Catch put it; the
                // scenario checks what it says on the saga.
                let cause = execution.data["error"]["Cause"].as_str().unwrap();
                assert!(cause.contains("refund"), "{cause}");
            }
        }
    }

    /// The operator's retry starts a new execution named for the retry, as `saga retry` does,
    /// which finds the first step done and asks the charge again.
    async fn retry(&self, transaction_id: &str) {
        let saga = reopen_in_doubt(self.store.store(), transaction_id)
            .await
            .expect("reopen the saga in doubt");
        let name = retry_execution_name(transaction_id, saga.version);
        sagaform_testkit::sfn_client()
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&name)
            .input(WorkMessage::new(transaction_id, saga.request).to_body())
            .send()
            .await
            .expect("start the retry's execution");
        let execution = self.run_execution(&name).await;
        assert_eq!(execution.ending, Ending::Succeeded, "{execution:?}");
    }

    /// The API hands the saga over; the execution's first Task invocation that reaches `kill`
    /// dies, and the Task's retry of the Lambda error finishes the saga.
    async fn run_killed(&self, request: ApiGatewayV2httpRequest, kill: Kill) -> String {
        let answer = self.call(&self.api, request).await;
        assert_eq!(answer.status, 202, "{:#}", answer.body);
        let id = answer.transaction_id().to_owned();
        let execution = self.run_killed_execution(&id, Some(kill)).await;
        assert_eq!(execution.ending, Ending::Succeeded, "{execution:?}");
        id
    }
}

acceptance_suite!(StepFunctionsPattern);

fn body() -> String {
    purchase().to_string()
}

async fn start(pattern: &StepFunctionsPattern) -> String {
    let (status, accepted, _) = pattern.call_api(post_transactions(&body(), None)).await;
    assert_eq!(status, 202, "{accepted:#}");
    accepted["transaction_id"].as_str().unwrap().to_owned()
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
