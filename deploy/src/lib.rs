//! sagaform's deployment library: every AWS call of the tooling lives here, behind the
//! `cargo xtask build | deploy | diff | destroy | local` commands.
//!
//! - [`build`]: cargo-lambda builds, the Amazon Linux 2023 check ([`elf`]) and deterministic
//!   zips ([`artifact`]).
//! - [`bootstrap`]: the per-env artifact bucket and content-addressed uploads.
//! - [`deploy`], [`compare`], [`destroy`]: the stack lifecycle, on [`stack`] (states, change
//!   sets, events) and [`template`] / [`diff`] (templates read and compared).
//! - [`session`]: connecting to AWS or the emulator with the account check; [`local`]: the moto
//!   emulator of `--env local`; [`local_services`]: the fake SaaS and the per-pattern
//!   supervisors that run the deployed functions locally.
//! - [`progress`], [`confirm`], [`lock`]: output that degrades without a terminal, approvals
//!   that never hang, one operation per stack per machine.
//!
//! Function packages are an input ([`Artifact`]), so the lifecycle runs (and is tested) without
//! compiling the functions.

pub mod artifact;
pub mod bootstrap;
pub mod build;
pub mod changeset;
pub mod compare;
pub mod confirm;
pub mod deploy;
pub mod destroy;
pub mod diff;
pub mod elf;
mod error;
pub mod local;
pub mod local_services;
pub mod lock;
pub mod progress;
pub mod session;
pub mod stack;
pub mod template;
mod workspace;

pub use artifact::Artifact;
pub use error::{DeployError, EXIT_ERROR, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, Refusal};
pub use progress::Progress;
pub use session::{ConnectOptions, Session};
pub use workspace::{PatternEnv, Workspace, stack_name};
