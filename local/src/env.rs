//! The local environment behind `--env local`, as one type: [`LocalEnv`] brings up, reports on
//! and stops everything a checkout's local stacks need besides the files the deploy writes —
//! the emulator ([`emulator`]), the fake SaaS server and one supervisor per deployed pattern
//! ([`services`]), and the local PostgreSQL databases ([`database`]).
//!
//! `cargo xtask local` drives it directly; the deploy library reaches it through
//! [`sagaform_deploy::workflow::LocalRuntime`], so deploying never starts a process or talks to
//! PostgreSQL itself. The e2e harness brings up its stacks with the same steps
//! ([`LocalEnv::prepare_database`], [`LocalEnv::serve_functions`]) on an emulator of its own
//! ([`LocalEnv::with_private_emulator`]), so stacks run side by side.

use std::path::PathBuf;
use std::sync::Arc;

use sagaform_deploy::workflow::{LocalRuntime, StackChange};
use sagaform_deploy::{DeployError, Progress, Workspace};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::EnvConfig;
use sagaform_tools::Tools;
use sagaform_tools::moto::MotoServer;

use crate::database::LocalDatabase;
use crate::emulator::{self, Emulator, EmulatorStatus, StopOutcome};
use crate::logs::{self, LogLine};
use crate::services::{self, FakeSaasRecord, LocalBinaries};
use crate::supervisor::{LocalEnvironment, UpOptions};
use crate::{LocalError, LocalState};

/// The local environment of one checkout (its state lives in `<checkout>/.local/`).
#[derive(Debug, Clone)]
pub struct LocalEnv {
    workspace: Workspace,
    emulator: EmulatorChoice,
}

/// Which emulator a [`LocalEnv`] deploys to.
#[derive(Debug, Clone)]
enum EmulatorChoice {
    /// The checkout's: on the fixed local port, detached, shared by every command until
    /// `cargo xtask local stop` ([`emulator`]).
    Checkout,
    /// Its own, on a free port; it stops when the last clone of the environment is dropped.
    Private(Arc<MotoServer>),
}

/// What runs, for `cargo xtask local status`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalStatus {
    /// The emulator.
    pub emulator: EmulatorStatus,
    /// The fake SaaS server recorded, running or not.
    pub fake_saas: Option<FakeSaasRecord>,
    /// Each pattern with the state its supervisor recorded, if any.
    pub supervisors: Vec<(Pattern, Option<LocalState>)>,
}

/// One thing [`LocalEnv::stop`] stopped or found stopped, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The functions of a pattern: its supervisor's PID.
    Functions {
        /// The pattern.
        pattern: Pattern,
        /// The supervisor's PID.
        pid: u32,
    },
    /// The fake SaaS server: its PID, `None` when it was not running.
    FakeSaas(Option<u32>),
    /// The emulator.
    Emulator(StopOutcome),
}

impl LocalEnv {
    /// The local environment of the checkout at `workspace`, on the checkout's emulator.
    pub fn new(workspace: Workspace) -> LocalEnv {
        LocalEnv {
            workspace,
            emulator: EmulatorChoice::Checkout,
        }
    }

    /// The local environment of the checkout at `workspace` on an emulator of its own, started
    /// now on a free loopback port (blocking until it answers) and stopped when the last clone
    /// of the environment is dropped; installs the pinned tools on first use.
    pub fn with_private_emulator(workspace: Workspace) -> Result<LocalEnv, LocalError> {
        let tools = Tools::ensure().map_err(|e| LocalError::Emulator(e.to_string()))?;
        let server = MotoServer::start(&tools).map_err(|e| LocalError::Emulator(e.to_string()))?;
        Ok(LocalEnv {
            workspace,
            emulator: EmulatorChoice::Private(Arc::new(server)),
        })
    }

    /// The checkout.
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    /// Starts the checkout's emulator when it is not running (installing the pinned tools on
    /// first use); a private emulator runs already.
    pub fn start_emulator(&self, progress: &Progress) -> Result<Emulator, LocalError> {
        match &self.emulator {
            EmulatorChoice::Checkout => emulator::ensure_running(&self.workspace, progress),
            EmulatorChoice::Private(server) => Ok(Emulator {
                port: server.port(),
                endpoint: server.endpoint(),
                pid: None,
                started: false,
            }),
        }
    }

    /// `cargo xtask local up`: (re)starts the fake SaaS and the functions of `pattern`, or of
    /// every pattern deployed locally; `on_up` hears each pattern's API URL once it serves.
    pub fn up(
        &self,
        env: &EnvConfig,
        pattern: Option<Pattern>,
        progress: &Progress,
        on_up: &mut dyn FnMut(Pattern, &str),
    ) -> Result<(), LocalError> {
        let emulator = self.start_emulator(progress)?;
        let patterns: Vec<Pattern> = match pattern {
            Some(pattern) => vec![pattern],
            None => Pattern::ALL
                .into_iter()
                .filter(|p| self.workspace.outputs_path(*p, &env.name).exists())
                .collect(),
        };
        if patterns.is_empty() {
            return Err(LocalError::NothingDeployed);
        }
        let binaries = services::build_binaries(&self.workspace, progress)?;
        for pattern in patterns {
            let url =
                self.start_stack(env, pattern, &emulator.endpoint, &binaries, false, progress)?;
            on_up(pattern, &url);
        }
        Ok(())
    }

    /// Starts what the deployed stack of `pattern` needs besides the emulator: its database
    /// (orchestrator on Aurora), the fake SaaS and its supervisor; records the local API URL in
    /// the outputs file and returns it.
    ///
    /// `new_stack` says the stack was just created: a database left from an earlier stack of
    /// the same name (the emulator forgets its stacks when it stops, the PostgreSQL server does
    /// not) is dropped first, so the new stack starts empty as its emulated tables do.
    pub fn start_stack(
        &self,
        env: &EnvConfig,
        pattern: Pattern,
        emulator_endpoint: &str,
        binaries: &LocalBinaries,
        new_stack: bool,
        progress: &Progress,
    ) -> Result<String, LocalError> {
        block_on(self.prepare_database(env, pattern, new_stack, progress))?;
        let workspace = &self.workspace;
        services::ensure_fake_saas(
            workspace,
            binaries,
            services::fake_saas_address(env)?,
            progress,
        )?;
        let supervisor = services::restart_supervisor(
            workspace,
            binaries,
            pattern,
            env,
            emulator_endpoint,
            progress,
        )?;
        services::record_api_url(workspace, pattern, &env.name, &supervisor.api_url)?;
        Ok(supervisor.api_url)
    }

    /// Creates the database of the stack of `pattern` when its store is Aurora (the
    /// orchestrator's store is a database of the local PostgreSQL server), applies its schema
    /// migrations and grants the application role, before any function connects; returns it,
    /// `None` when the stack has none.
    ///
    /// `new_stack` says the stack is new: a database left from an earlier stack of the same
    /// name (the emulator forgets its stacks when it stops, the PostgreSQL server does not) is
    /// dropped first, so the new stack starts empty as its emulated tables do.
    pub async fn prepare_database(
        &self,
        env: &EnvConfig,
        pattern: Pattern,
        new_stack: bool,
        progress: &Progress,
    ) -> Result<Option<LocalDatabase>, LocalError> {
        let Some(database) = LocalDatabase::of_stack(&self.workspace, env, pattern)? else {
            return Ok(None);
        };
        let url = database.url();
        if new_stack && database.drop_all().await? {
            progress.line(format!(
                "local services: dropped database {url}, left from an earlier stack"
            ));
        }
        if database.ensure().await? {
            progress.line(format!("local services: created database {url}"));
        }
        let applied = database.migrate().await?;
        if !applied.is_empty() {
            progress.line(format!(
                "local services: database {url}: applied migrations {applied:?}"
            ));
        }
        Ok(Some(database))
    }

    /// Serves the functions of the stack of `pattern`, deployed to the emulator at
    /// `emulator_endpoint`, in this process on free ports (what the detached supervisor of
    /// [`LocalEnv::start_stack`] does in its own process, on the pattern's fixed API port); its
    /// state and function logs are where that supervisor keeps them.
    pub async fn serve_functions(
        &self,
        env: &EnvConfig,
        pattern: Pattern,
        emulator_endpoint: &str,
    ) -> Result<LocalEnvironment, LocalError> {
        let mut options = UpOptions::for_pattern(
            pattern.name(),
            &env.name,
            emulator_endpoint,
            services::supervisor_dir(&self.workspace, pattern),
        );
        options.region = env.region().to_owned();
        LocalEnvironment::start(options).await
    }

    /// Where the functions of `pattern` write their logs.
    pub fn log_dir(&self, pattern: Pattern) -> Result<PathBuf, LocalError> {
        Ok(services::supervisor_state(&self.workspace, pattern)?
            .map(|s| s.log_dir)
            .unwrap_or_else(|| services::supervisor_dir(&self.workspace, pattern).join("logs")))
    }

    /// After the stack of `pattern` was destroyed (or found missing): stops its functions, which
    /// have nothing left to serve, and when `stack_deleted`, drops its database (a destroyed
    /// local stack keeps no state, as its emulated tables do not).
    pub fn tear_down(
        &self,
        env: &EnvConfig,
        pattern: Pattern,
        stack_deleted: bool,
        progress: &Progress,
    ) -> Result<(), LocalError> {
        if let Some(pid) = services::stop_supervisor(&self.workspace, pattern)? {
            progress.line(format!(
                "local services: {pattern} functions stopped (sagaform-local pid {pid})"
            ));
        }
        if !stack_deleted {
            return Ok(());
        }
        if let Some(database) = LocalDatabase::of_stack(&self.workspace, env, pattern)?
            && block_on(database.drop_all())?
        {
            progress.line(format!(
                "local services: dropped database {}",
                database.url()
            ));
        }
        Ok(())
    }

    /// What runs where: the emulator, the fake SaaS and each pattern's supervisor.
    pub fn status(&self) -> Result<LocalStatus, LocalError> {
        let supervisors = Pattern::ALL
            .into_iter()
            .map(|pattern| {
                Ok((
                    pattern,
                    services::supervisor_state(&self.workspace, pattern)?,
                ))
            })
            .collect::<Result<_, LocalError>>()?;
        Ok(LocalStatus {
            emulator: emulator::status(&self.workspace)?,
            fake_saas: services::fake_saas_record(&self.workspace),
            supervisors,
        })
    }

    /// Stops everything this tool started, by PID: the supervisors, the fake SaaS, then the
    /// emulator (every emulated resource is lost). `on_stopped` hears each as it goes.
    pub fn stop(&self, on_stopped: &mut dyn FnMut(Stopped)) -> Result<(), LocalError> {
        for pattern in Pattern::ALL {
            if let Some(pid) = services::stop_supervisor(&self.workspace, pattern)? {
                on_stopped(Stopped::Functions { pattern, pid });
            }
        }
        on_stopped(Stopped::FakeSaas(services::stop_fake_saas(
            &self.workspace,
        )?));
        on_stopped(Stopped::Emulator(emulator::stop(&self.workspace)?));
        Ok(())
    }

    /// The JSON log lines of the local functions of `pattern` (or of every pattern), only those
    /// about `transaction` when given, oldest first.
    pub fn logs(
        &self,
        pattern: Option<Pattern>,
        transaction: Option<&str>,
    ) -> Result<Vec<LogLine>, LocalError> {
        let patterns: Vec<Pattern> = pattern.map_or(Pattern::ALL.to_vec(), |p| vec![p]);
        let mut lines = Vec::new();
        for pattern in patterns {
            lines.extend(logs::read_logs(&self.log_dir(pattern)?, transaction)?);
        }
        lines.sort_by(|a, b| a.time().cmp(b.time()));
        Ok(lines)
    }
}

impl LocalRuntime for LocalEnv {
    fn start_emulator(&self, progress: &Progress) -> Result<String, DeployError> {
        Ok(LocalEnv::start_emulator(self, progress)?.endpoint)
    }

    fn bring_up(
        &self,
        env: &EnvConfig,
        pattern: Pattern,
        emulator_endpoint: &str,
        change: StackChange,
        progress: &Progress,
    ) -> Result<String, DeployError> {
        let binaries = services::build_binaries(&self.workspace, progress)?;
        if change == StackChange::Unchanged
            && let Some(running) =
                services::running_supervisor(&self.workspace, pattern, &binaries, emulator_endpoint)
        {
            progress.line(format!(
                "local services: {pattern} functions already running the deployed code under sagaform-local (pid {})",
                running.pid
            ));
            return Ok(running.api_url);
        }
        let new_stack = change == StackChange::Created;
        Ok(self.start_stack(
            env,
            pattern,
            emulator_endpoint,
            &binaries,
            new_stack,
            progress,
        )?)
    }

    fn tear_down(
        &self,
        env: &EnvConfig,
        pattern: Pattern,
        stack_deleted: bool,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        Ok(LocalEnv::tear_down(
            self,
            env,
            pattern,
            stack_deleted,
            progress,
        )?)
    }
}

/// Runs one database step to completion from synchronous code (the commands that bring the
/// local environment up run outside any async runtime).
fn block_on<T>(
    step: impl std::future::Future<Output = Result<T, LocalError>>,
) -> Result<T, LocalError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LocalError::Services(format!("cannot start the async runtime: {e}")))?
        .block_on(step)
}
