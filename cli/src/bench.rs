//! `cargo xtask bench synth | deploy | soak | loop`. `synth` prints how long synthesis takes,
//! in-process and as a whole `cargo xtask synth --check` process, so regressions are visible
//! without a timed test (targets: 10 ms in-process for every template and runbook, 20 ms for
//! the built binary, 150 ms for the whole `cargo xtask synth --check`), and how synthesis grows
//! with the number of sagas and steps; `deploy`, `soak` and `loop` live in their own modules.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use sagaform_saga::{Action, PURCHASE, Saga, Step};
use sagaform_stacks::Pattern;
use sagaform_stacks::synth::{self, Selection};

use crate::workspace;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Synthesis of every pattern x env: in-process, and the `synth --check` process.
    Synth {
        /// Timed runs of each measurement (after one untimed warm-up run).
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// First deploy, no-op redeploy and destroy of every pattern on a fresh local emulator.
    Deploy(crate::bench_deploy::Args),
    /// Many sagas with faults and duplicates through each pattern's local environment.
    Soak(crate::bench_soak::Args),
    /// The edit-to-running loop: first deploy, redeploys, watch and synthesis in one table.
    Loop(crate::bench_loop::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Synth { runs } => bench_synth(runs.max(1)),
        What::Deploy(args) => crate::bench_deploy::run(args),
        What::Soak(args) => crate::bench_soak::run(args),
        What::Loop(args) => crate::bench_loop::run(args),
    }
}

fn bench_synth(runs: usize) -> anyhow::Result<()> {
    let root = workspace::root()?;
    let all = Selection::all();

    // In-process: config loading, building, YAML and Markdown rendering; no file writes.
    let warm_up = synth::generate(&root, &all)?;
    let bytes: usize = warm_up.iter().map(|f| f.contents.len()).sum();
    let in_process = time_runs(runs, || {
        let files = synth::generate(&root, &all)?;
        std::hint::black_box(files);
        Ok(())
    })?;
    println!(
        "in-process synth of {} files ({} KiB), {runs} runs:",
        warm_up.len(),
        bytes / 1024
    );
    report(&in_process, Duration::from_millis(10));
    if let Some(peak) = peak_rss_kib() {
        println!(
            "  peak resident memory of this process: {} MiB",
            peak / 1024
        );
    }

    // The built binary run directly: process start, config, synthesis and comparing with disk.
    let exe = xtask_binary()?;
    let direct = time_process(runs, &root, Command::new(&exe).args(["synth", "--check"]))?;
    println!(
        "process `{} synth --check`, {runs} runs:",
        display_relative(&exe, &root)
    );
    report(&direct, Duration::from_millis(20));

    // Through cargo, as people and CI type it: adds cargo's own start-up and freshness check.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let via_cargo = time_process(
        runs,
        &root,
        Command::new(cargo).args(["xtask", "synth", "--check"]),
    )?;
    println!("process `cargo xtask synth --check` (warm build), {runs} runs:");
    report(&via_cargo, Duration::from_millis(150));

    println!("growth with generated sagas (every pattern for env staging, median of 5 runs):");
    for point in synthesis_curve(&root)? {
        println!("  {point}");
    }
    Ok(())
}

/// One point of the synthesis curve: `sagas` sagas of `steps` steps each, synthesized for
/// every pattern.
pub(crate) struct CurvePoint {
    pub sagas: usize,
    pub steps: usize,
    pub median: Duration,
}

impl std::fmt::Display for CurvePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let units = (self.sagas * self.steps) as f64;
        write!(
            f,
            "{:>3} saga(s) x {:>3} step(s): {:>9}  ({:.3} ms per saga-step)",
            self.sagas,
            self.steps,
            ms(self.median),
            self.median.as_secs_f64() * 1000.0 / units
        )
    }
}

/// Synthesis time for 1, 10 and 100 generated sagas of 10 steps, and for one saga of 1, 10 and
/// 100 steps: linear growth shows as a flat time per saga-step.
pub(crate) fn synthesis_curve(root: &Path) -> anyhow::Result<Vec<CurvePoint>> {
    let env = sagaform_stacks::config::load_env(root, "staging")?;
    let shapes = [(1, 10), (10, 10), (100, 10), (1, 1), (1, 100)];
    let mut points = Vec::new();
    for (sagas, steps) in shapes {
        let generated: Vec<Saga> = (0..sagas).map(|i| generated_saga(i, steps)).collect();
        let mut times = time_runs(5, || {
            for saga in &generated {
                for pattern in Pattern::ALL {
                    std::hint::black_box(sagaform_stacks::synthesize_saga(pattern, &env, saga)?);
                }
            }
            Ok(())
        })?;
        times.sort();
        points.push(CurvePoint {
            sagas,
            steps,
            median: times[times.len() / 2],
        });
    }
    Ok(points)
}

/// A saga of `steps` steps over the example's three services (the ones every env configures),
/// each step with its own action and compensation names.
fn generated_saga(index: usize, steps: usize) -> Saga {
    const SERVICES: [&str; 3] = ["inventory", "payments", "entitlements"];
    let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
    let template = PURCHASE.steps[0];
    let steps: Vec<Step> = (0..steps)
        .map(|n| Step {
            name: leak(format!("step_{n}")),
            service: SERVICES[n % SERVICES.len()],
            action: Action {
                name: leak(format!("do_{n}")),
            },
            compensation: Action {
                name: leak(format!("undo_{n}")),
            },
            ..template
        })
        .collect();
    Saga {
        name: leak(format!("generated_{index}")),
        steps: Box::leak(steps.into_boxed_slice()),
    }
}

/// The `xtask` binary `cargo xtask synth` runs (next to this one in the target folder), built
/// first so that the measurement does not include its compilation.
pub(crate) fn xtask_binary() -> anyhow::Result<std::path::PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--package", "xtask"])
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build --package xtask failed ({status})");
    }
    let this = std::env::current_exe().context("cannot locate this binary")?;
    Ok(this.with_file_name("xtask"))
}

pub(crate) fn time_runs(
    runs: usize,
    mut body: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        body()?;
        times.push(start.elapsed());
    }
    Ok(times)
}

pub(crate) fn time_process(
    runs: usize,
    root: &Path,
    command: &mut Command,
) -> anyhow::Result<Vec<Duration>> {
    command
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut stale_warned = false;
    let mut run_once = || -> anyhow::Result<()> {
        let output = command
            .output()
            .with_context(|| format!("cannot run {command:?}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Stale templates still cost a full synthesis and comparison, so the timing stands;
        // any other failure (a bad env file) stops early and would flatter the figures.
        if !output.status.success() && !stderr.contains("out of date") {
            bail!(
                "{command:?} failed ({}), fix that before benchmarking: {}",
                output.status,
                stderr.trim()
            );
        }
        if !output.status.success() && !stale_warned {
            println!(
                "  note: templates/ is stale (run `cargo xtask synth`); timing the check anyway"
            );
            stale_warned = true;
        }
        Ok(())
    };
    run_once()?;
    time_runs(runs, run_once)
}

fn report(times: &[Duration], target: Duration) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let verdict = if median < target { "within" } else { "OVER" };
    println!(
        "  median {}  min {}  max {}  ({verdict} the {} target)",
        ms(median),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1]),
        ms(target)
    );
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn display_relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Peak resident set size of this process in KiB (Linux only; `None` elsewhere).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
