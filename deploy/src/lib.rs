//! sagaform's deployment library: every AWS call of the tooling lives here, behind the
//! `cargo xtask build | deploy | diff | destroy | local` commands.
//!
//! - [`build`]: cargo-lambda builds, the Amazon Linux 2023 check ([`elf`]) and deterministic
//!   zips ([`artifact`]).
//! - [`bootstrap`]: the per-env artifact bucket and content-addressed uploads.
//! - [`deploy`], [`change_preview`], [`destroy`]: the stack lifecycle, on [`stack`] (states,
//!   change sets, events) and [`template`] / [`template_diff`] (templates read and compared).
//! - [`workflow`]: the `deploy` and `destroy` commands as one call each (packages, connection,
//!   the stack operation, and for `--env local` the local environment through the
//!   [`workflow::LocalRuntime`] trait, which `sagaform-local` implements: this crate never
//!   starts a local process or talks to PostgreSQL).
//! - [`review`]: the offline review of `diff --base REF` (working tree against a git ref, no
//!   AWS), with [`security`] (the changes that make a stack less safe) and [`line_diff`]
//!   (runbooks and multi-line strings compared line by line).
//! - [`hotswap`]: `deploy --hotswap`, the functions' code updated directly when nothing else
//!   changed (outside production), falling back to the change set otherwise.
//! - [`preflight`]: what a deploy refuses before its change set (placeholder values in
//!   production, reserved concurrency the account cannot give).
//! - [`session`]: connecting to AWS or the emulator with the account check.
//! - [`progress`], [`confirm`], [`lock`]: output that degrades without a terminal, approvals
//!   that never hang, one operation per stack per machine.
//!
//! Function packages are an input ([`Artifact`]), so the lifecycle runs (and is tested) without
//! compiling the functions.

pub mod artifact;
pub mod bootstrap;
pub mod build;
pub mod change_preview;
pub mod changeset;
pub mod confirm;
pub mod deploy;
pub mod destroy;
pub mod elf;
mod error;
pub mod host_build;
pub mod hotswap;
pub mod line_diff;
pub mod lock;
pub mod preflight;
pub mod progress;
pub mod review;
pub mod security;
pub mod session;
pub mod stack;
pub mod template;
pub mod template_diff;
pub mod workflow;
mod workspace;

pub use artifact::Artifact;
pub use error::{
    DeployError, EXIT_ERROR, EXIT_OK, EXIT_REFUSED, EXIT_SECURITY_CHANGES, EXIT_USAGE,
    ProvideMessage, Refusal,
};
pub use progress::Progress;
pub use session::{ConnectOptions, Session};
pub use workspace::{PatternEnv, Workspace, stack_name};
