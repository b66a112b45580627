//! The offline review (`diff --base`) on a real git repository made in a temporary folder: the
//! env files of this checkout, the templates and runbooks they synthesize committed on `main`
//! as they were before a change, and a feature branch. The working tree's side is this
//! checkout's synthesis, edited where a test needs a change the saga definition (compiled in)
//! cannot make here: a retry policy that differed at the base, an IAM statement widened.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sagaform_deploy::review::{Review, review as review_tree, review_files};
use sagaform_deploy::security::Risk;
use sagaform_deploy::{EXIT_OK, EXIT_SECURITY_CHANGES};
use sagaform_stacks::Pattern;
use sagaform_stacks::synth::{self, GeneratedFile, Selection};

/// A git repository with this checkout's env files and, committed on `main`, the generated
/// files after `edit_base`; then a branch `feature` with one more commit, so the merge base with
/// `main` is that first commit.
struct Repo {
    root: PathBuf,
    files: Vec<GeneratedFile>,
}

impl Repo {
    fn new(name: &str, edit_base: impl Fn(&mut Vec<GeneratedFile>)) -> Repo {
        let root =
            std::env::temp_dir().join(format!("sagaform-review-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("env")).unwrap();
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for entry in fs::read_dir(checkout.join("env")).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), root.join("env").join(entry.file_name())).unwrap();
        }
        let files = synth::generate(&root, &Selection::all()).unwrap();
        let mut base = files.clone();
        edit_base(&mut base);
        write(&root, &base);
        git(&root, &["init", "--quiet", "--initial-branch", "main"]);
        git(&root, &["add", "."]);
        git(&root, &["commit", "--quiet", "-m", "base"]);
        git(&root, &["checkout", "--quiet", "-b", "feature"]);
        fs::write(root.join("NOTES"), "feature work\n").unwrap();
        git(&root, &["add", "NOTES"]);
        git(&root, &["commit", "--quiet", "-m", "feature"]);
        Repo { root, files }
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn write(root: &Path, files: &[GeneratedFile]) {
    for file in files {
        let path = root.join(&file.path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, &file.contents).unwrap();
    }
}

fn git(root: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(root)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?} failed");
}

/// Replaces the first `from` by `to` in the generated file at `path`.
fn edit(files: &mut [GeneratedFile], path: &str, from: &str, to: &str) {
    let file = files.iter_mut().find(|f| f.path == path).unwrap();
    assert!(file.contents.contains(from), "{path} has no {from:?}");
    file.contents = file.contents.replacen(from, to, 1);
}

#[test]
fn a_changed_retry_policy_shows_in_the_template_and_the_runbook_without_security_rows() {
    // At the base, the first step retried once less, as a saga definition with another retry
    // policy would have generated.
    let repo = Repo::new("retry", |base| {
        edit(
            base,
            "templates/stepfunctions/prod.yaml",
            "\"MaxAttempts\": 3,",
            "\"MaxAttempts\": 2,",
        );
        edit(
            base,
            "templates/sqs/prod.md",
            "(24 deliveries for its steps' own retries",
            "(23 deliveries for its steps' own retries",
        );
    });
    let review = review_files(&repo.root, None, &Selection::all(), &repo.files).unwrap();
    assert!(review.base.contains("main"), "{}", review.base);
    assert_eq!(
        review
            .stacks
            .iter()
            .map(|s| s.stack.as_str())
            .collect::<Vec<_>>(),
        ["sagaform-sqs-prod", "sagaform-stepfunctions-prod"]
    );
    let machine = &review.stacks[1].template.entries[0];
    assert_eq!(machine.id, "StateMachine");
    assert_eq!(machine.properties.len(), 1, "{machine:?}");
    assert!(
        machine.properties[0]
            .path
            .starts_with("Properties.DefinitionString line ")
    );
    assert_eq!(
        machine.properties[0].old.as_deref(),
        Some("\"MaxAttempts\": 2,")
    );
    assert_eq!(
        machine.properties[0].new.as_deref(),
        Some("\"MaxAttempts\": 3,")
    );
    let runbook = &review.stacks[0];
    assert!(runbook.template.is_empty());
    assert_eq!(runbook.runbook.len(), 1);
    assert!(
        runbook.runbook_sections == ["DLQ not empty"],
        "{:?}",
        runbook.runbook_sections
    );
    assert_eq!(review.exit_code(), EXIT_OK);

    let text = review.to_text();
    assert!(text.contains("security changes: none"), "{text}");
    assert!(
        text.contains("Properties.DefinitionString line ")
            && text.contains("\"MaxAttempts\": 2, -> \"MaxAttempts\": 3,"),
        "{text}"
    );
    assert!(
        text.contains("+Alarm `DeadLetterQueueNotEmptyAlarm`"),
        "{text}"
    );
    let markdown = review.to_markdown();
    assert!(
        markdown.contains("#### `sagaform-stepfunctions-prod` (changed)"),
        "{markdown}"
    );
    assert!(markdown.contains("````diff\n@@ "), "{markdown}");
}

#[test]
fn a_widened_iam_statement_lands_in_the_security_table_and_the_exit_code() {
    let repo = Repo::new("iam", |_| {});
    let mut files = repo.files.clone();
    edit(
        &mut files,
        "templates/sqs/prod.yaml",
        "                  - sqs:SendMessage\n",
        "                  - sqs:SendMessage\n                  - sqs:PurgeQueue\n",
    );
    let selection = Selection {
        pattern: Some(Pattern::Sqs),
        env: Some("prod".to_owned()),
    };
    let review = review_files(&repo.root, Some("main"), &selection, &files).unwrap();
    assert_eq!(review.stacks.len(), 1);
    let rows: Vec<_> = review.security().collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (stack, change) = rows[0];
    assert_eq!(stack.stack, "sagaform-sqs-prod");
    assert_eq!(change.what, "Allow sqs:PurgeQueue");
    assert_eq!(change.new.as_deref(), Some("!GetAtt WorkQueue.Arn"));
    assert_eq!(change.risk, Risk::Widened);
    assert_eq!(review.exit_code(), EXIT_SECURITY_CHANGES);
    assert_eq!(EXIT_SECURITY_CHANGES, 4);
    let markdown = review.to_markdown();
    assert!(
        markdown.contains("#### Security changes (1)")
            && markdown.contains("| **widened** | `sagaform-sqs-prod` |"),
        "{markdown}"
    );
}

#[test]
fn the_working_tree_as_committed_has_no_changes_and_stale_templates_are_named() {
    let repo = Repo::new("fresh", |_| {});
    let review: Review = review_tree(&repo.root, None, &Selection::all()).unwrap();
    assert!(review.is_empty(), "{}", review.to_text());
    assert!(review.stale.is_empty(), "{:?}", review.stale);
    assert_eq!(review.exit_code(), EXIT_OK);
    assert!(
        review
            .to_text()
            .contains("no changes to templates or runbooks")
    );

    // A hand edit of a generated file is stale; the review still compares the synthesis.
    fs::write(repo.root.join("templates/sqs/local.md"), "edited\n").unwrap();
    let review = review_tree(&repo.root, None, &Selection::all()).unwrap();
    assert!(review.is_empty());
    assert_eq!(review.stale, ["templates/sqs/local.md: stale"]);
    assert!(
        review
            .to_text()
            .contains("warning: templates/ in the working tree is stale")
    );

    let unknown = review_files(
        &repo.root,
        Some("no-such-ref"),
        &Selection::all(),
        &repo.files,
    )
    .unwrap_err()
    .to_string();
    assert!(
        unknown.contains("git rev-parse --verify no-such-ref"),
        "{unknown}"
    );
}
