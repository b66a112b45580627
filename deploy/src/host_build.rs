//! Building for the local env: its functions run on this machine under sagaform-local, so they
//! need neither cargo-lambda, zig nor a foreign target. A plain `cargo build --workspace` of
//! their binaries in the dev profile, for the host, shares its whole dependency graph with what the tools and
//! the tests already compiled (same profile, target and, the workspace's features being unified
//! the same way, the same features): on a warm checkout only the binaries are linked.
//!
//! The packages are zipped like the AWS ones, so the local env deploys and unpacks exactly what
//! it would on Lambda, but they are kept apart from cargo-lambda's output
//! ([`Workspace::package_zip`]): `deploy --no-build` to an AWS env never picks up a debug build.
//! A zip is reused while its binary is unchanged (same length and modification time), so a no-op
//! redeploy does not deflate a hundred megabytes again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, UNIX_EPOCH};

use crate::{Artifact, DeployError, Progress, Workspace};

/// Runs `cargo build` (dev profile, host target) for the binaries `bins` of the workspace and
/// returns their paths, in order. Cargo's own progress goes to stderr.
pub fn cargo_build_bins(
    workspace: &Workspace,
    bins: &[&str],
    progress: &Progress,
) -> Result<Vec<PathBuf>, DeployError> {
    // The cargo that runs this tool (set by `cargo run`), so a rustup toolchain override holds.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // `--workspace`: features are resolved for the selected packages, and only the whole
    // workspace resolves them as `cargo xtask` and `cargo test --workspace` do (a test holds
    // the three to one answer); `--bin` then limits what is built to the binaries asked for.
    command
        .current_dir(workspace.root())
        .args(["build", "--workspace"]);
    for bin in bins {
        command.args(["--bin", bin]);
    }
    let started = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| DeployError::Build(format!("cannot run cargo build: {e}")))?;
    if !status.success() {
        return Err(DeployError::Build(format!(
            "cargo build --bin {} failed ({status}); the compiler output is above",
            bins.join(" --bin ")
        )));
    }
    progress.line(format!(
        "build: cargo build of {} (dev profile, host) took {:.1} s",
        bins.join(", "),
        started.elapsed().as_secs_f64()
    ));
    let dir = workspace.cargo_target_dir().join("debug");
    Ok(bins.iter().map(|bin| dir.join(bin)).collect())
}

/// Builds the local env's functions on this machine and packages each (see the module docs).
pub fn build_local_functions(
    workspace: &Workspace,
    functions: &[String],
    progress: &Progress,
) -> Result<Vec<Artifact>, DeployError> {
    if functions.is_empty() {
        return Ok(Vec::new());
    }
    let bins: Vec<&str> = functions.iter().map(String::as_str).collect();
    let binaries = cargo_build_bins(workspace, &bins, progress)?;
    let started = Instant::now();
    let mut artifacts = Vec::new();
    for (function, binary) in functions.iter().zip(&binaries) {
        let zip = workspace.package_zip(function, true);
        artifacts.push(package(function, binary, &zip)?);
    }
    progress.line(format!(
        "build: packaged {} in {:.1} s",
        functions.join(", "),
        started.elapsed().as_secs_f64()
    ));
    Ok(artifacts)
}

/// The package of `binary` at `zip`: the zip there when it was made from this very binary,
/// else a new one.
fn package(function: &str, binary: &Path, zip: &Path) -> Result<Artifact, DeployError> {
    let source = binary_stamp(binary)?;
    let stamp_path = zip.with_extension("zip.source");
    if std::fs::read_to_string(&stamp_path).is_ok_and(|recorded| recorded == source)
        && let Ok(artifact) = Artifact::from_zip_file(function, zip)
    {
        return Ok(artifact);
    }
    let bytes = std::fs::read(binary).map_err(DeployError::io("read", binary))?;
    let artifact = Artifact::from_local_bootstrap(function, &bytes)?;
    if let Some(dir) = zip.parent() {
        std::fs::create_dir_all(dir).map_err(DeployError::io("create", dir))?;
    }
    std::fs::write(zip, artifact.zip()).map_err(DeployError::io("write", zip))?;
    std::fs::write(&stamp_path, source).map_err(DeployError::io("write", &stamp_path))?;
    Ok(artifact)
}

/// What identifies a build of `binary` (for the reuse of its zip, or of a process started from
/// it): its path, length and modification time (cargo rewrites the file on every link).
pub fn binary_stamp(binary: &Path) -> Result<String, DeployError> {
    let metadata = std::fs::metadata(binary).map_err(DeployError::io("read", binary))?;
    let modified = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!(
        "{} {} {modified}\n",
        binary.display(),
        metadata.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_is_reused_while_its_binary_is_unchanged_and_remade_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("sagaform-host-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("api");
        let zip = dir.join("packages/api/bootstrap.zip");
        std::fs::write(&binary, b"\x7fELF first build".repeat(100)).unwrap();

        let first = package("api", &binary, &zip).unwrap();
        assert_eq!(std::fs::read(&zip).unwrap(), first.zip());
        // A zip whose binary did not change is taken as it is: marking it shows it was not
        // rewritten.
        std::fs::write(&zip, b"kept").unwrap();
        let reused = package("api", &binary, &zip).unwrap();
        assert_eq!(reused.zip(), b"kept");

        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&binary, b"\x7fELF second build".repeat(100)).unwrap();
        let rebuilt = package("api", &binary, &zip).unwrap();
        let expected =
            Artifact::from_local_bootstrap("api", &b"\x7fELF second build".repeat(100)).unwrap();
        assert_eq!(rebuilt.sha256(), expected.sha256());
        assert_ne!(rebuilt.sha256(), first.sha256());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
