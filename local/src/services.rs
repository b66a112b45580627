//! The processes of `--env local` besides the emulator: the fake SaaS server the functions call
//! (on the address `env/local.toml` gives its services) and one `sagaform-local` supervisor per
//! deployed pattern, which runs the stack's real function binaries and serves its HTTP API on a
//! fixed loopback port ([`api_port`]), so the URLs in the README stay the same from run to run.
//!
//! Both run detached (own process group, output in files under `.local/`) so they outlive the
//! command that started them; each is recorded with its PID and start time, and only a process
//! matching its record is ever signalled. `cargo xtask local stop` ends them by those PIDs, and a
//! start after a crash first stops what the records still name, so no stray process keeps a port.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagaform_contract::template::outputs::API_URL;
use sagaform_deploy::{DeployError, Progress, Workspace, host_build};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::EnvConfig;
use serde::{Deserialize, Serialize};

use crate::LocalError;
use crate::state::{self, LocalState, is_same_process, process_start_ticks};

/// How long a started service may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a stopped service gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The loopback port of a pattern's local HTTP API: fixed per pattern so that several
/// patterns run side by side and the documented curl commands keep working.
pub fn api_port(pattern: Pattern) -> u16 {
    match pattern {
        Pattern::Orchestrator => 9301,
        Pattern::Sqs => 9302,
        Pattern::StepFunctions => 9303,
    }
}

/// The local HTTP API base URL of a pattern.
pub fn api_url(pattern: Pattern) -> String {
    format!("http://127.0.0.1:{}", api_port(pattern))
}

/// The state folder of a pattern's supervisor (`.local/<pattern>`): its state file, the
/// extracted bootstraps and the function logs.
pub fn supervisor_dir(workspace: &Workspace, pattern: Pattern) -> PathBuf {
    workspace.local_dir().join(pattern.name())
}

fn fake_saas_record_path(workspace: &Workspace) -> PathBuf {
    workspace.local_dir().join("fake-saas.json")
}

/// The executables of the local services, built by [`build_binaries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBinaries {
    /// `sagaform-local` (the supervisor).
    pub supervisor: PathBuf,
    /// `fake-saas`.
    pub fake_saas: PathBuf,
}

/// Builds `sagaform-local` and `fake-saas` (debug profile: they run on this machine only, and
/// the debug build of their libraries is the one the tests already compiled).
pub fn build_binaries(
    workspace: &Workspace,
    progress: &Progress,
) -> Result<LocalBinaries, LocalError> {
    progress.status("local services: building sagaform-local and fake-saas");
    let built = host_build::cargo_build_bins(workspace, &["sagaform-local", "fake-saas"], progress);
    progress.clear_status();
    let [supervisor, fake_saas] = <[PathBuf; 2]>::try_from(built?).expect("two binaries asked");
    Ok(LocalBinaries {
        supervisor,
        fake_saas,
    })
}

/// What `.local/fake-saas.json` records about the fake SaaS server this tool started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeSaasRecord {
    /// Its PID.
    pub pid: u32,
    /// Its start time in clock ticks since boot (to recognise the PID).
    pub start_ticks: u64,
    /// The address it listens on.
    pub listen: String,
    /// Its log file.
    pub log: PathBuf,
}

impl FakeSaasRecord {
    /// Whether the recorded process still runs.
    pub fn is_running(&self) -> bool {
        is_same_process(self.pid, self.start_ticks)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }
}

/// The recorded fake SaaS server, if any.
pub fn fake_saas_record(workspace: &Workspace) -> Option<FakeSaasRecord> {
    let text = std::fs::read_to_string(fake_saas_record_path(workspace)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The loopback address the env's SaaS URLs point at (`env/local.toml` points every service at
/// one fake server); an error when they disagree or are not on loopback.
pub fn fake_saas_address(env: &EnvConfig) -> Result<SocketAddr, LocalError> {
    let mut addresses = env.saas.iter().map(|(service, endpoint)| {
        let url = endpoint.url.as_str();
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        authority
            .parse::<SocketAddr>()
            .ok()
            .filter(|a| a.ip().is_loopback())
            .ok_or_else(|| {
                LocalError::from(DeployError::Config(format!(
                    "env/{}.toml: saas.{service}.url: {url} is not http://<loopback ip>:<port>/..., so no local fake can serve it",
                    env.name
                )))
            })
    });
    let first = addresses
        .next()
        .ok_or_else(|| DeployError::Config(format!("env/{}.toml: saas: no service", env.name)))??;
    for address in addresses {
        if address? != first {
            return Err(DeployError::Config(format!(
                "env/{}.toml: saas: the services point at different addresses; the local environment runs one fake SaaS server",
                env.name
            ))
            .into());
        }
    }
    Ok(first)
}

/// Makes sure the fake SaaS server runs on `address`: a recorded one on the same address is
/// kept (its ledger and faults survive a redeploy), anything else recorded is stopped first.
pub fn ensure_fake_saas(
    workspace: &Workspace,
    binaries: &LocalBinaries,
    address: SocketAddr,
    progress: &Progress,
) -> Result<FakeSaasRecord, LocalError> {
    let listen = address.to_string();
    if let Some(record) = fake_saas_record(workspace) {
        if record.is_running() && record.listen == listen {
            return Ok(record);
        }
        stop_fake_saas(workspace)?;
    }
    port_is_free(address, "the fake SaaS server")?;
    let local = workspace.local_dir();
    std::fs::create_dir_all(&local).map_err(LocalError::io("create", &local))?;
    let log = local.join("fake-saas.log");
    let mut command = Command::new(&binaries.fake_saas);
    command.args(["--listen", &listen]);
    let mut child = spawn_detached(command, &log, &log)?;
    wait_until_ready(
        &mut child,
        Readiness {
            what: "the fake SaaS server",
            not_ready: &format!("did not listen on {listen}"),
            log: &log,
            poll: Duration::from_millis(50),
        },
        || TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok(),
        || {},
    )?;
    let record = FakeSaasRecord {
        pid: child.id(),
        start_ticks: process_start_ticks(child.id()).unwrap_or_default(),
        listen,
        log,
    };
    write_json(&fake_saas_record_path(workspace), &record)?;
    progress.line(format!(
        "local services: fake SaaS on {} (pid {}, ledger {}/_ledger, faults {}/_faults)",
        record.url(),
        record.pid,
        record.url(),
        record.url()
    ));
    Ok(record)
}

/// Stops the recorded fake SaaS server by its PID; returns the PID when one was stopped.
pub fn stop_fake_saas(workspace: &Workspace) -> Result<Option<u32>, LocalError> {
    let path = fake_saas_record_path(workspace);
    let Some(record) = fake_saas_record(workspace) else {
        return Ok(None);
    };
    let stopped = if record.is_running() {
        terminate(record.pid, record.start_ticks);
        Some(record.pid)
    } else {
        None
    };
    remove_file(&path)?;
    Ok(stopped)
}

/// A supervisor that runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningSupervisor {
    /// Its PID.
    pub pid: u32,
    /// The local HTTP API base URL.
    pub api_url: String,
    /// Its state folder.
    pub state_dir: PathBuf,
}

/// (Re)starts the supervisor of `pattern` on the stack just deployed to the emulator at
/// `moto_endpoint`, and waits until it serves. A previous one (running or crashed) is stopped
/// first, so the function binaries are the ones just deployed.
pub fn restart_supervisor(
    workspace: &Workspace,
    binaries: &LocalBinaries,
    pattern: Pattern,
    env: &EnvConfig,
    moto_endpoint: &str,
    progress: &Progress,
) -> Result<RunningSupervisor, LocalError> {
    let state_dir = supervisor_dir(workspace, pattern);
    stop_supervisor(workspace, pattern)?;
    let api_address = SocketAddr::from((Ipv4Addr::LOCALHOST, api_port(pattern)));
    port_is_free(api_address, &format!("the {pattern} HTTP API"))?;
    std::fs::create_dir_all(&state_dir).map_err(LocalError::io("create", &state_dir))?;
    let log = state_dir.join("supervisor.log");
    let mut command = Command::new(&binaries.supervisor);
    command
        .args(["up", "--pattern", pattern.name(), "--env", &env.name])
        .args(["--region", env.region(), "--moto-endpoint", moto_endpoint])
        .arg("--state-dir")
        .arg(&state_dir)
        .args(["--api-port", &api_port(pattern).to_string()]);
    progress.status(format!("local services: starting the {pattern} supervisor"));
    let mut child = spawn_detached(command, &state_dir.join("supervisor.out"), &log)?;
    let started = Instant::now();
    let pid = child.id();
    let state = wait_until_ready(
        &mut child,
        Readiness {
            what: &format!("the {pattern} supervisor"),
            not_ready: "was not ready",
            log: &log,
            poll: Duration::from_millis(100),
        },
        || {
            LocalState::read(&state_dir)
                .ok()
                .flatten()
                .filter(|s| s.pid == pid)
        },
        || {
            let _ = state::stop(&state_dir, STOP_GRACE);
        },
    );
    progress.clear_status();
    let state = state?;
    let stamp_path = state_dir.join(SUPERVISOR_BINARY);
    let stamp = host_build::binary_stamp(&binaries.supervisor)?;
    std::fs::write(&stamp_path, stamp).map_err(LocalError::io("write", &stamp_path))?;
    let api_url = state.api_url.clone().unwrap_or_else(|| api_url(pattern));
    progress.line(format!(
        "local services: {pattern} functions running under sagaform-local (pid {}, {:.1} s), logs: cargo xtask local logs --pattern {pattern}",
        state.pid,
        started.elapsed().as_secs_f64()
    ));
    Ok(RunningSupervisor {
        pid: state.pid,
        api_url,
        state_dir,
    })
}

/// The supervisor of `pattern` when it runs, serves the stack on the emulator at
/// `moto_endpoint` and was started from the `sagaform-local` binary built now (so keeping it
/// serves what a restart would).
pub fn running_supervisor(
    workspace: &Workspace,
    pattern: Pattern,
    binaries: &LocalBinaries,
    moto_endpoint: &str,
) -> Option<RunningSupervisor> {
    let state_dir = supervisor_dir(workspace, pattern);
    let state = LocalState::read(&state_dir).ok().flatten()?;
    let started_from = std::fs::read_to_string(state_dir.join(SUPERVISOR_BINARY)).ok()?;
    let same_binary = host_build::binary_stamp(&binaries.supervisor).ok()? == started_from;
    (state.is_running() && state.moto_endpoint == moto_endpoint && same_binary).then(|| {
        RunningSupervisor {
            pid: state.pid,
            api_url: state.api_url.clone().unwrap_or_else(|| api_url(pattern)),
            state_dir,
        }
    })
}

/// The file of a supervisor's state folder naming the build it was started from.
const SUPERVISOR_BINARY: &str = "supervisor.binary";

/// Stops the supervisor of `pattern` (and the function processes it left) by PID; returns its
/// PID when one was running.
pub fn stop_supervisor(workspace: &Workspace, pattern: Pattern) -> Result<Option<u32>, LocalError> {
    let state_dir = supervisor_dir(workspace, pattern);
    state::stop(&state_dir, STOP_GRACE)
        .map(|report| report.supervisor)
        .map_err(|e| LocalError::Services(format!("stopping the {pattern} supervisor: {e}")))
}

/// The state of the supervisor of `pattern`, if one was recorded.
pub fn supervisor_state(
    workspace: &Workspace,
    pattern: Pattern,
) -> Result<Option<LocalState>, LocalError> {
    LocalState::read(&supervisor_dir(workspace, pattern))
        .map_err(|e| LocalError::Services(e.to_string()))
}

/// Writes the local API URL into the outputs file of a local deploy: `ApiUrl` becomes the
/// loopback URL (the emulated stack's own value names an API Gateway that does not exist
/// locally) and `local.api_url` records it for tools that want to be explicit.
pub fn record_api_url(
    workspace: &Workspace,
    pattern: Pattern,
    env: &str,
    api_url: &str,
) -> Result<(), LocalError> {
    let path = workspace.outputs_path(pattern, env);
    let text = std::fs::read_to_string(&path).map_err(LocalError::io("read", &path))?;
    let mut file: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        DeployError::Config(format!("{}: not the outputs JSON: {e}", path.display()))
    })?;
    if let Some(outputs) = file.get_mut("outputs").and_then(|o| o.as_object_mut()) {
        if let Some(emulated) = outputs.get(API_URL).cloned() {
            outputs.insert("EmulatedApiUrl".to_owned(), emulated);
        }
        outputs.insert(API_URL.to_owned(), api_url.into());
    }
    file["local"] = serde_json::json!({ "api_url": api_url });
    write_json(&path, &file)
}

fn port_is_free(address: SocketAddr, what: &str) -> Result<(), LocalError> {
    TcpListener::bind(address).map(drop).map_err(|e| {
        LocalError::Services(format!(
            "{what} cannot listen on {address} ({e}): another program holds the port; `cargo xtask local status` shows what sagaform runs"
        ))
    })
}

/// Starts `command` in its own process group with stdin closed and its output in files, so it
/// keeps running after this process exits and a terminal's Ctrl-C does not reach it.
fn spawn_detached(mut command: Command, stdout: &Path, stderr: &Path) -> Result<Child, LocalError> {
    let out = std::fs::File::create(stdout).map_err(LocalError::io("create", stdout))?;
    let err = if stderr == stdout {
        out.try_clone().map_err(LocalError::io("open", stderr))?
    } else {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr)
            .map_err(LocalError::io("open", stderr))?
    };
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LocalError::Services(format!("cannot start {:?}: {e}", command.get_program())))
}

/// What [`wait_until_ready`] waits for, to name it when it is not ready.
struct Readiness<'a> {
    /// The service, e.g. `the fake SaaS server`.
    what: &'a str,
    /// What it failed to do in time, e.g. `was not ready`.
    not_ready: &'a str,
    /// Its log file.
    log: &'a Path,
    /// How often to check.
    poll: Duration,
}

/// Waits until `ready` gives a value. Fails when `child` exits first (with the end of its log),
/// or after [`READY_TIMEOUT`]: then `on_timeout` cleans up and the child is killed.
fn wait_until_ready<T>(
    child: &mut Child,
    readiness: Readiness<'_>,
    mut ready: impl FnMut() -> Option<T>,
    on_timeout: impl FnOnce(),
) -> Result<T, LocalError> {
    let Readiness {
        what,
        not_ready,
        log,
        poll,
    } = readiness;
    let started = Instant::now();
    loop {
        if let Some(value) = ready() {
            return Ok(value);
        }
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(not_started(what, status, log));
        }
        if started.elapsed() > READY_TIMEOUT {
            on_timeout();
            kill(child.id());
            return Err(LocalError::Services(format!(
                "{what} {not_ready} within {} s (log: {})",
                READY_TIMEOUT.as_secs(),
                log.display()
            )));
        }
        std::thread::sleep(poll);
    }
}

fn not_started(what: &str, status: std::process::ExitStatus, log: &Path) -> LocalError {
    let mut tail = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let _ = file.read_to_string(&mut tail);
    }
    let tail: Vec<&str> = tail.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    LocalError::Services(format!(
        "{what} exited ({status}) before it was ready; last lines of {}:\n{}",
        log.display(),
        tail.join("\n")
    ))
}

/// SIGTERM, then SIGKILL after the grace period, to the process recorded as `pid` started at
/// `start_ticks` (never to a process that has since taken its PID).
fn terminate(pid: u32, start_ticks: u64) {
    signal(pid, "TERM");
    let deadline = Instant::now() + STOP_GRACE;
    while is_same_process(pid, start_ticks) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_same_process(pid, start_ticks) {
        signal(pid, "KILL");
    }
}

fn kill(pid: u32) {
    signal(pid, "KILL");
}

fn signal(pid: u32, signal: &str) {
    // `kill` rather than a libc call: the workspace forbids unsafe code.
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), LocalError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LocalError::io("create", dir))?;
    }
    let text = serde_json::to_string_pretty(value).expect("records serialize") + "\n";
    std::fs::write(path, text).map_err(LocalError::io("write", path))
}

fn remove_file(path: &Path) -> Result<(), LocalError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LocalError::io("remove", path)(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_has_its_own_api_port() {
        let ports: std::collections::BTreeSet<u16> =
            Pattern::ALL.iter().map(|p| api_port(*p)).collect();
        assert_eq!(ports.len(), Pattern::ALL.len());
    }
}
