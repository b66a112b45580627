//! `cargo xtask`: runs `synth` and `tools` itself and hands every other command (and `--help`)
//! to `sagaform-cli` through `cargo run`, so that the synthesis path compiles and checks only
//! the synthesis crates, while deploy, diff, destroy and the rest bring the AWS SDK.

use std::ffi::OsString;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

/// The commands this binary runs itself.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Quick {
    #[command(subcommand)]
    command: QuickCommand,
}

#[derive(Debug, Subcommand)]
enum QuickCommand {
    /// Write templates/<pattern>/<env>.yaml and their runbooks from env/ and the saga definition.
    Synth(xtask::synth::Args),
    /// Install the pinned tools (moto, cfn-lint, cargo-lambda) into .tools/venv now.
    Tools(xtask::tools::Args),
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let quick = matches!(
        args.first().and_then(|a| a.to_str()),
        Some("synth" | "tools")
    );
    if !quick {
        return run_cli(&args);
    }
    let result = match Quick::parse().command {
        QuickCommand::Synth(args) => xtask::synth::run(args),
        QuickCommand::Tools(args) => xtask::tools::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `sagaform-cli` with `args` and exits as it did.
fn run_cli(args: &[OsString]) -> ExitCode {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["run", "--quiet", "--package", "sagaform-cli", "--"])
        .args(args)
        .status();
    match status {
        Ok(status) => status
            .code()
            .and_then(|code| u8::try_from(code).ok())
            .map_or(ExitCode::FAILURE, ExitCode::from),
        Err(error) => {
            eprintln!("error: cannot run cargo for sagaform-cli: {error}");
            ExitCode::FAILURE
        }
    }
}
