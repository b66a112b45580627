//! The GitHub workflows under `.github/workflows` pass the pinned actionlint with no finding,
//! shellcheck included: the pinned shellcheck is the only one actionlint can find, because the
//! venv's `bin` is its whole `PATH` (a shellcheck of the machine, or none, would change what is
//! checked from one machine to the next).

use std::fs;
use std::process::Command;

use sagaform_tools::{Tools, workspace_root};

#[test]
fn every_workflow_passes_actionlint_and_shellcheck() {
    let tools = Tools::ensure().unwrap_or_else(|e| {
        panic!(
            "cannot install the pinned actionlint into .tools/venv (needs python3 and PyPI): {e}"
        )
    });
    let root = workspace_root();
    let mut workflows: Vec<String> = fs::read_dir(root.join(".github/workflows"))
        .expect("read .github/workflows")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    workflows.sort();
    assert!(
        workflows.len() >= 2,
        "expected ci.yml and infra-review.yml: {workflows:?}"
    );
    assert!(
        tools.bin("shellcheck").exists(),
        "the pinned shellcheck is missing from {}",
        tools.bin_dir().display()
    );
    let output = Command::new(tools.bin("actionlint"))
        .current_dir(&root)
        .env("PATH", tools.bin_dir())
        .args(["-no-color", "-shellcheck", "shellcheck"])
        .args(&workflows)
        .output()
        .expect("run the pinned actionlint");
    let findings = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "actionlint on {workflows:?} exited with {}:\n{findings}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
