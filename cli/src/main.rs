//! `sagaform`, the binary behind `cargo xtask`: the command line of sagaform. This file only
//! dispatches; every command lives in its own module and the logic in library crates. `synth`
//! and `tools` are the `xtask` crate's (which runs them without this binary, see its docs).

mod bench;
mod bench_deploy;
mod bench_loop;
mod bench_soak;
mod build;
mod deploy;
mod destroy;
mod diff;
mod dlq;
mod local;
mod saga;
mod stack_args;
mod watch;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sagaform: one typed saga definition, three AWS patterns, per-environment CloudFormation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write templates/<pattern>/<env>.yaml and their runbooks from env/ and the saga definition.
    Synth(xtask::synth::Args),
    /// Build the Lambda functions (cargo-lambda for AWS envs, a host build for local) into zips.
    Build(build::Args),
    /// Deploy a pattern to an env: build, upload, change set, approval, execute, outputs.
    #[command(after_help = deploy::EXIT_CODES)]
    Deploy(deploy::Args),
    /// Show what a deploy would change: template diff and change set; or, with --base, review the
    /// working tree's templates and runbooks against a git ref offline, security changes first.
    #[command(after_help = deploy::EXIT_CODES)]
    Diff(diff::Args),
    /// Delete a pattern's stack in an env (data kept by Retain policies survives).
    #[command(after_help = deploy::EXIT_CODES)]
    Destroy(destroy::Args),
    /// Start, stop or inspect the local emulator behind `--env local`.
    Local(local::Args),
    /// Show one saga of a deployed stack: state, steps, logs, execution history.
    Saga(saga::Args),
    /// List, redrive or purge the dead-letter queue of a deployed stack.
    Dlq(dlq::Args),
    /// Measure and print how long things take (no pass/fail).
    Bench(bench::Args),
    /// Install the pinned tools (moto, cfn-lint, cargo-lambda, actionlint; checkov in a venv of its own) into .tools now.
    Tools(xtask::tools::Args),
    /// Keep a pattern's local stack on the working tree: rebuild and redeploy on every change.
    Watch(watch::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every command but `diff` succeeds with exit code 0; `diff --base` may end with 4.
    let result = match cli.command {
        Command::Synth(args) => xtask::synth::run(args).map(|()| 0),
        Command::Build(args) => build::run(args).map(|()| 0),
        Command::Deploy(args) => deploy::run(args).map(|()| 0),
        Command::Diff(args) => diff::run(args),
        Command::Destroy(args) => destroy::run(args).map(|()| 0),
        Command::Local(args) => local::run(args).map(|()| 0),
        Command::Saga(args) => saga::run(args).map(|()| 0),
        Command::Dlq(args) => dlq::run(args).map(|()| 0),
        Command::Bench(args) => bench::run(args).map(|()| 0),
        Command::Tools(args) => xtask::tools::run(args).map(|()| 0),
        Command::Watch(args) => watch::run(args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(dlq::exit_code(&error).unwrap_or_else(|| deploy::exit_code(&error)))
        }
    }
}
