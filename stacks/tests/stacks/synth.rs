//! The committed templates are exactly what `cargo xtask synth` generates now: the committed
//! files are the full golden files, and this test (like CI's `cargo xtask synth --check`) fails
//! as soon as a change to the code, the saga or an env file is not followed by a re-synth.
//! It also proves the output does not depend on when or where it is generated.

use std::path::{Path, PathBuf};

use sagaform_stacks::synth::{self, Selection};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn templates_in_repo_are_fresh() {
    let root = workspace_root();
    let all = Selection::all();
    let files = synth::generate(&root, &all).unwrap();
    let drifts = synth::drift(&root, &files, &all).unwrap();
    assert!(
        drifts.is_empty(),
        "generated files are out of date, run `cargo xtask synth` and commit the result:\n{}",
        drifts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn synthesis_is_deterministic_and_machine_independent() {
    let root = workspace_root();
    let first = synth::generate(&root, &Selection::all()).unwrap();
    let second = synth::generate(&root, &Selection::all()).unwrap();
    assert_eq!(first, second);
    assert!(first.len() >= 18, "9+ templates, each with a runbook");
    let absolute = root.canonicalize().unwrap().to_string_lossy().into_owned();
    for file in &first {
        assert!(
            !file.contents.contains('\r'),
            "{} has CR line endings",
            file.path
        );
        assert!(
            !file.contents.contains(&absolute),
            "{} contains the checkout path",
            file.path
        );
        assert!(
            !file.contents.contains("/home/") && !file.contents.contains("/root/"),
            "{}",
            file.path
        );
    }
}
