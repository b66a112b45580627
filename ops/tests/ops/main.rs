//! The operator commands' integration tests against moto, one binary with a module per area.
//!
//! Cargo builds every file directly under `tests/` as a binary of its own, each linking the
//! whole dependency graph again; one binary per crate is linked once and starts its servers once.

mod dlq;
mod redrive_window;
mod saga;
