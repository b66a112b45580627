//! Orchestrator: handing a saga that outlives the HTTP API's 30 s limit to a later invocation of
//! the same function (the resume event is `sagaform_contract::resume`).
//!
//! The api answers `202 Accepted` and sends itself the event `{"resume": {"transaction_id": ...}}`
//! with an asynchronous invoke; the function tells it from an API Gateway event by its top-level
//! `resume` key. The send is behind [`Resumer`] so tests can record the event and deliver it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::Value;

pub use sagaform_contract::resume::{resume_event, resumed_transaction};

/// The future of [`Resumer::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ResumeError>> + Send + 'a>>;

/// Sends a resume event to a later invocation of this function.
pub trait Resumer: fmt::Debug + Send + Sync {
    /// Queues `event` for an asynchronous invocation; `Ok` once Lambda has accepted it.
    fn send<'a>(&'a self, event: &'a Value) -> SendFuture<'a>;
}

/// The resume event could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// `AWS_LAMBDA_FUNCTION_NAME` is not set (the function is not running in Lambda).
    #[error("environment variable AWS_LAMBDA_FUNCTION_NAME: not set")]
    NoFunctionName,
    /// The asynchronous Invoke failed.
    #[error("cannot invoke {function_name} asynchronously: {message}")]
    Invoke {
        /// The function.
        function_name: String,
        /// What Lambda reported.
        message: String,
    },
}

/// An event the function cannot work on, or a resume it cannot do now.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A resume event without a string `resume.transaction_id`.
    #[error("resume event: resume.transaction_id is missing or not a string")]
    NoTransactionId,
    /// Neither a resume event nor an API Gateway HTTP API event.
    #[error("event is neither a resume event nor an API Gateway HTTP API event: {0}")]
    Unknown(serde_json::Error),
    /// The HTTP answer could not be turned into JSON.
    #[error("cannot serialize the HTTP response: {0}")]
    Response(serde_json::Error),
    /// Another invocation holds the saga's resume claim.
    #[error("saga {0} is being worked on by another invocation")]
    Busy(String),
}

/// [`Resumer`] by Lambda `Invoke` with `InvocationType: Event` on this function itself.
#[derive(Debug, Clone)]
pub struct LambdaResumer {
    client: aws_sdk_lambda::Client,
    function_name: String,
}

impl LambdaResumer {
    /// A resumer invoking `function_name` through `client`.
    pub fn new(client: aws_sdk_lambda::Client, function_name: impl Into<String>) -> LambdaResumer {
        LambdaResumer {
            client,
            function_name: function_name.into(),
        }
    }

    /// A resumer on the function this process runs in (`AWS_LAMBDA_FUNCTION_NAME`), with a
    /// client from the default chain.
    pub async fn from_env() -> Result<LambdaResumer, ResumeError> {
        let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .ok_or(ResumeError::NoFunctionName)?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(LambdaResumer::new(
            aws_sdk_lambda::Client::new(&aws),
            function_name,
        ))
    }
}

impl Resumer for LambdaResumer {
    fn send<'a>(&'a self, event: &'a Value) -> SendFuture<'a> {
        Box::pin(async move {
            self.client
                .invoke()
                .function_name(&self.function_name)
                .invocation_type(InvocationType::Event)
                .payload(Blob::new(event.to_string()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| ResumeError::Invoke {
                    function_name: self.function_name.clone(),
                    message: DisplayErrorContext(&e).to_string(),
                })
        })
    }
}
