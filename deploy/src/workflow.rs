//! The stack commands as one call each, for `cargo xtask` (which only parses arguments and
//! prints): [`deploy_command`] (packages, connection, change set, approval, execution, and the
//! local environment brought up around a local stack) and [`destroy_command`].
//!
//! The local environment (emulator, fake SaaS, supervisors, local databases) is reached through
//! the [`LocalRuntime`] trait, which `sagaform-local`'s `LocalEnv` implements: this crate never
//! starts a local process or talks to PostgreSQL itself, and does not depend on the crate that
//! does.

use sagaform_stacks::Pattern;
use sagaform_stacks::config::{Architecture, EnvConfig, FunctionRole};
use sagaform_tools::Tools;
use serde::Serialize;

use crate::build::{self, BuildRequest, RELEASE_PROFILE};
use crate::confirm::Confirm;
use crate::deploy::{
    DeployOptions, DeployOutcome, DeployResult, committed_template, deploy_pattern,
};
use crate::destroy::{DestroyOptions, DestroyOutcome, DestroyResult, destroy_pattern};
use crate::host_build;
use crate::session::{check_credentials, sdk_config};
use crate::{Artifact, ConnectOptions, DeployError, PatternEnv, Progress, Session, Workspace};

/// What a deploy did to a local stack, for what serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackChange {
    /// The stack was created.
    Created,
    /// The stack was updated (new function code or configuration).
    Updated,
    /// The change set was empty.
    Unchanged,
}

/// What runs a local env's stacks besides the stack itself: the emulator never runs function
/// code, so the functions, the HTTP API and the fake SaaS they call run on this machine.
pub trait LocalRuntime {
    /// The emulator's endpoint, started first when it is not running.
    fn start_emulator(&self, progress: &Progress) -> Result<String, DeployError>;

    /// Starts what the stack of `pattern`, just deployed to the emulator at
    /// `emulator_endpoint`, needs to serve; returns its HTTP API URL. `change` says what the
    /// deploy did: a new stack clears state left by an earlier stack of the same name, and an
    /// unchanged one keeps what already serves it when nothing it runs was rebuilt.
    fn bring_up(
        &self,
        env: &EnvConfig,
        pattern: Pattern,
        emulator_endpoint: &str,
        change: StackChange,
        progress: &Progress,
    ) -> Result<String, DeployError>;

    /// Stops what served the stack of `pattern`; when `stack_deleted`, also drops the state it
    /// kept outside the emulator.
    fn tear_down(
        &self,
        env: &EnvConfig,
        pattern: Pattern,
        stack_deleted: bool,
        progress: &Progress,
    ) -> Result<(), DeployError>;
}

/// How to build the function packages.
#[derive(Debug, Clone, Default)]
pub struct BuildChoice {
    /// Instruction set; default: the env's (the host's for `local`).
    pub architecture: Option<Architecture>,
    /// Cargo profile for a cargo-lambda build; default: none for the local env (a host build in
    /// the dev profile), `lambda-aws` otherwise.
    pub profile: Option<String>,
}

/// Where a deploy's packages come from.
#[derive(Debug, Clone)]
pub enum Packages {
    /// Build them now.
    Build(BuildChoice),
    /// The zips of the last build (`--no-build`).
    LastBuilt,
}

/// Everything `deploy` needs besides the target.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// Where the packages come from.
    pub packages: Packages,
    /// Execution, timeout and approval.
    pub options: DeployOptions,
    /// Another endpoint than AWS or the local emulator.
    pub endpoint_url: Option<String>,
}

/// What `deploy` did, the local API URL included when it brought the local environment up.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The stack operation.
    #[serde(flatten)]
    pub outcome: DeployOutcome,
    /// The local HTTP API of the stack (`--env local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_api_url: Option<String>,
}

/// `cargo xtask deploy`: refuses a stale template before minutes of building (the deploy checks
/// again under its lock), builds or loads the packages, deploys, and for a local env (unless
/// the change set was only created) brings the local environment up so the printed URL answers.
pub fn deploy_command(
    target: PatternEnv<'_>,
    request: &DeployRequest,
    confirm: &dyn Confirm,
    local: &dyn LocalRuntime,
    progress: &Progress,
) -> Result<DeployReport, DeployError> {
    let PatternEnv {
        workspace,
        env,
        pattern,
    } = target;
    committed_template(workspace, pattern, &env.name)?;
    // Refused again under the deploy's lock; here before minutes of building.
    crate::preflight::check_placeholders(env)?;
    if request.options.hotswap {
        crate::hotswap::refuse_in_production(env)?;
    }
    if !env.is_local() {
        // Before minutes of building: a deploy without credentials cannot get anywhere.
        runtime()?.block_on(async {
            let aws = sdk_config(env, request.endpoint_url.as_deref()).await;
            check_credentials(env, &aws).await
        })?;
    }
    let artifacts = std::thread::scope(|scope| {
        // The local emulator is one of the pinned tools: on a first run, installing them (mostly
        // waiting on the package index) overlaps with compiling the functions. The emulator
        // start takes the install lock and so waits for this to finish; its errors are its own.
        if env.is_local() && request.endpoint_url.is_none() {
            scope.spawn(|| {
                let _ = Tools::ensure();
            });
        }
        match &request.packages {
            Packages::Build(choice) => {
                build_packages(workspace, env, Some(pattern), choice, progress)
            }
            Packages::LastBuilt => last_built(
                workspace,
                env,
                &build::functions_for(workspace, pattern, &env.name)?,
            ),
        }
    })?;
    let (outcome, endpoint_url) = runtime()?.block_on(async {
        let session = connect(env, request.endpoint_url.clone(), local, progress).await?;
        let outcome = deploy_pattern(
            &session,
            target,
            &artifacts,
            &request.options,
            confirm,
            progress,
        )
        .await?;
        Ok::<_, DeployError>((outcome, session.endpoint_url))
    })?;
    let local_api_url = match endpoint_url {
        Some(endpoint) if env.is_local() && outcome.result != DeployResult::ChangeSetCreated => {
            let change = match outcome.result {
                DeployResult::Created => StackChange::Created,
                DeployResult::NoChanges => StackChange::Unchanged,
                // A hotswap changed the functions' code: their processes restart on it.
                _ => StackChange::Updated,
            };
            Some(local.bring_up(env, pattern, &endpoint, change, progress)?)
        }
        _ => None,
    };
    Ok(DeployReport {
        outcome,
        local_api_url,
    })
}

/// `cargo xtask destroy`: deletes the stack, then for the local env (unless another endpoint
/// is given) stops its functions and, once the stack is gone, drops its local state.
pub fn destroy_command(
    target: PatternEnv<'_>,
    options: &DestroyOptions,
    endpoint_url: Option<String>,
    confirm: &dyn Confirm,
    local: &dyn LocalRuntime,
    progress: &Progress,
) -> Result<DestroyOutcome, DeployError> {
    let local_env = target.env.is_local() && endpoint_url.is_none();
    let outcome = runtime()?.block_on(async {
        let session = connect(target.env, endpoint_url, local, progress).await?;
        destroy_pattern(&session, target, options, confirm, progress).await
    })?;
    if local_env {
        let deleted = outcome.result == DestroyResult::Destroyed;
        local.tear_down(target.env, target.pattern, deleted, progress)?;
    }
    Ok(outcome)
}

/// Reaches the env: the local emulator (started if needed) for `local` unless an endpoint is
/// given, AWS otherwise; refuses when the credentials are for another account.
pub async fn connect(
    env: &EnvConfig,
    endpoint_url: Option<String>,
    local: &dyn LocalRuntime,
    progress: &Progress,
) -> Result<Session, DeployError> {
    let endpoint_url = match endpoint_url {
        Some(url) => Some(url),
        None if env.is_local() => Some(local.start_emulator(progress)?),
        None => None,
    };
    let target = endpoint_url
        .clone()
        .unwrap_or_else(|| format!("AWS {}", env.region()));
    progress.status(format!("connecting to {target}"));
    let session = Session::connect(env, &ConnectOptions { endpoint_url }).await?;
    progress.clear_status();
    progress.line(format!(
        "env {}: account {} in {} via {target}",
        env.name, session.account_id, session.region
    ));
    Ok(session)
}

/// Builds what `pattern` (or every pattern) needs in `env` and returns the packages: for the
/// local env a plain host build in the dev profile ([`host_build`]), unless a profile or a
/// foreign architecture is asked for; for AWS envs the pinned cargo-lambda.
pub fn build_packages(
    workspace: &Workspace,
    env: &EnvConfig,
    pattern: Option<Pattern>,
    choice: &BuildChoice,
    progress: &Progress,
) -> Result<Vec<Artifact>, DeployError> {
    let functions = match pattern {
        Some(pattern) => build::functions_for(workspace, pattern, &env.name)?,
        None => FunctionRole::ALL
            .iter()
            .map(|r| r.name().to_owned())
            .collect(),
    };
    let architecture = choice
        .architecture
        .unwrap_or_else(|| default_architecture(env, progress));
    let on_host = env.is_local()
        && choice.profile.is_none()
        && Some(architecture) == build::host_architecture();
    if on_host {
        return host_build::build_local_functions(workspace, &functions, progress);
    }
    let profile = choice
        .profile
        .clone()
        .unwrap_or_else(|| RELEASE_PROFILE.to_owned());
    progress.status("build: installing pinned cargo-lambda (first run only)");
    let tools = Tools::ensure().map_err(DeployError::Tools)?;
    progress.clear_status();
    let request = BuildRequest {
        functions,
        architecture,
        profile,
    };
    let built = build::build_functions(workspace, &tools, &request, progress)?;
    Ok(built.into_iter().map(|b| b.artifact).collect())
}

/// The env's architecture, except for `local`, whose functions run on this machine under
/// sagaform-local and so must be built for it.
fn default_architecture(env: &EnvConfig, progress: &Progress) -> Architecture {
    let configured = env.functions.architecture;
    match build::host_architecture() {
        Some(host) if env.is_local() && host != configured => {
            progress.line(format!(
                "build: env {} runs its functions on this machine: building for {} (config says {})",
                env.name,
                build::architecture_name(host),
                build::architecture_name(configured)
            ));
            host
        }
        _ => configured,
    }
}

/// The packages of the last `cargo xtask build` (for `deploy --no-build`).
pub fn last_built(
    workspace: &Workspace,
    env: &EnvConfig,
    functions: &[String],
) -> Result<Vec<Artifact>, DeployError> {
    functions
        .iter()
        .map(|function| {
            let zip = workspace.package_zip(function, env.is_local());
            Artifact::from_zip_file(function, &zip).map_err(|e| {
                DeployError::Config(format!(
                    "no package of {function} at {}: run `cargo xtask build --env {}` first: {e}",
                    zip.display(),
                    env.name
                ))
            })
        })
        .collect()
}

/// A runtime for the AWS calls of one synchronous command.
fn runtime() -> Result<tokio::runtime::Runtime, DeployError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DeployError::Runtime)
}
