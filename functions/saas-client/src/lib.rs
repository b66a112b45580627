//! The downstream client of sagaform: how every Lambda function calls the SaaS services named by
//! the saga definition ([`sagaform_saga::PURCHASE`]).
//!
//! A call is `POST {base_url}/{action}` with the JSON body
//! `{"transaction_id", "step", "action", "request"}` and the headers `X-Correlation-Id:
//! <transaction_id>` and `Idempotency-Key: {transaction_id}:{step}:{action}`, so a repeated call
//! (a Lambda re-execution, an SQS redelivery, a retry) never applies its effect twice downstream.
//!
//! Failures are classified once, here, into retryable and permanent ([`SaasError`]); every pattern
//! maps that classification onto its own retry mechanism: the orchestrator retries in process with
//! [`retry_until`], the SQS worker lets the message come back, Step Functions matches the
//! `Retryable` error type.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sagaform_saas_client::{SaasClient, StepCall};
//! use sagaform_saga::PURCHASE;
//!
//! let client = SaasClient::from_env(&PURCHASE)?; // once, at function init
//! let step = PURCHASE.step("payment").unwrap();
//! let request = serde_json::json!({"amount_minor": 499});
//! let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
//! let answer = client
//!     .call_with_retry(&StepCall::action(step, "tx-1", &request), &step.retry, deadline)
//!     .await?;
//! # Ok(()) }
//! ```

mod client;
mod config;
mod error;
mod retry;

pub use client::{SaasClient, StepCall};
pub use config::{ConfigError, SaasConfig, ServiceConfig};
pub use error::SaasError;
pub use retry::{full_jitter, retry_until};
