//! The emulator of the local environment: moto server (pinned in `.tools/venv`) on a fixed
//! loopback port, started detached when not running so later commands find it, and stopped by
//! PID with `cargo xtask local stop`. Its state (PID, port, log file) lives in
//! `.local/emulator.json`.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sagaform_deploy::{Progress, Workspace};
use sagaform_tools::{Tools, moto};
use serde::{Deserialize, Serialize};

use crate::LocalError;

/// The fixed loopback port of the local emulator (the conventional local-AWS port).
pub const DEFAULT_PORT: u16 = 4566;

/// Overrides [`DEFAULT_PORT`] when another program already uses it.
pub const PORT_VARIABLE: &str = "SAGAFORM_LOCAL_PORT";

/// What `.local/emulator.json` records about the emulator this tool started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorState {
    /// Process id of `moto_server`.
    pub pid: u32,
    /// Loopback port it listens on.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
}

/// The running emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Emulator {
    /// Loopback port.
    pub port: u16,
    /// Endpoint URL for AWS clients.
    pub endpoint: String,
    /// Process id, when this tool started it.
    pub pid: Option<u32>,
    /// Whether this call started it.
    pub started: bool,
}

/// The port the local emulator uses: [`PORT_VARIABLE`] or [`DEFAULT_PORT`].
pub fn port() -> Result<u16, LocalError> {
    match std::env::var(PORT_VARIABLE) {
        Ok(value) => value.parse().map_err(|_| {
            LocalError::Emulator(format!("{PORT_VARIABLE}={value} is not a port number"))
        }),
        Err(_) => Ok(DEFAULT_PORT),
    }
}

fn state_path(workspace: &Workspace) -> PathBuf {
    workspace.local_dir().join("emulator.json")
}

/// The recorded emulator state, if any.
pub fn read_state(workspace: &Workspace) -> Option<EmulatorState> {
    let text = std::fs::read_to_string(state_path(workspace)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Makes sure moto runs on the local port, configured for sagaform, and returns its endpoint.
///
/// Installs the pinned tools on first use. A moto already answering on the port (started by an
/// earlier command) is reused and configured again; the configuration is idempotent.
pub fn ensure_running(workspace: &Workspace, progress: &Progress) -> Result<Emulator, LocalError> {
    let port = port()?;
    let recorded = read_state(workspace).filter(|s| s.port == port);
    if moto::is_running(port) {
        moto::configure(port).map_err(|e| LocalError::Emulator(e.to_string()))?;
        return Ok(Emulator {
            port,
            endpoint: moto::endpoint(port),
            pid: recorded.map(|s| s.pid),
            started: false,
        });
    }
    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
        return Err(LocalError::Emulator(format!(
            "127.0.0.1:{port} is in use by something that is not moto: stop it, or pick another port with {PORT_VARIABLE}=<port>"
        )));
    }
    progress.status("local emulator: installing pinned tools (first run only)");
    let tools = Tools::ensure().map_err(|e| LocalError::Emulator(e.to_string()))?;
    let local = workspace.local_dir();
    std::fs::create_dir_all(&local).map_err(LocalError::io("create", &local))?;
    let log = local.join("emulator.log");
    progress.status(format!("local emulator: starting moto on 127.0.0.1:{port}"));
    let started_at = Instant::now();
    let pid = moto::start_detached(&tools, port, &log)
        .map_err(|e| LocalError::Emulator(format!("{e} (log: {})", log.display())))?;
    let state = EmulatorState { pid, port, log };
    let path = state_path(workspace);
    let text = serde_json::to_string_pretty(&state).expect("state serializes");
    std::fs::write(&path, text).map_err(LocalError::io("write", &path))?;
    progress.clear_status();
    progress.line(format!(
        "local emulator: moto started on 127.0.0.1:{port} (pid {pid}, {:.1} s; stop it with `cargo xtask local stop`)",
        started_at.elapsed().as_secs_f64()
    ));
    Ok(Emulator {
        port,
        endpoint: moto::endpoint(port),
        pid: Some(pid),
        started: true,
    })
}

/// What `cargo xtask local status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmulatorStatus {
    /// The port checked.
    pub port: u16,
    /// Whether moto answers there.
    pub running: bool,
    /// What this tool recorded when it started it.
    pub recorded: Option<EmulatorState>,
}

/// Whether the emulator runs, and what was recorded about it.
pub fn status(workspace: &Workspace) -> Result<EmulatorStatus, LocalError> {
    let port = port()?;
    Ok(EmulatorStatus {
        port,
        running: moto::is_running(port),
        recorded: read_state(workspace),
    })
}

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StopOutcome {
    /// The recorded process was stopped.
    Stopped {
        /// Its PID.
        pid: u32,
    },
    /// Nothing recorded and nothing answering.
    NotRunning,
    /// The recorded process was already gone; the stale record was removed.
    StaleRecord {
        /// The PID that was recorded.
        pid: u32,
    },
}

/// Stops the emulator this tool started, by its recorded PID.
///
/// A moto that answers on the port but was not started by this tool is left alone (its PID is
/// unknown, and ending someone else's process by guess is not acceptable).
pub fn stop(workspace: &Workspace) -> Result<StopOutcome, LocalError> {
    let path = state_path(workspace);
    let Some(state) = read_state(workspace) else {
        let port = port()?;
        if moto::is_running(port) {
            return Err(LocalError::Emulator(format!(
                "moto answers on 127.0.0.1:{port} but was not started by cargo xtask (no {}): stop it where it was started",
                path.display()
            )));
        }
        return Ok(StopOutcome::NotRunning);
    };
    if !is_moto_process(state.pid) {
        remove(&path)?;
        return Ok(StopOutcome::StaleRecord { pid: state.pid });
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &state.pid.to_string()])
        .status()
        .map_err(|e| LocalError::Emulator(format!("kill {}: {e}", state.pid)))?;
    if !status.success() {
        return Err(LocalError::Emulator(format!(
            "kill -TERM {} failed: {status}",
            state.pid
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_moto_process(state.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if is_moto_process(state.pid) {
        return Err(LocalError::Emulator(format!(
            "moto (pid {}) did not exit within 10 s of SIGTERM",
            state.pid
        )));
    }
    remove(&path)?;
    Ok(StopOutcome::Stopped { pid: state.pid })
}

fn remove(path: &Path) -> Result<(), LocalError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LocalError::io("remove", path)(e))
        }
        _ => Ok(()),
    }
}

/// Whether `pid` is a live moto server process; guards against a PID reused by another program
/// since it was recorded. A process that exited but was not reaped yet (a zombie) is gone.
fn is_moto_process(pid: u32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let alive = std::fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next()))
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X');
    alive
        && std::fs::read(proc_dir.join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("moto"))
}
