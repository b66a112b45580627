//! Every generated template passes cfn-lint, at the version pinned in `tools/requirements.txt`,
//! with no error and no warning. The test installs that version into `.tools/venv` on first use
//! (a few seconds, once per checkout) and lints the templates as generated now, each with the
//! region of its environment.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sagaform_stacks::config;
use sagaform_stacks::synth::{self, Selection};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_template_passes_cfn_lint_without_errors_or_warnings() {
    let root = workspace_root();
    let tools = sagaform_tools::Tools::ensure().unwrap_or_else(|e| {
        panic!("cannot install the pinned cfn-lint into .tools/venv (needs python3 and PyPI): {e}")
    });
    let cfn_lint = tools.bin("cfn-lint");

    let files = synth::generate(&root, &Selection::all()).unwrap();
    let regions: BTreeMap<String, String> = config::load_all(&root)
        .unwrap()
        .into_iter()
        .map(|env| (env.name.clone(), env.region().to_owned()))
        .collect();

    // The templates go into a scratch folder with the repository's layout, so findings name
    // `templates/<pattern>/<env>.yaml` exactly like the committed files.
    let scratch = std::env::temp_dir().join(format!("sagaform-cfn-lint-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let mut by_region: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.path.ends_with(".yaml")) {
        let target = scratch.join(&file.path);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(&target, &file.contents).unwrap();
        let env = Path::new(&file.path).file_stem().unwrap().to_str().unwrap();
        by_region.entry(&regions[env]).or_default().push(&file.path);
    }
    assert!(
        by_region.values().map(Vec::len).sum::<usize>() >= 9,
        "expected 9+ templates"
    );

    let mut findings = Vec::new();
    let mut failures = Vec::new();
    for (region, paths) in &by_region {
        let output = Command::new(&cfn_lint)
            .current_dir(&scratch)
            .args([
                "--format",
                "parseable",
                "--non-zero-exit-code",
                "warning",
                "--regions",
                region,
                "--",
            ])
            .args(paths)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cfn_lint.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            // Parseable lines are `file:line:col:endline:endcol:RuleId:message`; informational
            // rules (I....) are shown but do not fail the test.
            let rule = line.split(':').nth(5).unwrap_or_default();
            if rule.starts_with('I') {
                eprintln!("cfn-lint info: {line}");
            } else {
                findings.push(line.to_owned());
            }
        }
        if !output.status.success() {
            failures.push(format!(
                "cfn-lint --regions {region} exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    assert!(
        findings.is_empty() && failures.is_empty(),
        "cfn-lint findings (errors and warnings):\n{}\n{}",
        findings.join("\n"),
        failures.join("\n")
    );
}
