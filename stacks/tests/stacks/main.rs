//! The synthesis tests, one binary with a module per area.
//!
//! Cargo builds every file directly under `tests/` as a binary of its own, each linking the
//! whole dependency graph again; one binary per crate is linked once and starts its servers once.

mod common;

mod alarms;
mod api;
mod asl;
mod aurora;
mod cfn_lint;
mod checkov;
mod config;
mod functions;
mod golden;
mod iam;
mod model;
mod orchestrator;
mod policy;
mod queues;
mod runbooks;
mod stacks;
mod state_machine;
mod stores;
mod synth;
mod synth_files;
