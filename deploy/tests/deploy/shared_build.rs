//! The local env's functions are built with `cargo build --workspace --bin ...` so that they
//! reuse every dependency the tools (`sagaform-cli`, which `cargo xtask` runs) and `cargo test
//! --workspace` already compiled, and the small `xtask` front must resolve the few dependencies
//! it has as they do, or a first `cargo xtask deploy` compiles those twice. Cargo resolves features per selection of packages, so that reuse holds
//! only while the three selections enable the same features of every dependency: one feature
//! more on `tokio` or `serde_core` in one of them recompiles the AWS SDK for it. `cargo tree`
//! resolves features per selection as a build does; this test compares its answers and names
//! the dependencies that differ.

use std::collections::BTreeSet;
use std::process::Command;

use sagaform_deploy::Workspace;

/// `name version [features]` of every dependency (not workspace members) of a selection.
fn resolved_features(selection: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(Workspace::current().root())
        .args([
            "tree",
            "--quiet",
            "--prefix",
            "none",
            "--format",
            "{p} [{f}]",
        ])
        .args(selection)
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree {selection:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        // Workspace members are shown with their path; their own features do not matter here.
        // A blank line separates the trees of several roots.
        .filter(|line| !line.is_empty() && !line.contains(" (/"))
        .map(|line| line.trim_end_matches(" (*)").to_owned())
        .collect()
}

#[test]
fn the_tools_the_tests_and_the_local_functions_resolve_the_same_dependency_features() {
    let tools = resolved_features(&["-p", "sagaform-cli", "-e", "normal,build"]);
    let local_functions = resolved_features(&["--workspace", "-e", "normal,build"]);
    let tests = resolved_features(&["--workspace", "-e", "normal,build,dev"]);
    for (name, other) in [
        ("the local functions' build", &local_functions),
        ("the tests", &tests),
    ] {
        let only_tools: Vec<_> = tools.difference(other).collect();
        let only_other: Vec<_> = other.difference(&tools).collect();
        assert!(
            only_tools.is_empty() && only_other.is_empty(),
            "sagaform-cli and {name} resolve dependencies differently, so each compiles its own \
             copy of them (align the features in [workspace.dependencies]):\n\
             only for sagaform-cli: {only_tools:#?}\nonly for {name}: {only_other:#?}"
        );
    }
}

#[test]
fn the_synthesis_front_resolves_its_dependencies_as_the_tools_do() {
    let front = resolved_features(&["-p", "xtask", "-e", "normal,build"]);
    let tools = resolved_features(&["-p", "sagaform-cli", "-e", "normal,build"]);
    let different: Vec<_> = front.difference(&tools).collect();
    assert!(
        different.is_empty(),
        "xtask resolves these dependencies with other features than sagaform-cli, so a first \
         `cargo xtask deploy` compiles them twice (enable the features in \
         [workspace.dependencies]): {different:#?}"
    );
}
