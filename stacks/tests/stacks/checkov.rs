//! Every generated template passes checkov, at the version pinned in
//! `tools/checkov-requirements.txt`: each failed check is fixed, or skipped in the resource's
//! `Metadata` with a reason (`sagaform_stacks::cfn::CheckovSkip`), and every skip is still
//! needed. The test installs checkov into `.tools/checkov-venv` on first use (about a minute,
//! once per checkout) and runs it offline: no API key, no download, no update check.
//!
//! checkov does not evaluate a skipped check, so to tell a needed skip from a stale one the
//! templates are checked twice: as generated, and with the skips' `checkov` key renamed, which
//! checkov then ignores. Every skip must be reported skipped in the first run and failed in the
//! second.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sagaform_stacks::synth::{self, Selection};
use serde_json::Value;

/// The key checkov reads skips from, as the template writer indents it under `Metadata`, and
/// the name it is renamed to for the run without skips.
const SKIPS_KEY: &str = "\n      checkov:\n";
const IGNORED_SKIPS_KEY: &str = "\n      checkov-skips-ignored:\n";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One check result: where, which check, and the skip's comment if it was skipped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    /// `templates/<pattern>/<env>.yaml`.
    file: String,
    /// `Type.LogicalId`, as checkov names a resource.
    resource: String,
    check_id: String,
    check_name: String,
    comment: String,
}

impl Finding {
    fn key(&self) -> (String, String, String) {
        (
            self.file.clone(),
            self.resource.clone(),
            self.check_id.clone(),
        )
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} ({})",
            self.file, self.resource, self.check_id, self.check_name
        )
    }
}

/// What one checkov run reported.
struct Report {
    summary: Value,
    passed: Vec<Finding>,
    failed: Vec<Finding>,
    skipped: Vec<Finding>,
}

impl Report {
    /// Passed, failed and skipped checks per template.
    fn counts(&self) -> BTreeMap<&str, [usize; 3]> {
        let mut counts: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        for (index, findings) in [&self.passed, &self.failed, &self.skipped]
            .into_iter()
            .enumerate()
        {
            for finding in findings {
                counts.entry(&finding.file).or_default()[index] += 1;
            }
        }
        counts
    }
}

/// Runs checkov on `<dir>/templates` and reads its JSON report.
fn run_checkov(checkov: &Path, dir: &Path) -> Report {
    let output = Command::new(checkov)
        .current_dir(dir)
        .args([
            "--framework",
            "cloudformation",
            "--directory",
            "templates",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ])
        // Offline and on this checkout's terms only: no platform key, no update check.
        .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
        .env_remove("BC_API_KEY")
        .env_remove("PRISMA_API_URL")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", checkov.display()));
    // checkov exits 1 when a check failed, which is a finding for the test to report, not an
    // error; anything else is.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "checkov exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(
        report["check_type"], "cloudformation",
        "one report, of the cloudformation framework: {report}"
    );
    let findings = |kind: &str| -> Vec<Finding> {
        report["results"][kind]
            .as_array()
            .into_iter()
            .flatten()
            .map(|check| {
                let text = |field: &str| check[field].as_str().unwrap_or_default().to_owned();
                Finding {
                    file: format!("templates{}", text("file_path")),
                    resource: text("resource"),
                    check_id: text("check_id"),
                    check_name: text("check_name"),
                    comment: check["check_result"]["suppress_comment"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                }
            })
            .collect()
    };
    Report {
        passed: findings("passed_checks"),
        failed: findings("failed_checks"),
        skipped: findings("skipped_checks"),
        summary: report["summary"].clone(),
    }
}

/// The skips written in a template: `(file, Type.LogicalId, check id)`.
fn written_skips(path: &str, contents: &str) -> Vec<(String, String, String)> {
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(contents).unwrap();
    let mut skips = Vec::new();
    let resources = template["Resources"].as_mapping().unwrap();
    for (logical_id, resource) in resources {
        let Some(list) = resource["Metadata"]["checkov"]["skip"].as_sequence() else {
            continue;
        };
        for skip in list {
            skips.push((
                path.to_owned(),
                format!(
                    "{}.{}",
                    resource["Type"].as_str().unwrap(),
                    logical_id.as_str().unwrap()
                ),
                skip["id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    skips
}

#[test]
fn every_template_passes_checkov_with_a_reason_for_each_skip() {
    let root = workspace_root();
    let checkov = sagaform_tools::Tools::ensure()
        .and_then(|tools| tools.checkov())
        .unwrap_or_else(|e| {
            panic!("cannot install the pinned checkov into .tools/checkov-venv (needs python3 and PyPI): {e}")
        });
    let pinned = sagaform_tools::pinned()
        .find_map(|pin| pin.strip_prefix("checkov=="))
        .expect("checkov is pinned");

    let files = synth::generate(&root, &Selection::all()).unwrap();
    let templates: Vec<_> = files.iter().filter(|f| f.path.ends_with(".yaml")).collect();
    assert!(templates.len() >= 9, "expected 9+ templates");

    // Two copies with the repository's layout, so findings name `templates/<pattern>/<env>.yaml`
    // exactly like the committed files: as generated, and with every skip ignored.
    let scratch = std::env::temp_dir().join(format!("sagaform-checkov-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let (generated, unskipped) = (scratch.join("generated"), scratch.join("unskipped"));
    let mut written = BTreeSet::new();
    for file in &templates {
        written.extend(written_skips(&file.path, &file.contents));
        let without_skips = file.contents.replace(SKIPS_KEY, IGNORED_SKIPS_KEY);
        for (dir, contents) in [(&generated, &file.contents), (&unskipped, &without_skips)] {
            let target = dir.join(&file.path);
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::write(&target, contents).unwrap();
        }
    }
    let report = run_checkov(&checkov, &generated);
    let without_skips = run_checkov(&checkov, &unskipped);
    let _ = fs::remove_dir_all(&scratch);

    for (file, [passed, failed, skipped]) in report.counts() {
        eprintln!("checkov {file}: passed {passed}, failed {failed}, skipped {skipped}");
    }
    eprintln!("checkov summary: {}", report.summary);
    assert_eq!(
        report.summary["checkov_version"].as_str(),
        Some(pinned),
        "checkov is not the pinned version"
    );
    assert_eq!(
        report.summary["parsing_errors"].as_u64(),
        Some(0),
        "checkov could not parse a template"
    );
    assert_eq!(
        report.counts().len(),
        templates.len(),
        "checkov did not check every template"
    );

    let unexplained: Vec<String> = report.failed.iter().map(Finding::line).collect();
    let skipped: BTreeSet<_> = report.skipped.iter().map(Finding::key).collect();
    let failing_without_skips: BTreeSet<_> =
        without_skips.failed.iter().map(Finding::key).collect();
    let stale: Vec<String> = report
        .skipped
        .iter()
        .filter(|finding| !failing_without_skips.contains(&finding.key()))
        .map(Finding::line)
        .collect();
    let never_run: Vec<String> = written
        .difference(&skipped)
        .map(|(file, resource, id)| format!("{file} {resource} {id}"))
        .collect();
    let without_reason: Vec<String> = report
        .skipped
        .iter()
        .filter(|f| f.comment.trim().is_empty() || f.comment == "No comment provided")
        .map(Finding::line)
        .collect();

    let mut problems = Vec::new();
    for (title, lines) in [
        (
            "failed checks: fix each, or skip it with a reason (sagaform_stacks::cfn::CheckovSkip)",
            unexplained,
        ),
        (
            "skips of checks that pass without them: remove the skip",
            stale,
        ),
        (
            "skips checkov never ran (a check id that does not apply to the resource type)",
            never_run,
        ),
        ("skips without a reason", without_reason),
    ] {
        if !lines.is_empty() {
            problems.push(format!("{title}:\n  {}", lines.join("\n  ")));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
