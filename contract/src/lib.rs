//! The contract between sagaform's processes: everything one side writes and another side reads.
//!
//! The stacks crate writes templates whose functions, parameters and outputs the deploy library,
//! the local environment and the ops commands read back; the api function hands sagas to the
//! worker and the state machine; the state machine calls the step function; the orchestrator
//! sends itself resume events, which the ops commands re-send from its dead-letter queue. Each of
//! those names and shapes is defined here once, and both sides import it, so a change is made in
//! one place and the round-trip tests of this crate prove that what one side writes the other
//! side reads. This crate's documentation is the contract document the code cites.
//!
//! | boundary | writer | reader | defined in |
//! |---|---|---|---|
//! | pattern names (`SAGAFORM_PATTERN`, CLI, file and stack names) | stacks, xtask | functions, deploy, ops | [`Pattern`] |
//! | function names and roles (`<stack>-api`, env config keys, packages) | stacks | deploy, local, ops | [`FunctionRole`] |
//! | function environment (`SAGAFORM_*`) | stacks (template), local | functions | [`env`] |
//! | work message (SQS body, Step Functions execution input) and its `transaction_id` attribute | api | worker, state machine, ops | [`message`] |
//! | orchestrator resume event | api | api, ops (`dlq redrive`) | [`resume`] |
//! | Step Functions task payload | stacks (ASL `Parameters`) | step | [`task`] |
//! | template parameters and stack outputs | stacks | deploy, ops, e2e, local | [`template`] |
//! | log lines that alarms count (`outcome`) and their metric | functions | stacks (metric filters) | [`log`] |
//! | the saga table's index of open sagas (name, key attributes, shards) | stacks (template), runtime (store) | runtime, runbooks | [`saga_table`] |
//! | custom resource request and answer, `Custom::DatabaseMigrations` properties | CloudFormation, stacks | migrate | [`custom_resource`] |
//! | Aurora application role and database secret JSON (`username`, `password`) | stacks, RDS, Secrets Manager | functions, local, migrations | [`database`] |
//! | timestamps in saga records and log lines (RFC 3339, UTC) | functions | ops, local | [`time`] |
//!
//! The crate depends on serde only, so that the synthesis path stays small.

pub mod custom_resource;
pub mod database;
pub mod env;
pub mod function;
pub mod log;
pub mod message;
pub mod pattern;
pub mod resume;
pub mod saga_table;
pub mod task;
pub mod template;
pub mod time;

pub use function::FunctionRole;
pub use pattern::{Pattern, UnknownPattern};
