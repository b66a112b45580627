//! `cargo xtask build`: builds the Lambda functions and writes their deterministic zips: with the
//! pinned cargo-lambda to `target/lambda/<function>/bootstrap.zip` for AWS envs, with a host
//! `cargo build` to `target/local-packages/<function>/bootstrap.zip` for the local env.

use sagaform_deploy::Progress;
use sagaform_deploy::workflow::{BuildChoice, build_packages};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::Architecture;

use crate::workspace;

/// Instruction set on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchArg {
    /// Graviton (aarch64-unknown-linux-gnu).
    Arm64,
    /// Intel/AMD (x86_64-unknown-linux-gnu).
    #[value(name = "x86_64")]
    X86_64,
}

impl From<ArchArg> for Architecture {
    fn from(arch: ArchArg) -> Architecture {
        match arch {
            ArchArg::Arm64 => Architecture::Arm64,
            ArchArg::X86_64 => Architecture::X86_64,
        }
    }
}

/// Build options shared by `build` and `deploy`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildOptions {
    /// Instruction set; default: `functions.architecture` of the env (the host's for `local`,
    /// whose functions run on this machine).
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Cargo profile of a cargo-lambda build; default: `lambda-aws`, and for the local env a
    /// host build in the dev profile.
    #[arg(long)]
    pub profile: Option<String>,
}

impl BuildOptions {
    /// The library's form of these options.
    pub fn choice(&self) -> BuildChoice {
        BuildChoice {
            architecture: self.arch.map(Architecture::from),
            profile: self.profile.clone(),
        }
    }
}

/// Arguments of `cargo xtask build`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 built, 1 build failed (or a missing Rust target: the message gives the rustup command), 2 usage."
)]
pub struct Args {
    /// Only the functions of this pattern (orchestrator, sqs, stepfunctions); default: all.
    #[arg(long)]
    pattern: Option<Pattern>,
    /// Environment whose architecture and profile apply.
    #[arg(long, default_value = "local")]
    env: String,
    #[command(flatten)]
    options: BuildOptions,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (workspace, env) = workspace::load_env(&args.env)?;
    let progress = Progress::stderr();
    let artifacts = build_packages(
        &workspace,
        &env,
        args.pattern,
        &args.options.choice(),
        &progress,
    )?;
    for artifact in &artifacts {
        println!(
            "{}  {}",
            artifact.sha256(),
            workspace
                .package_zip(artifact.function(), env.is_local())
                .display()
        );
    }
    Ok(())
}
