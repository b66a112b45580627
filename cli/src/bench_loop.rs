//! `cargo xtask bench loop`: the edit-to-running loop in one table, so the figures in the README
//! and in issue notes come from one command. Measured, each with min / median / max:
//!
//! - **first deploy**: `cargo xtask deploy --pattern P --env local --yes` in a scratch clone of
//!   the checkout's `HEAD` (its own `target/` and `.tools/`: nothing compiled, no tool
//!   installed), from the command's start to the local API answering;
//! - **no-op redeploy**: the same command again in this checkout, nothing changed;
//! - **one-function redeploy**: after an edit of the api function's source (a comment line at
//!   its top, so its line tables and therefore its binary change), only that function rebuilt
//!   and uploaded;
//! - **watch**: `cargo xtask watch` running, from the same edit to the watch reporting the new
//!   code deployed and the API answering;
//! - **synthesis**: in-process, the built binary, and `cargo xtask synth --check` as a whole
//!   process.
//!
//! The local env binds fixed ports, so the bench refuses to start while one runs; it leaves the
//! checkout's stack of the pattern deployed (as `deploy` would) and every edited file as it was.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sagaform_stacks::Pattern;
use sagaform_stacks::synth::{self, Selection};

use crate::bench::{time_process, time_runs, xtask_binary};
use crate::workspace;

/// Arguments of `cargo xtask bench loop`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pattern deployed.
    #[arg(long, default_value = "sqs")]
    pattern: Pattern,
    /// Timed runs of each redeploy and watch measurement.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Timed first deploys, each in a new scratch clone (minutes each); 0 skips them.
    #[arg(long, default_value_t = 1)]
    first_deploys: usize,
    /// Timed runs of each synthesis measurement.
    #[arg(long, default_value_t = 20)]
    synth_runs: usize,
}

/// The function whose source the redeploy and watch measurements edit.
const EDITED_SOURCE: &str = "functions/api/src/main.rs";

/// Ports of the local env (emulator, fake SaaS, the three APIs).
const LOCAL_PORTS: [u16; 5] = [4566, 9320, 9301, 9302, 9303];

/// One row of the table.
struct Row {
    what: String,
    times: Vec<Duration>,
    target: Duration,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace::root()?;
    if let Some(port) = LOCAL_PORTS.into_iter().find(|port| port_in_use(*port)) {
        bail!(
            "port {port} is in use: a local env runs on this machine; stop it (`cargo xtask local stop`) before `bench loop`"
        );
    }
    let pattern = args.pattern;
    let runs = args.runs.max(1);
    let mut rows = Vec::new();

    eprintln!(
        "bench loop: synthesis ({} runs each)",
        args.synth_runs.max(1)
    );
    rows.extend(synthesis_rows(&root, args.synth_runs.max(1))?);

    if args.first_deploys > 0 {
        let mut times = Vec::new();
        for run in 1..=args.first_deploys {
            eprintln!(
                "bench loop: first deploy {run}/{} in a scratch clone (compiles everything)",
                args.first_deploys
            );
            times.push(first_deploy(&root, pattern)?);
        }
        rows.push(Row {
            what: format!("first deploy of {pattern} (fresh clone, tools not installed)"),
            times,
            target: Duration::from_secs(180),
        });
    }

    let edit = SourceEdit::new(&root.join(EDITED_SOURCE))?;
    eprintln!("bench loop: deploying {pattern} in this checkout (untimed)");
    deploy(&root, pattern)?;
    rows.push(Row {
        what: "no-op redeploy".to_owned(),
        times: (0..runs)
            .map(|_| deploy(&root, pattern))
            .collect::<anyhow::Result<_>>()?,
        target: Duration::from_secs(2),
    });
    let mut one_function = Vec::new();
    for run in 0..runs {
        edit.apply(run)?;
        one_function.push(deploy(&root, pattern)?);
    }
    rows.push(Row {
        what: "redeploy after editing the api function".to_owned(),
        times: one_function,
        target: Duration::from_secs(30),
    });
    rows.push(Row {
        what: "watch: api edit to the new code answering".to_owned(),
        times: watch_latency(&root, pattern, &edit, runs)?,
        target: Duration::from_secs(20),
    });
    edit.restore()?;
    eprintln!("bench loop: redeploying the unedited code (untimed)");
    deploy(&root, pattern)?;

    print_table(&rows);
    // Growth, not a target: linear when the time per saga-step stays flat.
    println!("synthesis growth with generated sagas (every pattern for env staging, median of 5):");
    for point in crate::bench::synthesis_curve(&root)? {
        println!("  {point}");
    }
    Ok(())
}

/// In-process synthesis, the built binary and `cargo xtask synth --check`.
fn synthesis_rows(root: &Path, runs: usize) -> anyhow::Result<Vec<Row>> {
    let all = Selection::all();
    let files = synth::generate(root, &all)?.len();
    let in_process = time_runs(runs, || {
        std::hint::black_box(synth::generate(root, &all)?);
        Ok(())
    })?;
    let exe = xtask_binary()?;
    let binary = time_process(runs, root, Command::new(&exe).args(["synth", "--check"]))?;
    let via_cargo = time_process(
        runs,
        root,
        Command::new(cargo()).args(["xtask", "synth", "--check"]),
    )?;
    Ok(vec![
        Row {
            what: format!("synth in-process ({files} files)"),
            times: in_process,
            target: Duration::from_millis(10),
        },
        Row {
            what: "synth --check, the built binary".to_owned(),
            times: binary,
            target: Duration::from_millis(20),
        },
        Row {
            what: "cargo xtask synth --check (whole process)".to_owned(),
            times: via_cargo,
            target: Duration::from_millis(150),
        },
    ])
}

/// Clones `HEAD` of the checkout into a scratch folder and times its first deploy, to the API
/// answering; then destroys the stack, stops its local env and removes the clone.
fn first_deploy(root: &Path, pattern: Pattern) -> anyhow::Result<Duration> {
    let clone = std::env::temp_dir().join(format!("sagaform-bench-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&clone);
    run_ok(
        Command::new("git")
            .args(["clone", "--quiet"])
            .arg(root)
            .arg(&clone),
    )?;
    let started = Instant::now();
    let deployed = run_ok(
        Command::new(cargo())
            .current_dir(&clone)
            // The clone compiles into its own target/, as a fresh checkout does.
            .env_remove("CARGO_TARGET_DIR")
            .args(["xtask", "deploy", "--pattern", pattern.name()])
            .args(["--env", "local", "--yes"]),
    )
    .and_then(|()| wait_for_api(pattern));
    let elapsed = started.elapsed();
    for args in [
        vec![
            "destroy",
            "--pattern",
            pattern.name(),
            "--env",
            "local",
            "--yes",
        ],
        vec!["local", "stop"],
    ] {
        let _ = Command::new(cargo())
            .current_dir(&clone)
            .env_remove("CARGO_TARGET_DIR")
            .arg("xtask")
            .args(args)
            .stdout(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(&clone);
    deployed?;
    Ok(elapsed)
}

/// Times `cargo xtask deploy` of `pattern` to the local env in the checkout, to the API
/// answering.
fn deploy(root: &Path, pattern: Pattern) -> anyhow::Result<Duration> {
    let started = Instant::now();
    run_ok(
        Command::new(cargo())
            .current_dir(root)
            .args(["xtask", "deploy", "--pattern", pattern.name()])
            .args(["--env", "local", "--yes"])
            .stdout(Stdio::null()),
    )?;
    wait_for_api(pattern)?;
    Ok(started.elapsed())
}

/// Starts `cargo xtask watch`, then `runs` times edits the api source and times until the
/// watch reports the redeploy ready; stops the watch (by its PID) at the end.
fn watch_latency(
    root: &Path,
    pattern: Pattern,
    edit: &SourceEdit,
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    // This very binary, not `cargo xtask`: killing cargo would leave its child watching.
    let exe = std::env::current_exe().context("cannot locate the sagaform binary")?;
    let mut watch = Command::new(exe)
        .current_dir(root)
        .args(["watch", "--pattern", pattern.name()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo xtask watch")?;
    let lines = watch_lines(&mut watch)?;
    let result = (|| {
        wait_for_line(&lines, "watch: watching", Duration::from_secs(300))?;
        let mut times = Vec::new();
        for run in 0..runs {
            // Distinct from the edits of the redeploy measurement, so the binary changes.
            edit.apply(100 + run)?;
            let edited = Instant::now();
            let ready = wait_for_line(&lines, "watch: ", Duration::from_secs(300))?;
            if !ready.starts_with("watch: ") || !ready.contains("changed") {
                bail!("the watch printed {ready:?} instead of noticing the edit");
            }
            let done = wait_for_line(&lines, "watch: ", Duration::from_secs(300))?;
            if !done.starts_with("watch: ready: redeploy") || !done.contains("new code for api") {
                bail!("the watch did not deploy the edit: {done:?}");
            }
            times.push(edited.elapsed());
        }
        Ok(times)
    })();
    let _ = watch.kill();
    let _ = watch.wait();
    result
}

/// The stdout lines of `child`, read on a thread of their own.
fn watch_lines(child: &mut Child) -> anyhow::Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("the watch has no stdout")?;
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    Ok(receive)
}

/// The next line starting with `prefix`, within `patience`.
fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    prefix: &str,
    patience: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return Ok(line),
            Ok(_) => {}
            Err(_) => bail!("the watch printed no `{prefix}` line within {patience:?}"),
        }
    }
}

/// An edit of a source file that can be undone: the original text is kept and written back.
struct SourceEdit {
    path: PathBuf,
    original: String,
}

impl SourceEdit {
    fn new(path: &Path) -> anyhow::Result<SourceEdit> {
        let original = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(SourceEdit {
            path: path.to_path_buf(),
            original,
        })
    }

    /// Writes the original text with the comment line `n` at the top.
    fn apply(&self, n: usize) -> anyhow::Result<()> {
        let text = format!("// bench loop edit {n}\n{}", self.original);
        std::fs::write(&self.path, text)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn restore(&self) -> anyhow::Result<()> {
        std::fs::write(&self.path, &self.original)
            .with_context(|| format!("cannot restore {}", self.path.display()))
    }
}

impl Drop for SourceEdit {
    fn drop(&mut self) {
        // Also when a measurement failed half-way: the checkout is left as it was found.
        if std::fs::read_to_string(&self.path).ok().as_deref() != Some(self.original.as_str()) {
            let _ = std::fs::write(&self.path, &self.original);
        }
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<58} {:>4} {:>10} {:>10} {:>10}  target",
        "measure", "runs", "min", "median", "max"
    );
    for row in rows {
        let mut sorted = row.times.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        let verdict = if median <= row.target { "ok" } else { "OVER" };
        println!(
            "{:<58} {:>4} {:>10} {:>10} {:>10}  <= {} {verdict}",
            row.what,
            sorted.len(),
            human(sorted[0]),
            human(median),
            human(sorted[sorted.len() - 1]),
            human(row.target)
        );
    }
}

/// Milliseconds under a second, seconds above.
fn human(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn run_ok(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Waits until the local API of `pattern` answers (a deploy returns once it does; this also
/// covers the watch, which reports after its own check).
fn wait_for_api(pattern: Pattern) -> anyhow::Result<()> {
    let port = sagaform_local::services::api_port(pattern);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !port_in_use(port) {
        if Instant::now() > deadline {
            bail!("the {pattern} API on port {port} did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn port_in_use(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}
