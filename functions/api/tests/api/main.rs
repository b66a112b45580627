//! The api function's integration tests, one binary (one link, one moto) with a module per area.
//!
//! Cargo builds every file directly under `tests/` as a binary of its own, each linking the
//! whole dependency graph again; one binary per crate is linked once and starts its servers once.

mod common;

mod callers;
mod correlation;
mod lost_writes;
mod orchestrator;
mod routes;
mod template_environment;
mod validation;
