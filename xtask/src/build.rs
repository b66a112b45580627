//! `cargo xtask build`: builds the Lambda functions with the pinned cargo-lambda and writes their
//! deterministic zips to `target/lambda/<function>/bootstrap.zip`.

use anyhow::Context;
use sagaform_deploy::build::{
    self, BuildRequest, LOCAL_PROFILE, RELEASE_PROFILE, architecture_name, host_architecture,
};
use sagaform_deploy::{Artifact, Progress, Workspace};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::{self, Architecture, EnvConfig, FunctionRole};
use sagaform_tools::Tools;

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
    /// Cargo profile; default: `lambda-local` for the local env, `lambda-aws` otherwise.
    #[arg(long)]
    pub profile: Option<String>,
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
    let root = workspace::root()?;
    let workspace = Workspace::new(&root);
    let env = config::load_env(&root, &args.env)?;
    let progress = Progress::stderr();
    let artifacts = build_for(&workspace, &env, args.pattern, &args.options, &progress)?;
    for artifact in &artifacts {
        println!(
            "{}  {}",
            artifact.sha256(),
            workspace.lambda_zip(artifact.function()).display()
        );
    }
    Ok(())
}

/// Builds what a pattern (or every pattern) needs in `env` and returns the packages.
pub fn build_for(
    workspace: &Workspace,
    env: &EnvConfig,
    pattern: Option<Pattern>,
    options: &BuildOptions,
    progress: &Progress,
) -> anyhow::Result<Vec<Artifact>> {
    let functions = match pattern {
        Some(pattern) => build::functions_for(workspace, pattern, &env.name)?,
        None => FunctionRole::ALL
            .iter()
            .map(|r| r.name().to_owned())
            .collect(),
    };
    let architecture = match options.arch {
        Some(arch) => arch.into(),
        None => default_architecture(env, progress),
    };
    let profile = options.profile.clone().unwrap_or_else(|| {
        if env.is_local() {
            LOCAL_PROFILE
        } else {
            RELEASE_PROFILE
        }
        .to_owned()
    });
    progress.status("build: installing pinned cargo-lambda (first run only)");
    let tools = Tools::ensure().context("installing the pinned tools")?;
    progress.clear_status();
    let request = BuildRequest {
        functions,
        architecture,
        profile,
    };
    let built = build::build_functions(workspace, &tools, &request, progress)?;
    Ok(built.into_iter().map(|b| b.artifact).collect())
}

/// The env's architecture, except for `local`, whose functions run on this machine under
/// sagaform-local and so must be built for it.
fn default_architecture(env: &EnvConfig, progress: &Progress) -> Architecture {
    let configured = env.functions.architecture;
    match host_architecture() {
        Some(host) if env.is_local() && host != configured => {
            progress.line(format!(
                "build: env {} runs its functions on this machine: building for {} (config says {})",
                env.name,
                architecture_name(host),
                architecture_name(configured)
            ));
            host
        }
        _ => configured,
    }
}

/// The packages of the last `cargo xtask build` (for `deploy --no-build` and `diff`).
pub fn last_built(workspace: &Workspace, functions: &[String]) -> anyhow::Result<Vec<Artifact>> {
    functions
        .iter()
        .map(|function| {
            let zip = workspace.lambda_zip(function);
            Artifact::from_zip_file(function, &zip).with_context(|| {
                format!(
                    "no package of {function} at {}: run `cargo xtask build` first",
                    zip.display()
                )
            })
        })
        .collect()
}
