//! `cargo xtask bench deploy`: prints how long the stack lifecycle takes on the local emulator,
//! compilation excluded: first deploy of each pattern (bootstrap and uploads included), no-op
//! redeploy (zero uploads expected) and destroy. Targets from the issue: first deploy under
//! 30 s, no-op redeploy under 3 s.
//!
//! Every run uses a fresh moto on a free port and a scratch copy of `env/` and `templates/`, so
//! it never touches the checkout's `.local/` or a running local environment.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sagaform_deploy::confirm::AssumeYes;
use sagaform_deploy::deploy::{DeployOptions, DeployResult, deploy_pattern};
use sagaform_deploy::destroy::{DestroyOptions, DestroyResult, destroy_pattern};
use sagaform_deploy::{
    Artifact, ConnectOptions, DeployError, PatternEnv, Progress, Session, Workspace, build,
};
use sagaform_stacks::Pattern;
use sagaform_stacks::config;
use sagaform_stacks::synth::{self, Selection};
use sagaform_tools::Tools;
use sagaform_tools::moto::MotoServer;

use crate::deploy::runtime;
use crate::workspace;

/// Arguments of `cargo xtask bench deploy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs per pattern, each on a fresh emulator.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Size of each synthetic function package, in MB (a built function is a few MB).
    #[arg(long, default_value_t = 5)]
    package_mb: usize,
}

#[derive(Debug, Default)]
struct Timings {
    first_deploy: Vec<Duration>,
    noop_redeploy: Vec<Duration>,
    destroy: Vec<Duration>,
    noop_uploads: usize,
    resources: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace::root()?;
    let tools = Tools::ensure().context("installing the pinned tools")?;
    let scratch = root
        .join("target")
        .join(format!("bench-deploy-{}", std::process::id()));
    let workspace = scratch_workspace(&Workspace::new(&root), &scratch)?;
    let env = config::load_env(workspace.root(), "local")?;
    let runtime = runtime()?;
    println!(
        "deploy lifecycle on a fresh local emulator (moto), {} run(s) per pattern, synthetic {} MB packages, compilation excluded:",
        args.runs.max(1),
        args.package_mb
    );
    let bench = Bench {
        workspace: &workspace,
        env: &env,
        tools: &tools,
        runtime: &runtime,
        args: &args,
    };
    let result = Pattern::ALL
        .into_iter()
        .try_for_each(|pattern| bench.pattern(pattern));
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// A copy of the checkout's inputs in `scratch`, with templates synthesized afresh: the figures
/// are about deploying, whatever state the checkout's templates are in.
fn scratch_workspace(checkout: &Workspace, scratch: &Path) -> anyhow::Result<Workspace> {
    let workspace = checkout.copy_inputs_to(scratch)?;
    let all = Selection::all();
    synth::write(
        workspace.root(),
        &synth::generate(workspace.root(), &all)?,
        &all,
    )?;
    Ok(workspace)
}

/// What every measured pattern shares.
struct Bench<'a> {
    workspace: &'a Workspace,
    env: &'a config::EnvConfig,
    tools: &'a Tools,
    runtime: &'a tokio::runtime::Runtime,
    args: &'a Args,
}

impl Bench<'_> {
    /// Measures `--runs` lifecycles of `pattern`, each on a fresh emulator, and prints them.
    fn pattern(&self, pattern: Pattern) -> anyhow::Result<()> {
        let functions = build::functions_for(self.workspace, pattern, &self.env.name)?;
        let artifacts: Vec<Artifact> = functions
            .iter()
            .map(|f| Artifact::from_bootstrap(f, &synthetic_binary(f, self.args.package_mb << 20)))
            .collect::<Result<_, _>>()?;
        let mut timings = Timings::default();
        for _ in 0..self.args.runs.max(1) {
            let moto = MotoServer::start(self.tools)?;
            let target = PatternEnv {
                workspace: self.workspace,
                env: self.env,
                pattern,
            };
            self.runtime
                .block_on(measure(target, &artifacts, &moto, &mut timings))?;
        }
        println!(
            "  {pattern} ({} functions, {} resources):",
            functions.len(),
            timings.resources
        );
        report(
            "first deploy",
            &timings.first_deploy,
            Some(Duration::from_secs(30)),
        );
        report(
            "no-op redeploy",
            &timings.noop_redeploy,
            Some(Duration::from_secs(3)),
        );
        println!(
            "    no-op redeploy uploads: {} (target 0)",
            timings.noop_uploads
        );
        report("destroy", &timings.destroy, None);
        Ok(())
    }
}

/// Deploys, redeploys unchanged and destroys `target` on `moto`, adding the times to `timings`.
async fn measure(
    target: PatternEnv<'_>,
    artifacts: &[Artifact],
    moto: &MotoServer,
    timings: &mut Timings,
) -> anyhow::Result<()> {
    let pattern = target.pattern;
    let (progress, _lines) = Progress::capture();
    let options = DeployOptions::for_env(target.env);
    let session = Session::connect(
        target.env,
        &ConnectOptions {
            endpoint_url: Some(moto.endpoint()),
        },
    )
    .await?;
    let deploy = || deploy_pattern(&session, target, artifacts, &options, &AssumeYes, &progress);

    let first = timed(&mut timings.first_deploy, deploy()).await?;
    if first.result != DeployResult::Created {
        bail!(
            "first deploy of {pattern} did not create the stack: {:?}",
            first.result
        );
    }
    timings.resources = first.changes.len();

    let again = timed(&mut timings.noop_redeploy, deploy()).await?;
    if again.result != DeployResult::NoChanges {
        bail!(
            "redeploy of unchanged {pattern} was not a no-op: {:?}",
            again.result
        );
    }
    timings.noop_uploads += again.uploads.iter().filter(|u| u.uploaded).count();

    let destroy_options = DestroyOptions::default();
    let destroy = destroy_pattern(&session, target, &destroy_options, &AssumeYes, &progress);
    let destroyed = timed(&mut timings.destroy, destroy).await?;
    if destroyed.result != DestroyResult::Destroyed {
        bail!("destroy of {pattern} found nothing to destroy");
    }
    Ok(())
}

/// Runs `operation`, adding how long it took to `samples`.
async fn timed<T>(
    samples: &mut Vec<Duration>,
    operation: impl Future<Output = Result<T, DeployError>>,
) -> Result<T, DeployError> {
    let start = Instant::now();
    let result = operation.await?;
    samples.push(start.elapsed());
    Ok(result)
}

/// Bytes that compress like a binary would not matter (packages are stored), but differ per
/// function so each gets its own key.
fn synthetic_binary(function: &str, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size);
    let mut state: u64 =
        0x9E37_79B9_7F4A_7C15 ^ function.bytes().fold(0, |h, b| h * 31 + u64::from(b));
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

fn report(what: &str, samples: &[Duration], target: Option<Duration>) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = sorted[sorted.len() / 2];
    let verdict = target.map_or_else(String::new, |target| {
        format!(
            "  (target < {} ms: {})",
            target.as_millis(),
            if median < target { "met" } else { "MISSED" }
        )
    });
    println!(
        "    {what:<15} min {:>8.0} ms  median {:>8.0} ms  max {:>8.0} ms{verdict}",
        ms(sorted[0]),
        ms(median),
        ms(sorted[sorted.len() - 1]),
    );
}
