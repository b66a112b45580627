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
    /// Install the pinned tools (moto, cfn-lint, cargo-lambda, actionlint; checkov in a venv of its own) into .tools now.
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

/// Whether the CLI binary exists already (then cargo only checks it is fresh, quietly).
fn cli_built() -> bool {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| xtask::checkout::root().ok().map(|root| root.join("target")));
    target.is_some_and(|dir| dir.join("debug").join("sagaform").is_file())
}

/// Whether the command runs on the local env, whose emulator and fake SaaS are pinned tools.
fn uses_local_env(args: &[OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    matches!(args.first(), Some(&("watch" | "local")))
        || args.windows(2).any(|pair| pair == ["--env", "local"])
        || args.contains(&"--env=local")
}

/// Runs `sagaform-cli` with `args` and exits as it did.
fn run_cli(args: &[OsString]) -> ExitCode {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["run", "--package", "sagaform-cli"]);
    let mut install = None;
    if cli_built() {
        command.arg("--quiet");
    } else {
        // The first build is minutes of compiling: cargo's progress says where they go.
        eprintln!(
            "cargo xtask: building sagaform-cli, the commands behind cargo xtask (the first build compiles the AWS SDK: a few minutes on 2 cores)"
        );
        // A first command on the local env would install the pinned tools once the CLI is
        // built; installing them now (mostly waiting on the package index) takes that off the
        // first deploy's critical path. The CLI waits on the install lock if it gets there first.
        if uses_local_env(args) {
            install = Some(std::thread::spawn(sagaform_tools::Tools::ensure));
        }
    }
    let status = command.arg("--").args(args).status();
    // Ending the process mid-install would leave a venv without its stamp, installed again
    // next time; the CLI's build takes longer than the install, so this rarely waits.
    if let Some(Err(error)) = install.and_then(|thread| thread.join().ok()) {
        eprintln!("cargo xtask: installing the pinned tools failed: {error}");
    }
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
