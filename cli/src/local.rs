//! `cargo xtask local up | start | status | logs | stop`: the arguments and the printed reports
//! of [`LocalEnv`], the local environment behind `--env local` — the emulator (moto), the fake
//! SaaS server and one supervisor per deployed pattern running its real function binaries.
//! `deploy --env local` brings it all up by itself; these commands restart, inspect and stop it.

use clap::Subcommand;
use sagaform_deploy::{Progress, Workspace};
use sagaform_local::emulator::{EmulatorStatus, StopOutcome};
use sagaform_local::{LocalEnv, LocalState, LocalStatus, Stopped};
use sagaform_stacks::Pattern;
use sagaform_stacks::config;

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
    let local = LocalEnv::new(workspace.clone());
    match args.action {
        Action::Up { pattern } => {
            let env = config::load_env(workspace.root(), "local")?;
            local.up(&env, pattern, &Progress::stderr(), &mut |pattern, url| {
                println!("{pattern}: API {url}");
            })?;
        }
        Action::Start => {
            let emulator = local.start_emulator(&Progress::stderr())?;
            if !emulator.started {
                println!("local emulator already running at {}", emulator.endpoint);
            }
        }
        Action::Stop => local.stop(&mut print_stopped)?,
        Action::Status => print_status(&local.status()?),
        Action::Logs {
            pattern,
            transaction,
        } => print_logs(&local, pattern, transaction.as_deref())?,
    }
    Ok(())
}

fn print_stopped(stopped: Stopped) {
    match stopped {
        Stopped::Functions { pattern, pid } => {
            println!("{pattern}: functions stopped (sagaform-local pid {pid})")
        }
        Stopped::FakeSaas(Some(pid)) => println!("fake SaaS stopped (pid {pid})"),
        Stopped::FakeSaas(None) => println!("fake SaaS is not running"),
        Stopped::Emulator(StopOutcome::Stopped { pid }) => {
            println!("local emulator stopped (pid {pid})")
        }
        Stopped::Emulator(StopOutcome::NotRunning) => println!("local emulator is not running"),
        Stopped::Emulator(StopOutcome::StaleRecord { pid }) => {
            println!("local emulator was not running (pid {pid} is gone); stale record removed")
        }
    }
}

fn print_status(status: &LocalStatus) {
    print_emulator(&status.emulator);
    match &status.fake_saas {
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
    for (pattern, state) in &status.supervisors {
        print_supervisor(*pattern, state.as_ref());
    }
}

fn print_emulator(status: &EmulatorStatus) {
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
}

fn print_supervisor(pattern: Pattern, state: Option<&LocalState>) {
    let label = format!("{pattern}");
    match state {
        Some(state) if state.is_running() => {
            println!(
                "{label:<14} API {} (sagaform-local pid {}, stack {}, since {})",
                state.api_url.as_deref().unwrap_or("-"),
                state.pid,
                state.stack_name,
                state.started_at
            );
            for function in &state.functions {
                println!(
                    "               function {}: {} warm process(es) [{}], log {}",
                    function.label(),
                    function.processes.len(),
                    function.pids(),
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

fn print_logs(
    local: &LocalEnv,
    pattern: Option<Pattern>,
    transaction: Option<&str>,
) -> anyhow::Result<()> {
    let lines = local.logs(pattern, transaction)?;
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
