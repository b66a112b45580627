//! The command-line tests, one binary with a module per area: what the `sagaform` binary (behind
//! `cargo xtask`) prints and exits with, run as a person or CI runs it.

mod credentials;
