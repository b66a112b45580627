//! The build and deploy integration tests, one binary with a module per area.
//!
//! Cargo builds every file directly under `tests/` as a binary of its own, each linking the
//! whole dependency graph again; one binary per crate is linked once and starts its servers once.

mod support;

mod build;
mod hotswap;
mod lifecycle;
mod preflight;
mod review;
mod shared_build;
