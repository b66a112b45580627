//! The commands `cargo xtask` runs in its own small process: `synth` (CI and every review run it,
//! so it must answer in well under a second, and cargo's freshness check of a small dependency
//! graph is what makes that possible) and `tools` (the pinned tools, installable before anything
//! heavy is compiled). Every other command lives in `sagaform-cli`, which lists these two as well.

pub mod checkout;
pub mod synth;
pub mod tools;
