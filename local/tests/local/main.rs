//! The local emulator's integration tests, one binary with a module per area.
//!
//! Cargo builds every file directly under `tests/` as a binary of its own, each linking the
//! whole dependency graph again; one binary per crate is linked once and starts its servers once.

mod common;

mod async_invoke;
mod http_api;
mod runtime_api;
mod sqs_event_source;
mod step_functions;
mod supervisor;
