//! The state file of a running local environment (`<state dir>/state.json`) and stopping by
//! PID: what `cargo xtask local status` shows and `cargo xtask local stop` acts on.
//!
//! Every PID is recorded with its start time (field 22 of `/proc/<pid>/stat`), so a PID that
//! the system has since given to another program is never signalled. Children are in the
//! supervisor's process group; when the supervisor leads its group (it is started that way),
//! stopping also sweeps the group, so a bootstrap started between two state writes cannot
//! survive either.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::LocalError;
use crate::event_source::SqsMapping;
use crate::http_api::HttpRoute;

/// The state file's name inside the state folder.
pub const STATE_FILE: &str = "state.json";

/// What a running local environment writes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalState {
    /// The supervisor's PID.
    pub pid: u32,
    /// Its start time in clock ticks since boot (to recognise the PID).
    pub pid_start_ticks: u64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The stack served.
    pub stack_name: String,
    /// The emulator endpoint the functions use.
    pub moto_endpoint: String,
    /// The HTTP API base URL (the local stand-in for the stack's `ApiUrl` output), if the
    /// stack has routes.
    pub api_url: Option<String>,
    /// The Lambda Invoke API base URL.
    pub invoke_url: String,
    /// Whether moto forwards Lambda invokes (Step Functions Tasks) to `invoke_url`.
    pub invoke_forwarding: bool,
    /// Where function logs are.
    pub log_dir: PathBuf,
    /// The functions and their processes.
    pub functions: Vec<FunctionState>,
    /// The HTTP API routes.
    pub routes: Vec<HttpRoute>,
    /// The SQS event source mappings polled.
    pub event_source_mappings: Vec<SqsMapping>,
}

/// One function in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionState {
    /// Physical name.
    pub name: String,
    /// Role (`api`, `worker`, `step`) when known.
    pub role: Option<String>,
    /// The executable run.
    pub bootstrap: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Function timeout in seconds.
    pub timeout_seconds: u64,
    /// Process cap.
    pub max_processes: usize,
    /// Running processes.
    pub processes: Vec<ProcessState>,
}

/// One process in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    /// PID.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    /// Its Runtime API port.
    pub runtime_api_port: u16,
}

impl LocalState {
    /// The state file of `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(STATE_FILE)
    }

    /// Reads the state file of `state_dir`; `None` when there is none.
    pub fn read(state_dir: &Path) -> Result<Option<LocalState>, LocalError> {
        let path = LocalState::path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalError::io("read", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LocalError::State {
                path,
                reason: e.to_string(),
            })
    }

    /// Writes the state file atomically (write then rename), so readers never see half of it.
    pub fn write(&self, state_dir: &Path) -> Result<(), LocalError> {
        std::fs::create_dir_all(state_dir).map_err(LocalError::io("create", state_dir))?;
        let path = LocalState::path(state_dir);
        let partial = state_dir.join(format!("{STATE_FILE}.partial"));
        let text = serde_json::to_string_pretty(self).map_err(|e| LocalError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&partial, text).map_err(LocalError::io("write", &partial))?;
        std::fs::rename(&partial, &path).map_err(LocalError::io("rename", &path))
    }

    /// Whether the supervisor recorded here is still running.
    pub fn is_running(&self) -> bool {
        is_same_process(self.pid, self.pid_start_ticks)
    }
}

impl FunctionState {
    /// `<name> (<role>)`, with `-` for an unknown role: how status reports name the function.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.role.as_deref().unwrap_or("-"))
    }

    /// The PIDs of its processes, separated by spaces.
    pub fn pids(&self) -> String {
        let pids: Vec<String> = self.processes.iter().map(|p| p.pid.to_string()).collect();
        pids.join(" ")
    }
}

/// The start time (clock ticks since boot) of process `pid`, if it exists.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from the
    // last ')'. Field 3 (state) is then the first; starttime is field 22.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `pid` is alive and is the process that started at `start_ticks` (not a zombie).
pub fn is_same_process(pid: u32, start_ticks: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let mut fields = after_name.split_whitespace();
    let state = fields.next();
    state != Some("Z") && process_start_ticks(pid) == Some(start_ticks)
}

fn signal(target: &str, signal: &str) {
    // `kill` rather than a libc call: the workspace forbids unsafe code, and this runs a few
    // times per stop.
    let _ = Command::new("kill")
        .args(["-s", signal, "--", target])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// What [`stop`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// The supervisor PID, if it was running and was stopped.
    pub supervisor: Option<u32>,
    /// Function processes that were still running and were killed.
    pub processes: Vec<u32>,
    /// Whether there was a state file at all.
    pub had_state: bool,
}

/// Stops the local environment recorded in `state_dir`: SIGTERM to the supervisor (it stops
/// its children and unregisters from moto), SIGKILL after `grace`, then SIGKILL to every
/// recorded child and the supervisor's process group that is still there. Only PIDs whose start
/// time matches the record are signalled. The state file is removed.
pub fn stop(state_dir: &Path, grace: Duration) -> Result<StopReport, LocalError> {
    let Some(state) = LocalState::read(state_dir)? else {
        return Ok(StopReport::default());
    };
    let mut report = StopReport {
        had_state: true,
        ..StopReport::default()
    };
    // An in-process environment restarted by the same program (tests) must not signal itself.
    if state.is_running() && state.pid != std::process::id() {
        let leads_group = process_group(state.pid) == Some(state.pid);
        signal(&state.pid.to_string(), "TERM");
        let deadline = Instant::now() + grace;
        while state.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if state.is_running() {
            signal(&state.pid.to_string(), "KILL");
        }
        if leads_group {
            // Only a group the supervisor leads: never the group of the shell that started it.
            signal(&format!("-{}", state.pid), "KILL");
        }
        report.supervisor = Some(state.pid);
    }
    if report.supervisor.is_none() && state.invoke_forwarding {
        // A crashed supervisor could not unregister; moto would forward to a dead port.
        if let Err(error) =
            crate::moto_forward::unregister_blocking(&state.moto_endpoint, &state.invoke_url)
        {
            tracing::debug!(%error, "moto not reachable to unregister; nothing to undo there");
        }
    }
    for process in state.functions.iter().flat_map(|f| &f.processes) {
        if is_same_process(process.pid, process.start_ticks) {
            signal(&process.pid.to_string(), "KILL");
            report.processes.push(process.pid);
        }
    }
    let path = LocalState::path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LocalError::io("remove", &path)(e)),
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_recognised_by_its_start_time() {
        let pid = std::process::id();
        let ticks = process_start_ticks(pid).expect("own /proc entry");
        assert!(is_same_process(pid, ticks));
        assert!(!is_same_process(pid, ticks + 1));
    }

    #[test]
    fn a_missing_state_file_is_nothing_to_stop() {
        let dir =
            std::env::temp_dir().join(format!("sagaform-local-nostate-{}", std::process::id()));
        let report = stop(&dir, Duration::from_millis(10)).unwrap();
        assert_eq!(report, StopReport::default());
    }
}
