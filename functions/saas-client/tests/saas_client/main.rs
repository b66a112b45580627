//! The SaaS client's integration tests against the fake SaaS, one binary with a module per area.
//!
//! Cargo builds every file directly under `tests/` as a binary of its own, each linking the
//! whole dependency graph again; one binary per crate is linked once and starts its servers once.

mod common;

mod classification;
mod logging;
mod retry;
mod soak;
