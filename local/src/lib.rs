//! Local compute for sagaform's emulated environment.
//!
//! moto emulates CloudFormation, DynamoDB, SQS, S3, Step Functions and the Lambda API, but it
//! never runs Lambda code (no Docker) and ignores API Gateway v2. This crate provides the rest,
//! with the real function binaries:
//!
//! - [`runtime`]: a Lambda Runtime API that runs each function's `bootstrap` as local processes
//!   (one invocation per process at a time, more processes up to the concurrency cap, the
//!   function timeout enforced by killing the process), with logs in `<function>.log`;
//! - [`invoke_api`]: Lambda's Invoke API for those functions, which the sagaform moto launcher
//!   forwards every Lambda invoke to, Step Functions Tasks included ([`moto_forward`]);
//! - [`http_api`]: the stack's HTTP API routes on a loopback port, payload format 2.0;
//! - [`event_source`]: SQS event source mappings polled with their settings and partial batch
//!   failures;
//! - [`supervisor`]: all of the above for one deployed stack ([`discovery`] reads it from the
//!   emulator), with a state file ([`state`]) for status and stop by PID, and [`logs`] to read
//!   the function logs back filtered by transaction id.
//!
//! The `sagaform-local` binary runs [`supervisor::run`] and offers `status`, `logs` and `stop`.
//!
//! Around it, the local environment of a checkout as one type, [`LocalEnv`] ([`env`]): the
//! emulator ([`emulator`]), the fake SaaS server and the detached supervisors ([`services`]),
//! and the local PostgreSQL databases ([`database`]), brought up, reported on and stopped for
//! `cargo xtask`, the deploy workflow (through its `LocalRuntime` trait) and the e2e harness.

pub mod async_invoke;
pub mod database;
pub mod discovery;
pub mod emulator;
pub mod env;
mod error;
pub mod event_source;
pub mod http_api;
pub mod invoke_api;
pub mod logs;
mod loopback;
pub mod moto_forward;
pub mod runtime;
pub mod services;
pub mod state;
pub mod supervisor;
pub mod zip;

pub use async_invoke::AsyncInvokeConfig;
pub use database::LocalDatabase;
pub use env::{LocalEnv, LocalStatus, Stopped};
pub use error::LocalError;
pub use invoke_api::{Functions, InvokeApi};
pub use runtime::{FunctionError, FunctionSpec, InvokeOutcome, LocalFunction, RuntimeSettings};
pub use state::LocalState;
pub use supervisor::{LocalEnvironment, UpOptions, run};
