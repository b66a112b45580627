//! The saga runtime: everything the Lambda functions of the three patterns do besides decoding
//! their events, so the binaries stay thin.
//!
//! - [`model`]: the saga record (statuses, steps, timestamps, UUIDv7 ids);
//! - [`store`]: the state and idempotency stores, DynamoDB and PostgreSQL (Aurora), chosen from
//!   the environment;
//! - [`engine`]: runs [`sagaform_saga::PURCHASE`] (or any saga) crash-safely, with compensation;
//! - [`idempotency`]: Powertools-style idempotent operations;
//! - [`errors`]: the errors and their Retryable / Permanent classification, mapped onto Lambda
//!   error types;
//! - [`telemetry`]: JSON logs where every line carries the `transaction_id`;
//! - [`deadline`]: the invocation's wall-clock deadline on the monotonic clock;
//! - [`setup`]: the store and SaaS client a function opens once per instance.

pub mod deadline;
pub mod engine;
pub mod errors;
pub mod idempotency;
pub mod model;
pub mod setup;
pub mod store;
pub mod telemetry;

pub use engine::{Engine, StepCaller};
pub use errors::{EngineError, ErrorClass, IdempotencyError, StoreError};
pub use model::{SagaRecord, SagaStatus, StepRecord, StepStatus};
pub use store::{ConfiguredStore, IdempotencyStore, SagaStore, StoreConfig};
