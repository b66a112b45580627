//! Finding a deployed stack and reaching its resources: the env's AWS (or the local emulator)
//! after the account check, the stack's outputs and parameters, and AWS clients bound to the
//! same endpoint, region and credentials.
//!
//! The outputs come from CloudFormation's DescribeStacks, which is authoritative: the outputs
//! file a deploy writes under `.local/outputs/` goes stale when the emulator restarts or someone
//! deploys from another machine. The file is used only when DescribeStacks returns no outputs
//! (the emulator computes them late) or to learn which emulator endpoint a local deploy used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_config::SdkConfig;
use sagaform_deploy::{ConnectOptions, DeployError, Session, Workspace, stack, stack_name};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::{EnvConfig, StoreKind};
use serde::Deserialize;

use crate::OpsError;

/// How to reach the env.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Send every AWS call to this endpoint (another emulator) instead of AWS or the local
    /// emulator.
    pub endpoint_url: Option<String>,
}

/// A deployed stack of one pattern in one env, with AWS configuration to reach its resources.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The pattern.
    pub pattern: Pattern,
    /// The env's name.
    pub env_name: String,
    /// Whether the env is the local emulator.
    pub local: bool,
    /// Whether the env is production.
    pub production: bool,
    /// `sagaform-<pattern>-<env>`.
    pub stack_name: String,
    /// The stack's region.
    pub region: String,
    /// The emulator endpoint, when not AWS's own.
    pub endpoint_url: Option<String>,
    /// The state store the pattern uses in this env.
    pub store: StoreKind,
    /// The Aurora database name (aurora store).
    pub database_name: String,
    /// The stack outputs.
    pub outputs: BTreeMap<String, String>,
    /// The stack's parameter values.
    pub parameters: BTreeMap<String, String>,
    /// AWS configuration for clients of the stack's resources.
    pub aws: SdkConfig,
}

/// The part of a deploy's outputs file this library reads.
#[derive(Debug, Deserialize)]
struct OutputsFile {
    endpoint_url: Option<String>,
    #[serde(default)]
    outputs: BTreeMap<String, String>,
}

fn read_outputs_file(path: &Path) -> Option<OutputsFile> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The running local emulator's endpoint, as the last local deploy recorded it when that is
/// still the emulator's; an error when the emulator is not running (it then holds no stack).
fn local_endpoint(
    pattern: Pattern,
    outputs_file: Option<&OutputsFile>,
) -> Result<String, OpsError> {
    let port = sagaform_local::emulator::port().map_err(DeployError::from)?;
    let endpoint = sagaform_tools::moto::endpoint(port);
    if !sagaform_tools::moto::is_running(port) {
        return Err(OpsError::EmulatorDown {
            endpoint,
            pattern: pattern.name().to_owned(),
        });
    }
    Ok(outputs_file
        .and_then(|file| file.endpoint_url.clone())
        .filter(|recorded| *recorded == endpoint)
        .unwrap_or(endpoint))
}

impl Deployed {
    /// Connects to the env (checking the account), and reads the stack.
    ///
    /// For the local env the endpoint is `--endpoint-url`, else the one the last local deploy
    /// recorded, else the local emulator's port; the emulator is never started here (a fresh
    /// one holds no stack).
    pub async fn open(
        workspace: &Workspace,
        env: &EnvConfig,
        pattern: Pattern,
        options: &OpenOptions,
    ) -> Result<Deployed, OpsError> {
        let stack_name = stack_name(pattern, &env.name);
        let outputs_path: PathBuf = workspace.outputs_path(pattern, &env.name);
        let outputs_file = read_outputs_file(&outputs_path);
        let endpoint_url = match (&options.endpoint_url, env.is_local()) {
            (Some(url), _) => Some(url.clone()),
            (None, false) => None,
            (None, true) => Some(local_endpoint(pattern, outputs_file.as_ref())?),
        };
        let session = Session::connect(
            env,
            &ConnectOptions {
                endpoint_url: endpoint_url.clone(),
            },
        )
        .await?;
        let Some(info) = stack::describe(&session, &stack_name).await? else {
            return Err(OpsError::NotDeployed {
                stack: stack_name,
                env: env.name.clone(),
                pattern: pattern.name().to_owned(),
            });
        };
        let outputs = if info.outputs.is_empty() {
            outputs_file.map(|file| file.outputs).unwrap_or_default()
        } else {
            info.outputs
        };
        Ok(Deployed {
            pattern,
            env_name: env.name.clone(),
            local: env.is_local(),
            production: env.production,
            stack_name,
            region: env.region().to_owned(),
            endpoint_url,
            store: env.store(pattern),
            database_name: env.aurora.database_name.clone(),
            outputs,
            parameters: info.parameters,
            aws: session.aws,
        })
    }

    /// The value of a stack output, or an error naming it and why it is needed.
    pub fn output(&self, key: &'static str, needed_for: &str) -> Result<&str, OpsError> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| OpsError::MissingOutput {
                stack: self.stack_name.clone(),
                output: key,
                reason: format!(
                    "{needed_for} needs it; redeploy with `cargo xtask deploy --pattern {} --env {}`",
                    self.pattern.name(),
                    self.env_name
                ),
            })
    }

    /// The physical name of a function of the stack (`<stack>-<role>`, as the templates name
    /// them).
    pub fn function_name(&self, role: &str) -> String {
        format!("{}-{role}", self.stack_name)
    }
}
