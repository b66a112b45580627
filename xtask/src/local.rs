//! `cargo xtask local up | start | status | logs | stop`: the local environment behind
//! `--env local` — the emulator (moto), the fake SaaS server and one supervisor per deployed
//! pattern running its real function binaries. `deploy --env local` brings it all up by itself;
//! these commands restart, inspect and stop it.

use anyhow::Context;
use clap::Subcommand;
use sagaform_deploy::local::{self, StopOutcome};
use sagaform_deploy::local_services::{self, LocalBinaries};
use sagaform_deploy::{Progress, Workspace};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::{self, EnvConfig, StateStoreKind};

use crate::deploy::runtime;
use crate::workspace;

/// Arguments of `cargo xtask local`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Where things run: the emulator on 127.0.0.1:4566 (SAGAFORM_LOCAL_PORT overrides; state in .local/emulator.json), the fake SaaS on the address env/local.toml gives (.local/fake-saas.json), the HTTP API of each pattern on a fixed port (orchestrator 9301, sqs 9302, stepfunctions 9303; state and function logs in .local/<pattern>/).\nExit codes: 0 ok, 1 error, 2 usage."
)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// (Re)start the fake SaaS and the functions of deployed stacks (deploy does this itself).
    Up {
        /// Only this pattern; default: every pattern deployed locally.
        #[arg(long)]
        pattern: Option<Pattern>,
    },
    /// Start the emulator if it is not running (deploys do this by themselves).
    Start,
    /// Stop everything this tool started, by PID: supervisors, fake SaaS, emulator (every
    /// emulated resource is lost).
    Stop,
    /// Show what runs where: emulator, fake SaaS, each pattern's functions, API URL and PIDs.
    Status,
    /// Print the JSON log lines of every local function, oldest first.
    Logs {
        /// Only the functions of this pattern.
        #[arg(long)]
        pattern: Option<Pattern>,
        /// Only lines about this transaction (its correlation id).
        #[arg(long)]
        transaction: Option<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let workspace = Workspace::new(workspace::root()?);
    match args.action {
        Action::Up { pattern } => {
            let env = config::load_env(workspace.root(), "local")?;
            let progress = Progress::stderr();
            let emulator = local::ensure_running(&workspace, &progress)?;
            let patterns: Vec<Pattern> = match pattern {
                Some(pattern) => vec![pattern],
                None => Pattern::ALL
                    .into_iter()
                    .filter(|p| workspace.outputs_path(*p, &env.name).exists())
                    .collect(),
            };
            anyhow::ensure!(
                !patterns.is_empty(),
                "nothing is deployed locally: run `cargo xtask deploy --pattern <pattern> --env local` first"
            );
            let binaries = local_services::build_binaries(&workspace, &progress)?;
            for pattern in patterns {
                let url = bring_up(
                    &workspace,
                    &env,
                    pattern,
                    &emulator.endpoint,
                    &binaries,
                    false,
                    &progress,
                )?;
                println!("{pattern}: API {url}");
            }
        }
        Action::Start => {
            let emulator = local::ensure_running(&workspace, &Progress::stderr())?;
            if !emulator.started {
                println!("local emulator already running at {}", emulator.endpoint);
            }
        }
        Action::Stop => stop_all(&workspace)?,
        Action::Status => print_status(&workspace)?,
        Action::Logs {
            pattern,
            transaction,
        } => print_logs(&workspace, pattern, transaction.as_deref())?,
    }
    Ok(())
}

/// Starts what the deployed local stack of `pattern` needs besides the emulator: its database
/// (orchestrator on Aurora), the fake SaaS and its supervisor; records the local API URL in the
/// outputs file and returns it.
///
/// `new_stack` says the stack was just created: a database left from an earlier stack of the
/// same name (the emulator forgets its stacks when it stops, the PostgreSQL server does not) is
/// dropped first, so the new stack starts empty as its emulated tables do.
pub fn bring_up(
    workspace: &Workspace,
    env: &EnvConfig,
    pattern: Pattern,
    moto_endpoint: &str,
    binaries: &LocalBinaries,
    new_stack: bool,
    progress: &Progress,
) -> anyhow::Result<String> {
    if env.store(pattern) == StateStoreKind::Aurora {
        let path = workspace.template_path(pattern, &env.name);
        let body = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(url) = local_services::local_database_url(&body, &path.display().to_string())? {
            if new_stack && runtime()?.block_on(local_services::drop_database(&url))? {
                progress.line(format!(
                    "local services: dropped database {url}, left from an earlier stack"
                ));
            }
            let created = runtime()?.block_on(local_services::ensure_database(&url))?;
            if created {
                progress.line(format!("local services: created database {url}"));
            }
        }
    }
    local_services::ensure_fake_saas(
        workspace,
        binaries,
        local_services::fake_saas_address(env)?,
        progress,
    )?;
    let supervisor = local_services::restart_supervisor(
        workspace,
        binaries,
        pattern,
        env,
        moto_endpoint,
        progress,
    )?;
    local_services::record_api_url(workspace, pattern, &env.name, &supervisor.api_url)?;
    Ok(supervisor.api_url)
}

fn stop_all(workspace: &Workspace) -> anyhow::Result<()> {
    for pattern in Pattern::ALL {
        if let Some(pid) = local_services::stop_supervisor(workspace, pattern)? {
            println!("{pattern}: functions stopped (sagaform-local pid {pid})");
        }
    }
    match local_services::stop_fake_saas(workspace)? {
        Some(pid) => println!("fake SaaS stopped (pid {pid})"),
        None => println!("fake SaaS is not running"),
    }
    match local::stop(workspace)? {
        StopOutcome::Stopped { pid } => println!("local emulator stopped (pid {pid})"),
        StopOutcome::NotRunning => println!("local emulator is not running"),
        StopOutcome::StaleRecord { pid } => {
            println!("local emulator was not running (pid {pid} is gone); stale record removed")
        }
    }
    Ok(())
}

fn print_status(workspace: &Workspace) -> anyhow::Result<()> {
    let status = local::status(workspace)?;
    let endpoint = sagaform_tools::moto::endpoint(status.port);
    match (status.running, &status.recorded) {
        (true, Some(state)) if state.port == status.port => println!(
            "emulator       running at {endpoint} (pid {}, log {})",
            state.pid,
            state.log.display()
        ),
        (true, _) => {
            println!(
                "emulator       running at {endpoint} (not started by cargo xtask: pid unknown)"
            )
        }
        (false, Some(state)) => println!(
            "emulator       not running at {endpoint} (last started as pid {}, log {})",
            state.pid,
            state.log.display()
        ),
        (false, None) => println!("emulator       not running at {endpoint}"),
    }
    match local_services::fake_saas_record(workspace) {
        Some(record) if record.is_running() => println!(
            "fake SaaS      running at {} (pid {}, log {})",
            record.url(),
            record.pid,
            record.log.display()
        ),
        Some(record) => println!(
            "fake SaaS      not running (last started as pid {}, log {})",
            record.pid,
            record.log.display()
        ),
        None => println!("fake SaaS      not running"),
    }
    for pattern in Pattern::ALL {
        let label = format!("{pattern}");
        match local_services::supervisor_state(workspace, pattern)? {
            Some(state) if state.is_running() => {
                println!(
                    "{label:<14} API {} (sagaform-local pid {}, stack {}, since {})",
                    state.api_url.as_deref().unwrap_or("-"),
                    state.pid,
                    state.stack_name,
                    state.started_at
                );
                for function in &state.functions {
                    let pids: Vec<String> = function
                        .processes
                        .iter()
                        .map(|p| p.pid.to_string())
                        .collect();
                    println!(
                        "               function {} ({}): {} warm process(es) [{}], log {}",
                        function.name,
                        function.role.as_deref().unwrap_or("-"),
                        function.processes.len(),
                        pids.join(" "),
                        function.log.display()
                    );
                }
            }
            Some(state) => println!(
                "{label:<14} not running (stale state of pid {}; `cargo xtask local up --pattern {pattern}` restarts it)",
                state.pid
            ),
            None => println!("{label:<14} not running"),
        }
    }
    Ok(())
}

fn print_logs(
    workspace: &Workspace,
    pattern: Option<Pattern>,
    transaction: Option<&str>,
) -> anyhow::Result<()> {
    let patterns: Vec<Pattern> = pattern.map_or(Pattern::ALL.to_vec(), |p| vec![p]);
    let mut lines = Vec::new();
    for pattern in patterns {
        let state_dir = local_services::supervisor_dir(workspace, pattern);
        let log_dir = local_services::supervisor_state(workspace, pattern)?
            .map(|s| s.log_dir)
            .unwrap_or_else(|| state_dir.join("logs"));
        let found = sagaform_local::logs::read_logs(&log_dir, transaction)
            .with_context(|| format!("cannot read the logs in {}", log_dir.display()))?;
        lines.extend(found);
    }
    lines.sort_by(|a, b| a.time().cmp(b.time()));
    for line in &lines {
        println!("{} {}", line.function, line.entry);
    }
    if lines.is_empty() {
        eprintln!(
            "no log lines{}",
            transaction.map_or(String::new(), |t| format!(" mention transaction {t}"))
        );
    }
    Ok(())
}
