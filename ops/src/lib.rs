//! Operations on a deployed sagaform stack, in any env (the local emulator included): what the
//! runbooks' `cargo xtask saga show` and `cargo xtask dlq list | redrive | purge` run.
//!
//! - [`deployed`]: reaching a stack — the env's AWS or the emulator after the account check,
//!   its outputs and parameters, clients bound to the same endpoint;
//! - [`saga`]: one saga's state, steps, log pointers and Step Functions execution history;
//! - [`retry`]: asks the call of a saga IN_DOUBT again, through its pattern;
//! - [`dlq`]: the dead-letter queues — list without consuming, redrive without ever losing a
//!   message, purge behind a confirmation.
//!
//! Every report is `Serialize` (the commands' `--json`) and has a text rendering.

pub mod deployed;
pub mod dlq;
mod error;
pub mod retry;
pub mod saga;
pub mod time;

pub use deployed::{Deployed, OpenOptions};
pub use dlq::{DeadLetterQueue, Dlq, Redrive, RedriveOptions};
pub use error::{EXIT_REFUSED, OpsError, OpsRefusal};
pub use saga::{SagaReport, ShowOptions};
