//! What happens to a recorded saga, per pattern: run in the request (orchestrator), a message on
//! the queue (sqs), or a Step Functions execution (stepfunctions).
//!
//! Handing over is idempotent, so a replayed request may hand the same saga over again when its
//! first attempt may not have done it: the queue message is deduplicated by the worker's
//! per-transaction idempotency (and by SQS itself on a FIFO queue), the execution by its name.

use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::MessageAttributeValue;
use sagaform_contract::Pattern;
use sagaform_contract::message::{TRANSACTION_ID_ATTRIBUTE, WorkMessage};
use sagaform_runtime::{ConfiguredStore, Engine, SagaRecord};
use sagaform_saas_client::SaasClient;
use tracing::info;

/// A saga could not be handed over; it stays PENDING (and is listed as stuck) until a retry
/// with the same `Idempotency-Key` hands it over again.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// SendMessage failed.
    #[error("cannot enqueue saga {transaction_id} on {queue_url}: {message}")]
    Queue {
        /// The saga.
        transaction_id: String,
        /// The queue.
        queue_url: String,
        /// What SQS reported.
        message: String,
    },
    /// StartExecution failed.
    #[error("cannot start execution {transaction_id} of {state_machine_arn}: {message}")]
    StateMachine {
        /// The saga (and execution name).
        transaction_id: String,
        /// The state machine.
        state_machine_arn: String,
        /// What Step Functions reported.
        message: String,
    },
}

/// Where the API hands a recorded saga.
#[derive(Debug, Clone)]
pub enum Dispatch {
    /// Orchestrator: the API runs the saga itself.
    InRequest(Engine<ConfiguredStore, SaasClient>),
    /// Sqs: a message per saga.
    Queue {
        /// SQS client.
        client: aws_sdk_sqs::Client,
        /// `SAGAFORM_QUEUE_URL`; a URL ending in `.fifo` gets group and deduplication ids.
        queue_url: String,
    },
    /// Stepfunctions: an execution per saga, named by its `transaction_id`.
    StateMachine {
        /// Step Functions client.
        client: aws_sdk_sfn::Client,
        /// `SAGAFORM_STATE_MACHINE_ARN`.
        state_machine_arn: String,
    },
}

impl Dispatch {
    /// The pattern this dispatch implements.
    pub fn pattern(&self) -> Pattern {
        match self {
            Self::InRequest(_) => Pattern::Orchestrator,
            Self::Queue { .. } => Pattern::Sqs,
            Self::StateMachine { .. } => Pattern::StepFunctions,
        }
    }

    /// What the saga is handed to, in words: `work queue`, `state machine`, or `API itself`.
    pub fn target(&self) -> &'static str {
        match self {
            Self::InRequest(_) => "API itself",
            Self::Queue { .. } => "work queue",
            Self::StateMachine { .. } => "state machine",
        }
    }

    /// Hands `record` to the queue or the state machine; nothing to do for the orchestrator.
    pub async fn hand_over(&self, record: &SagaRecord) -> Result<(), DispatchError> {
        let transaction_id = record.transaction_id.as_str();
        // The message body and the execution input are the same work message.
        let input = WorkMessage::new(transaction_id, record.request.clone()).to_body();
        match self {
            Self::InRequest(_) => Ok(()),
            Self::Queue { client, queue_url } => {
                enqueue(client, queue_url, transaction_id, input).await
            }
            Self::StateMachine {
                client,
                state_machine_arn,
            } => start_execution(client, state_machine_arn, transaction_id, input).await,
        }
    }
}

/// Sends the saga's work message to the queue, with its `transaction_id` as a message
/// attribute; on a FIFO queue also with a group and a deduplication id.
async fn enqueue(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    transaction_id: &str,
    input: String,
) -> Result<(), DispatchError> {
    let queue_error = |message: String| DispatchError::Queue {
        transaction_id: transaction_id.to_owned(),
        queue_url: queue_url.to_owned(),
        message,
    };
    let attribute = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(transaction_id)
        .build()
        .map_err(|e| queue_error(e.to_string()))?;
    let mut send = client
        .send_message()
        .queue_url(queue_url)
        .message_body(input)
        .message_attributes(TRANSACTION_ID_ATTRIBUTE, attribute);
    if queue_url.ends_with(".fifo") {
        // One group per saga keeps sagas independent; the deduplication id drops a
        // re-sent message within SQS's five-minute window.
        send = send
            .message_group_id(transaction_id)
            .message_deduplication_id(transaction_id);
    }
    let sent = send
        .send()
        .await
        .map_err(|e| queue_error(DisplayErrorContext(&e).to_string()))?;
    info!(
        message_id = sent.message_id().unwrap_or_default(),
        "saga enqueued"
    );
    Ok(())
}

/// Starts the saga's execution, named by its `transaction_id`; an execution of that name that
/// already exists counts as started.
async fn start_execution(
    client: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    transaction_id: &str,
    input: String,
) -> Result<(), DispatchError> {
    let started = client
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(transaction_id)
        .input(input)
        .send()
        .await;
    match started {
        Ok(output) => {
            info!(execution_arn = output.execution_arn(), "execution started");
            Ok(())
        }
        // The name is the transaction id and the input is derived from the stored
        // saga, so an existing execution of that name is this saga's: the work of a
        // first attempt whose answer was lost.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_already_exists()) =>
        {
            info!("execution already started by an earlier attempt");
            Ok(())
        }
        Err(e) => Err(DispatchError::StateMachine {
            transaction_id: transaction_id.to_owned(),
            state_machine_arn: state_machine_arn.to_owned(),
            message: match e.code() {
                Some(code) => format!("{code}: {}", DisplayErrorContext(&e)),
                None => DisplayErrorContext(&e).to_string(),
            },
        }),
    }
}
