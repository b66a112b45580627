//! Building the Lambda functions: one `cargo lambda build` for every function a pattern needs
//! (pinned cargo-lambda from `.tools/venv`, which also brings zig to link against an old glibc),
//! then a check that each binary runs on Amazon Linux 2023 and its deterministic zip.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use sagaform_contract::template::function_of_code_key_parameter;
use sagaform_stacks::Pattern;
use sagaform_stacks::config::Architecture;
use sagaform_tools::Tools;

use crate::elf::{self, Machine};
use crate::template::Template;
use crate::{Artifact, DeployError, Progress, Workspace};

/// Profile for real environments: small, fast-starting binaries (see the workspace Cargo.toml).
pub const RELEASE_PROFILE: &str = "lambda-aws";

/// The Rust target of a Lambda architecture.
pub fn target_triple(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Arm64 => "aarch64-unknown-linux-gnu",
        Architecture::X86_64 => "x86_64-unknown-linux-gnu",
    }
}

/// The command-line name of an architecture.
pub fn architecture_name(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Arm64 => "arm64",
        Architecture::X86_64 => "x86_64",
    }
}

/// The architecture of the machine running this code, when Lambda has it.
pub fn host_architecture() -> Option<Architecture> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Architecture::X86_64),
        "aarch64" => Some(Architecture::Arm64),
        _ => None,
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Function (binary) names: `api`, `worker`, `step`.
    pub functions: Vec<String>,
    /// Instruction set.
    pub architecture: Architecture,
    /// Cargo profile.
    pub profile: String,
}

/// A built function.
#[derive(Debug, Clone)]
pub struct BuiltFunction {
    /// Its package.
    pub artifact: Artifact,
    /// The bootstrap binary.
    pub binary: PathBuf,
    /// The zip written next to it.
    pub zip: PathBuf,
    /// What the ELF check found.
    pub report: elf::ElfReport,
}

/// The functions a pattern needs in an env: the `<Function>CodeKey` parameters of its
/// synthesized template.
pub fn functions_for(
    workspace: &Workspace,
    pattern: Pattern,
    env: &str,
) -> Result<Vec<String>, DeployError> {
    use sagaform_stacks::synth::{self, Selection};
    let selection = Selection {
        pattern: Some(pattern),
        env: Some(env.to_owned()),
    };
    let files = synth::generate(workspace.root(), &selection)
        .map_err(|e| DeployError::Config(e.to_string()))?;
    let relative = Workspace::template_relative(pattern, env);
    let file = files
        .iter()
        .find(|f| f.path == relative)
        .ok_or_else(|| DeployError::Config(format!("synth produced no {relative}")))?;
    let template = Template::parse(&relative, &file.contents)?;
    Ok(template
        .parameter_names()
        .iter()
        .filter_map(|p| function_of_code_key_parameter(p))
        .collect())
}

/// Whether the Rust target is installed (`None` when rustup is not available to ask).
pub fn target_installed(triple: &str) -> Option<bool> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|l| l.trim() == triple)
    })
}

/// Refuses an architecture whose Rust target is known to be missing, naming the command that
/// installs it (`installed` is [`target_installed`]'s answer).
pub fn check_target(
    architecture: Architecture,
    installed: Option<bool>,
) -> Result<(), DeployError> {
    if installed == Some(false) {
        return Err(DeployError::MissingTarget {
            target: target_triple(architecture).to_owned(),
            arch: architecture_name(architecture).to_owned(),
        });
    }
    Ok(())
}

/// Builds the functions in one cargo-lambda invocation and packages each.
pub fn build_functions(
    workspace: &Workspace,
    tools: &Tools,
    request: &BuildRequest,
    progress: &Progress,
) -> Result<Vec<BuiltFunction>, DeployError> {
    let triple = target_triple(request.architecture);
    check_target(request.architecture, target_installed(triple))?;
    if request.functions.is_empty() {
        return Ok(Vec::new());
    }
    progress.line(format!(
        "build: {} for {} ({triple}, profile {}) with cargo-lambda",
        request.functions.join(", "),
        architecture_name(request.architecture),
        request.profile
    ));
    let started = Instant::now();
    run_cargo_lambda(workspace, tools, request)?;
    let built = request
        .functions
        .iter()
        .map(|function| package_for_lambda(workspace, function, request.architecture, progress))
        .collect::<Result<Vec<_>, _>>()?;
    progress.line(format!(
        "build: done in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(built)
}

/// One `cargo lambda build` of every function of `request`; the compiler's output goes to the
/// terminal.
fn run_cargo_lambda(
    workspace: &Workspace,
    tools: &Tools,
    request: &BuildRequest,
) -> Result<(), DeployError> {
    let path = std::env::join_paths(
        std::iter::once(tools.bin_dir()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .map_err(|e| DeployError::Build(format!("PATH: {e}")))?;
    let mut command = Command::new(tools.bin("cargo-lambda"));
    command
        .current_dir(workspace.root())
        .env("PATH", path)
        .args([
            "lambda",
            "build",
            "--profile",
            &request.profile,
            "--target",
            target_triple(request.architecture),
        ])
        // The workspace profiles define every optimisation; cargo-lambda's own defaults would
        // override them through environment variables.
        .arg("--disable-optimizations")
        .arg("--manifest-path")
        .arg(workspace.root().join("Cargo.toml"))
        // Explicit, so a CARGO_TARGET_DIR elsewhere does not move the output.
        .arg("--lambda-dir")
        .arg(workspace.root().join("target").join("lambda"));
    for function in &request.functions {
        // By binary: the binary is named after the function (`api`), its package is
        // `sagaform-api`.
        command.args(["--bin", function]);
    }
    let status = command.stdin(Stdio::null()).status().map_err(|e| {
        DeployError::Build(format!(
            "cannot run {}: {e}",
            tools.bin("cargo-lambda").display()
        ))
    })?;
    if !status.success() {
        return Err(DeployError::Build(format!(
            "cargo lambda build failed ({status}); the compiler output is above"
        )));
    }
    Ok(())
}

/// Checks that the binary cargo-lambda built for `function` runs on Lambda (`architecture`,
/// Amazon Linux 2023's glibc) and writes its deterministic zip.
fn package_for_lambda(
    workspace: &Workspace,
    function: &str,
    architecture: Architecture,
    progress: &Progress,
) -> Result<BuiltFunction, DeployError> {
    let binary = workspace.lambda_binary(function);
    let bytes = std::fs::read(&binary).map_err(DeployError::io("read", &binary))?;
    let report = elf::inspect(&bytes).map_err(|reason| DeployError::Incompatible {
        binary: binary.clone(),
        reason,
    })?;
    let expected = match architecture {
        Architecture::Arm64 => Machine::Aarch64,
        Architecture::X86_64 => Machine::X86_64,
    };
    if report.machine != expected {
        return Err(DeployError::Incompatible {
            binary,
            reason: format!(
                "built for {:?}, expected {}",
                report.machine,
                architecture_name(architecture)
            ),
        });
    }
    if let Some(reason) = report.al2023_problem() {
        return Err(DeployError::Incompatible { binary, reason });
    }
    let artifact = Artifact::from_bootstrap(function, &bytes)?;
    let zip = workspace.package_zip(function, false);
    std::fs::write(&zip, artifact.zip()).map_err(DeployError::io("write", &zip))?;
    let glibc = if report.is_static {
        "static".to_owned()
    } else {
        format!(
            "needs {} (Amazon Linux 2023 has {})",
            report
                .max_glibc
                .map(|v| v.to_string())
                .unwrap_or_else(|| "no glibc".to_owned()),
            elf::AL2023_GLIBC
        )
    };
    progress.line(format!(
        "build: {function}: {} zipped to {}, sha256 {}, {glibc}",
        crate::bootstrap::human_bytes(bytes.len()),
        crate::bootstrap::human_bytes(artifact.zip().len()),
        &artifact.sha256()[..12],
    ));
    Ok(BuiltFunction {
        artifact,
        binary,
        zip,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_target_names_the_rustup_command() {
        let error = check_target(Architecture::Arm64, Some(false)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("run `rustup target add aarch64-unknown-linux-gnu`"),
            "{error}"
        );
        assert!(check_target(Architecture::Arm64, Some(true)).is_ok());
        // Without rustup to ask, the build itself reports what is missing.
        assert!(check_target(Architecture::X86_64, None).is_ok());
    }
}
