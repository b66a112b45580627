//! `sagaform-local`: runs the local compute of a deployed stack on the emulator (see the
//! library docs) and reports on or stops a running one. `cargo xtask local ...` drives it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use sagaform_local::event_source::SqsMapping;
use sagaform_local::{LocalState, UpOptions, logs, state, supervisor};

#[derive(Debug, Parser)]
#[command(about = "Local compute for sagaform's emulated environment")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves a deployed stack's functions, HTTP API, SQS mappings and Step Functions Tasks
    /// until SIGTERM or SIGINT. A previous instance in the same state folder is stopped first.
    Up(UpArgs),
    /// Shows what runs where (exit code 3 when nothing runs).
    Status {
        /// Folder given to `up`.
        #[arg(long)]
        state_dir: PathBuf,
        /// Prints the state file as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints the functions' JSON log lines, oldest first.
    Logs {
        /// Folder given to `up`.
        #[arg(long)]
        state_dir: PathBuf,
        /// Only lines of this transaction.
        #[arg(long)]
        transaction: Option<String>,
    },
    /// Stops a running instance by PID and removes its state file.
    Stop {
        /// Folder given to `up`.
        #[arg(long)]
        state_dir: PathBuf,
    },
}

// The arguments of `up` (a plain comment: a doc comment would replace the help of `up`).
#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Pattern of the stack (orchestrator, sqs, stepfunctions).
    #[arg(long, required_unless_present = "stack")]
    pattern: Option<String>,
    /// Environment of the stack.
    #[arg(long, default_value = "local")]
    env: String,
    /// Stack name, instead of sagaform-<pattern>-<env>.
    #[arg(long)]
    stack: Option<String>,
    /// The emulator's endpoint.
    #[arg(long)]
    moto_endpoint: String,
    /// Region of the stack.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Folder of the state file, extracted binaries and logs.
    #[arg(long)]
    state_dir: PathBuf,
    /// Template to read routes from instead of the deployed one.
    #[arg(long)]
    template: Option<PathBuf>,
    /// KEY=PATH: run PATH for the function with this name, logical id or role.
    #[arg(long = "bootstrap", value_parser = parse_bootstrap)]
    bootstraps: Vec<(String, PathBuf)>,
    /// HTTP API port (0: any).
    #[arg(long, default_value_t = 0)]
    api_port: u16,
    /// Lambda Invoke API port (0: any).
    #[arg(long, default_value_t = 0)]
    invoke_port: u16,
    /// Process cap per function.
    #[arg(long, default_value_t = supervisor::DEFAULT_MAX_PROCESSES)]
    max_processes: usize,
}

impl UpArgs {
    /// The options these arguments ask for.
    fn into_options(self) -> UpOptions {
        let mut options = UpOptions::for_pattern(
            self.pattern.as_deref().unwrap_or_default(),
            &self.env,
            &self.moto_endpoint,
            self.state_dir,
        );
        if let Some(stack) = self.stack {
            options.stack_name = stack;
        }
        options.region = self.region;
        options.template = self.template;
        options.bootstraps = self.bootstraps.into_iter().collect::<BTreeMap<_, _>>();
        options.api_port = self.api_port;
        options.invoke_port = self.invoke_port;
        options.max_processes = self.max_processes.max(1);
        options
    }
}

fn parse_bootstrap(text: &str) -> Result<(String, PathBuf), String> {
    let (key, path) = text
        .split_once('=')
        .ok_or_else(|| format!("--bootstrap {text}: expected KEY=PATH"))?;
    Ok((key.to_owned(), PathBuf::from(path)))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SAGAFORM_LOCAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Up(args) => up(args.into_options()),
        Command::Status { state_dir, json } => status(&state_dir, json),
        Command::Logs {
            state_dir,
            transaction,
        } => print_logs(&state_dir, transaction.as_deref()),
        Command::Stop { state_dir } => stop(&state_dir),
    }
}

/// `up`: serves until SIGTERM or SIGINT.
fn up(options: UpOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    runtime.block_on(sagaform_local::run(options, |state| {
        // One JSON line on stdout: what a caller waiting for readiness parses.
        println!("{}", serde_json::to_string(state).unwrap_or_default());
    }))?;
    Ok(())
}

/// `status`: exits with code 3 when nothing runs.
fn status(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let Some(state) = LocalState::read(state_dir)? else {
        eprintln!(
            "nothing runs (no {})",
            LocalState::path(state_dir).display()
        );
        std::process::exit(3);
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        print_status(&state);
    }
    if !state.is_running() {
        std::process::exit(3);
    }
    Ok(())
}

/// `logs`.
fn print_logs(state_dir: &Path, transaction: Option<&str>) -> anyhow::Result<()> {
    let log_dir = LocalState::read(state_dir)?
        .map(|s| s.log_dir)
        .unwrap_or_else(|| state_dir.join("logs"));
    for line in logs::read_logs(&log_dir, transaction)? {
        println!("{} {}", line.function, line.entry);
    }
    Ok(())
}

/// `stop`.
fn stop(state_dir: &Path) -> anyhow::Result<()> {
    let report = state::stop(state_dir, supervisor::STOP_GRACE)?;
    if !report.had_state {
        println!("nothing to stop");
        return Ok(());
    }
    match report.supervisor {
        Some(pid) => println!("stopped sagaform-local (pid {pid})"),
        None => println!("sagaform-local was not running; removed its state file"),
    }
    if !report.processes.is_empty() {
        println!("killed leftover function processes {:?}", report.processes);
    }
    Ok(())
}

fn print_status(state: &LocalState) {
    let running = if state.is_running() {
        "running"
    } else {
        "not running (stale state)"
    };
    println!(
        "sagaform-local pid {} {running}, stack {}",
        state.pid, state.stack_name
    );
    println!("  emulator    {}", state.moto_endpoint);
    if let Some(api) = &state.api_url {
        println!("  HTTP API    {api}");
    }
    println!(
        "  Invoke API  {}{}",
        state.invoke_url,
        if state.invoke_forwarding {
            " (moto forwards Lambda invokes here)"
        } else {
            ""
        }
    );
    for function in &state.functions {
        println!(
            "  function {}: {} process(es) [{}] of {}, timeout {} s, log {}",
            function.label(),
            function.processes.len(),
            function.pids(),
            function.max_processes,
            function.timeout_seconds,
            function.log.display()
        );
    }
    for route in &state.routes {
        println!("  route {} -> {}", route.route_key, route.function);
    }
    for mapping in &state.event_source_mappings {
        print_mapping(mapping);
    }
}

fn print_mapping(mapping: &SqsMapping) {
    println!(
        "  queue {} -> {} (batch {}, window {} s, visibility {} s, max concurrency {})",
        mapping.queue_url,
        mapping.function,
        mapping.batch_size,
        mapping.batching_window_seconds,
        mapping
            .visibility_timeout_seconds
            .map_or("?".to_owned(), |v| v.to_string()),
        mapping
            .maximum_concurrency
            .map_or("-".to_owned(), |v| v.to_string()),
    );
}
