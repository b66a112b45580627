//! sagaform's infrastructure generator: a typed CloudFormation model, the three saga pattern
//! stacks built from the shared saga definition and per-environment config, Step Functions ASL
//! generation, policy checks and runbooks. It makes no AWS calls: `xtask` turns its output into
//! files and deployments.

pub mod asl;
pub mod cfn;
pub mod config;
/// Example environments built in code. Public so the integration tests, benchmarks and other
/// crates' tests can build stacks without reading `env/`; not meant for the product itself.
pub mod fixtures;
pub mod patterns;
pub mod policy;
pub mod runbook;
pub mod synth;

pub use patterns::{SynthError, Synthesized, synthesize, synthesize_saga};
pub use policy::{PolicyViolation, check_policies};
pub use sagaform_contract::{FunctionRole, Pattern, UnknownPattern};
