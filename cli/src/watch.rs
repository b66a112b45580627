//! `cargo xtask watch --pattern P`: keeps the local env's stack of one pattern on the code of the
//! working tree. It deploys once, then polls the sources; after a change (once the files are
//! quiet for a moment) it re-synthesizes the templates when their inputs changed (`stacks/`,
//! `contract/`, the saga definition, `env/`) and redeploys. The redeploy rebuilds only what the
//! change touched (cargo), uploads only the packages whose code changed (content-addressed
//! keys, zips reused while their binary is unchanged) and restarts the functions on the new
//! code; the watch then waits until the local API answers and prints what it did and how long
//! it took, from the change to the answer.
//!
//! The synthesis and the deploy run as `cargo xtask` child processes rather than in this
//! process: an edit to the stacks or the deploy code itself is then compiled and used, where
//! this process would still run the code it was started with. Polling (every 250 ms, a few
//! hundred files) keeps the tool free of a file-notification dependency.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use sagaform_deploy::Workspace;
use sagaform_stacks::Pattern;

use crate::workspace;

/// The folders and files whose changes the watch acts on.
const WATCHED: [&str; 9] = [
    "functions",
    "stacks",
    "env",
    "contract",
    "local",
    "deploy",
    "tools",
    "Cargo.toml",
    "Cargo.lock",
];

/// Changes under these are inputs of the templates: they are synthesized again first.
const TEMPLATE_INPUTS: [&str; 4] = ["stacks/", "contract/", "functions/saga/", "env/"];

/// How long the files must stay unchanged before a change is acted on (an editor saving several
/// files, a `git checkout`).
const QUIET: Duration = Duration::from_millis(200);

/// How long the API may take to answer after a redeploy.
const API_PATIENCE: Duration = Duration::from_secs(20);

/// Arguments of `cargo xtask watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pattern whose local stack follows the working tree.
    #[arg(long)]
    pattern: Pattern,
    /// How often the sources are polled, in milliseconds.
    #[arg(long, default_value_t = 250)]
    poll_ms: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace::root()?;
    let workspace = Workspace::new(&root);
    let pattern = args.pattern;
    let poll = Duration::from_millis(args.poll_ms.max(10));
    let mut seen = snapshot(&root);
    let started = Instant::now();
    let first = redeploy(&workspace, pattern, false);
    report(&first, "initial deploy", started);
    println!(
        "watch: watching {} for the {pattern} stack of the local env (Ctrl-C to stop)",
        WATCHED.join(", ")
    );
    loop {
        std::thread::sleep(poll);
        let now = snapshot(&root);
        if now == seen {
            continue;
        }
        let changed_at = Instant::now();
        let settled = settle(&root, now, poll);
        let changed = changed_paths(&seen, &settled);
        seen = settled;
        let resynthesize = changed
            .iter()
            .any(|path| TEMPLATE_INPUTS.iter().any(|input| path.starts_with(input)));
        println!(
            "watch: {} changed{}",
            describe(&changed),
            if resynthesize {
                ", a template input: synthesizing and redeploying"
            } else {
                ": rebuilding and redeploying"
            }
        );
        let outcome = redeploy(&workspace, pattern, resynthesize);
        // An edit made while this redeploy ran differs from `seen` and is acted on next;
        // what the commands write (templates/, target/, .local/) is not watched.
        report(&outcome, "redeploy", changed_at);
    }
}

/// What one redeploy did.
struct Redeploy {
    /// The functions whose package changed, or why the redeploy failed.
    result: anyhow::Result<Vec<String>>,
    /// The local API answered after it.
    api_answering: bool,
}

/// Synthesizes (when asked) and deploys the local stack of `pattern`, then waits for its API.
fn redeploy(workspace: &Workspace, pattern: Pattern, resynthesize: bool) -> Redeploy {
    let before = package_stamps(workspace);
    let result = (|| {
        if resynthesize {
            cargo_xtask(
                workspace.root(),
                &["synth", "--pattern", pattern.name(), "--env", "local"],
            )?;
        }
        cargo_xtask(
            workspace.root(),
            &[
                "deploy",
                "--pattern",
                pattern.name(),
                "--env",
                "local",
                "--yes",
            ],
        )?;
        let after = package_stamps(workspace);
        Ok(after
            .into_iter()
            .filter(|(function, stamp)| before.get(function) != Some(stamp))
            .map(|(function, _)| function)
            .collect())
    })();
    let api_answering = result.is_ok() && api_answers(pattern, API_PATIENCE);
    Redeploy {
        result,
        api_answering,
    }
}

/// Prints the outcome of a redeploy and the time since `since`.
fn report(outcome: &Redeploy, what: &str, since: Instant) {
    let seconds = since.elapsed().as_secs_f64();
    match &outcome.result {
        Ok(rebuilt) if outcome.api_answering => {
            let code = if rebuilt.is_empty() {
                "no function code changed".to_owned()
            } else {
                format!("new code for {}", rebuilt.join(", "))
            };
            println!("watch: ready: {what} done, {code}, API answering, {seconds:.1} s");
        }
        Ok(_) => println!(
            "watch: {what} done but the API did not answer within {} s ({seconds:.1} s)",
            API_PATIENCE.as_secs()
        ),
        Err(error) => println!(
            "watch: {what} failed after {seconds:.1} s: {error:#}; waiting for the next change"
        ),
    }
}

/// Runs `cargo xtask <args>` in `root`, its output going to this terminal.
fn cargo_xtask(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .arg("xtask")
        .args(args)
        .stdin(Stdio::null())
        .status()
        .context("cannot run cargo xtask")?;
    if !status.success() {
        bail!("`cargo xtask {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Modification time and length of every file under the watched paths.
type Snapshot = BTreeMap<PathBuf, (SystemTime, u64)>;

fn snapshot(root: &Path) -> Snapshot {
    let mut files = Snapshot::new();
    for watched in WATCHED {
        collect(root, &root.join(watched), &mut files);
    }
    files
}

fn collect(root: &Path, path: &Path, files: &mut Snapshot) {
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    if metadata.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            // Build output (a nested crate's `target/`) and hidden folders are no sources.
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            collect(root, &entry.path(), files);
        }
    } else if let Ok(modified) = metadata.modified() {
        let relative = path.strip_prefix(root).unwrap_or(path).to_path_buf();
        files.insert(relative, (modified, metadata.len()));
    }
}

/// Polls until two snapshots `QUIET` apart agree, starting from `current`.
fn settle(root: &Path, mut current: Snapshot, poll: Duration) -> Snapshot {
    loop {
        std::thread::sleep(QUIET.max(poll));
        let next = snapshot(root);
        if next == current {
            return current;
        }
        current = next;
    }
}

/// The paths added, removed or modified between two snapshots, as `/`-separated strings.
fn changed_paths(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(path, stamp)| before.get(*path) != Some(stamp))
        .map(|(path, _)| path)
        .chain(before.keys().filter(|path| !after.contains_key(*path)))
        .map(|path| path.to_string_lossy().replace('\\', "/"))
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

/// `a.rs`, `a.rs and b.rs`, or `a.rs and 4 other files`.
fn describe(changed: &[String]) -> String {
    match changed {
        [] => "nothing".to_owned(),
        [one] => one.clone(),
        [one, two] => format!("{one} and {two}"),
        [one, rest @ ..] => format!("{one} and {} other files", rest.len()),
    }
}

/// The build stamp of each function package of the local env (see `host_build`).
fn package_stamps(workspace: &Workspace) -> BTreeMap<String, String> {
    ["api", "worker", "step"]
        .into_iter()
        .filter_map(|function| {
            let stamp = workspace
                .package_zip(function, true)
                .with_extension("zip.source");
            std::fs::read_to_string(stamp)
                .ok()
                .map(|text| (function.to_owned(), text))
        })
        .collect()
}

/// Whether the local API of `pattern` answers a status request within `patience`.
fn api_answers(pattern: Pattern, patience: Duration) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], sagaform_local::services::api_port(pattern)));
    let deadline = Instant::now() + patience;
    let path = "/transactions/00000000-0000-4000-8000-000000000000";
    while Instant::now() < deadline {
        let answer =
            sagaform_tools::http::request(address, "GET", path, None, Duration::from_secs(2));
        if answer.is_ok_and(|response| response.status == 404) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, len: u64) -> (SystemTime, u64) {
        (SystemTime::UNIX_EPOCH + Duration::from_secs(seconds), len)
    }

    #[test]
    fn added_removed_and_modified_files_are_changes_and_the_rest_is_not() {
        let before: Snapshot = [
            ("functions/api/src/lib.rs", at(1, 10)),
            ("stacks/src/asl.rs", at(1, 20)),
            ("env/local.toml", at(1, 30)),
        ]
        .into_iter()
        .map(|(path, stamp)| (PathBuf::from(path), stamp))
        .collect();
        let mut after = before.clone();
        after.insert("functions/api/src/lib.rs".into(), at(2, 10));
        after.remove(Path::new("env/local.toml"));
        after.insert("functions/worker/src/new.rs".into(), at(2, 5));

        let changed = changed_paths(&before, &after);
        assert_eq!(
            changed,
            [
                "env/local.toml",
                "functions/api/src/lib.rs",
                "functions/worker/src/new.rs"
            ]
        );
        assert_eq!(describe(&changed), "env/local.toml and 2 other files");
        assert!(changed_paths(&after, &after).is_empty());
    }
}
