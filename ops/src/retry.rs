//! `saga retry`: asks the call of a saga IN_DOUBT again. The saga's in-doubt step goes back to
//! PENDING with fresh retries (the engine's [`reopen_in_doubt`]) and the saga is handed to its
//! pattern as a new one would be: the orchestrator's resume event (an asynchronous invoke of
//! the api function), a work message on the queue, or a new Step Functions execution (named
//! `<transaction id>-retry-<version>`, since the first execution's name stays taken). The call
//! is repeated with the same idempotency key, so an effect that landed late is answered, not
//! applied again; the provider's answer then takes the saga forward or into compensation, or
//! back to IN_DOUBT when it still gives none.
//!
//! Asking twice reopens once (a saga that is not IN_DOUBT is refused, with its status). When the
//! hand-over fails, the saga is put back IN_DOUBT, so it never waits RUNNING with nothing to run
//! it.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_sqs::types::MessageAttributeValue;
use sagaform_contract::message::{TRANSACTION_ID_ATTRIBUTE, WorkMessage, retry_execution_name};
use sagaform_contract::resume::resume_event;
use sagaform_contract::template::outputs;
use sagaform_deploy::ProvideMessage;
use sagaform_runtime::engine::reopen_in_doubt;
use sagaform_runtime::{EngineError, SagaRecord, SagaStatus, SagaStore, StepStatus};
use sagaform_stacks::Pattern;
use serde::Serialize;

use crate::saga::{ShowOptions, check_transaction_id, open_store};
use crate::{Deployed, OpsError};

/// What `saga retry` did.
#[derive(Debug, Clone, Serialize)]
pub struct RetryReport {
    /// The saga.
    pub transaction_id: String,
    /// The step whose call is asked again.
    pub step: String,
    /// What the saga was handed to (`api function <name>`, `work queue <url>`, `execution
    /// <arn>`).
    pub handed_to: String,
    /// The saga as reopened (RUNNING, the step PENDING).
    pub saga: SagaRecord,
}

impl RetryReport {
    /// The report as text.
    pub fn render(&self) -> String {
        format!(
            "saga {}: step {} asked again with the same idempotency key; handed to {}\nfollow it with `saga show`: it goes on when the provider answers, and comes back IN_DOUBT if it still does not\n",
            self.transaction_id, self.step, self.handed_to
        )
    }
}

/// Asks the in-doubt call of saga `transaction_id` of the deployed stack again.
pub async fn retry(
    deployed: &Deployed,
    transaction_id: &str,
    options: &ShowOptions,
) -> Result<RetryReport, OpsError> {
    check_transaction_id(transaction_id)?;
    let (store, _) = open_store(deployed, options).await?;
    let parked = store
        .get(transaction_id)
        .await?
        .ok_or_else(|| OpsError::InvalidInput(format!("saga {transaction_id}: not found")))?;
    let step = parked
        .steps
        .iter()
        .find(|s| s.status == StepStatus::InDoubt)
        .map(|s| s.name.clone());
    let (reopened, step) = match (parked.status, step) {
        (SagaStatus::InDoubt, Some(step)) => {
            let reopened = reopen_in_doubt(&store, transaction_id)
                .await
                .map_err(|e| match e {
                    EngineError::Store(e) => OpsError::Store(e),
                    other => OpsError::InvalidInput(other.to_string()),
                })?;
            (reopened, step)
        }
        (status, _) => {
            return Err(OpsError::InvalidInput(format!(
                "saga {transaction_id} is {status}: only a saga IN_DOUBT has a call to ask again{}",
                if status == SagaStatus::CompensationFailed {
                    " (a failed compensation is settled by hand, see the runbook)"
                } else {
                    ""
                }
            )));
        }
    };
    match hand_over(deployed, &reopened).await {
        Ok(handed_to) => Ok(RetryReport {
            transaction_id: transaction_id.to_owned(),
            step,
            handed_to,
            saga: reopened,
        }),
        Err(error) => {
            // Nothing will run the saga: it goes back to waiting for an operator.
            let mut back = parked;
            back.version = reopened.version;
            let restored = store.transition(&back).await;
            let state = match restored {
                Ok(_) => "it is IN_DOUBT again".to_owned(),
                Err(e) => format!(
                    "putting it back IN_DOUBT failed too ({e}); it is RUNNING with nothing to run it"
                ),
            };
            Err(OpsError::InvalidInput(format!(
                "saga {transaction_id}: reopened but not handed over: {error}; {state}"
            )))
        }
    }
}

/// Hands the reopened saga to its pattern; says to what.
async fn hand_over(deployed: &Deployed, saga: &SagaRecord) -> Result<String, OpsError> {
    let transaction_id = saga.transaction_id.as_str();
    match deployed.pattern {
        Pattern::Orchestrator => {
            let function = deployed.function_name("api");
            let answer = aws_sdk_lambda::Client::new(&deployed.aws)
                .invoke()
                .function_name(&function)
                .invocation_type(InvocationType::Event)
                .payload(Blob::new(resume_event(transaction_id).to_string()))
                .send()
                .await
                .map_err(|e| OpsError::Aws {
                    operation: "Lambda.Invoke",
                    message: e.readable_message(),
                })?;
            if answer.status_code != 202 {
                return Err(OpsError::Aws {
                    operation: "Lambda.Invoke",
                    message: format!("status {} instead of 202 Accepted", answer.status_code),
                });
            }
            Ok(format!("api function {function} (resume event)"))
        }
        Pattern::Sqs => {
            let queue_url = deployed.output(outputs::WORK_QUEUE_URL, "saga retry")?;
            let body = WorkMessage::new(transaction_id, saga.request.clone()).to_body();
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(transaction_id)
                .build()
                .map_err(|e| OpsError::InvalidInput(e.to_string()))?;
            let mut send = aws_sdk_sqs::Client::new(&deployed.aws)
                .send_message()
                .queue_url(queue_url)
                .message_body(body)
                .message_attributes(TRANSACTION_ID_ATTRIBUTE, attribute);
            if queue_url.ends_with(".fifo") {
                // The first message's deduplication id is the transaction id; this one must
                // not be dropped as its duplicate.
                send = send
                    .message_group_id(transaction_id)
                    .message_deduplication_id(retry_execution_name(transaction_id, saga.version));
            }
            send.send().await.map_err(|e| OpsError::Aws {
                operation: "SQS.SendMessage",
                message: e.readable_message(),
            })?;
            Ok(format!("work queue {queue_url}"))
        }
        Pattern::StepFunctions => {
            let state_machine_arn = deployed.output(outputs::STATE_MACHINE_ARN, "saga retry")?;
            let input = WorkMessage::new(transaction_id, saga.request.clone()).to_body();
            let started = aws_sdk_sfn::Client::new(&deployed.aws)
                .start_execution()
                .state_machine_arn(state_machine_arn)
                .name(retry_execution_name(transaction_id, saga.version))
                .input(input)
                .send()
                .await
                .map_err(|e| OpsError::Aws {
                    operation: "StepFunctions.StartExecution",
                    message: e.readable_message(),
                })?;
            Ok(format!("execution {}", started.execution_arn()))
        }
    }
}
