//! The moto server: the local AWS emulator (DynamoDB, SQS, S3, Step Functions, CloudFormation).
//!
//! Two ways to run it: [`MotoServer::start`] for tests (a free port, stopped on drop and, through
//! a watchdog, when the test process dies however it dies), and [`start_detached`] for the local
//! environment that outlives the command that started it and is stopped by PID.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Tools, ToolsError, http};

/// The emulator settings sagaform needs, applied before any resource is created: Step Functions
/// executions really run, and Lambda never tries Docker.
pub const CONFIG: &str =
    r#"{"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker": false}}"#;

/// The Python launcher of moto (see the file's docstring): serves on a loopback port, forwards
/// Lambda Invoke to sagaform-local once it registers, and leaves SQS event source mappings to
/// sagaform-local's poller. With `--exit-with-parent` it exits when its parent (the test binary)
/// is gone, so a killed test run leaves no server behind.
pub const LAUNCHER: &str = include_str!("moto_launcher.py");

/// Writes [`LAUNCHER`] to `<tools dir>/moto_launcher.py` (when it differs) and returns its path,
/// so that the process shows as `python .../moto_launcher.py PORT` rather than the whole script.
fn launcher_file(tools: &Tools) -> Result<std::path::PathBuf, ToolsError> {
    let path = tools.dir().join("moto_launcher.py");
    if std::fs::read_to_string(&path).is_ok_and(|current| current == LAUNCHER) {
        return Ok(path);
    }
    // Written aside and renamed, so a concurrent start never runs a half-written file.
    let partial = tools
        .dir()
        .join(format!("moto_launcher.py.{}", std::process::id()));
    std::fs::write(&partial, LAUNCHER).map_err(crate::io_err("write", &partial))?;
    std::fs::rename(&partial, &path).map_err(crate::io_err("rename", &path))?;
    Ok(path)
}

/// A moto server owned by this process.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Starts moto on a free loopback port, configured for sagaform, and waits until it answers.
    pub fn start(tools: &Tools) -> Result<MotoServer, ToolsError> {
        let port = free_port()?;
        let mut child = Command::new(tools.bin("python"))
            .arg(launcher_file(tools)?)
            .args([&port.to_string(), "--exit-with-parent"])
            // moto builds URLs (queue URLs, callbacks) from MOTO_PORT; it must be the real port.
            .env("MOTO_PORT", port.to_string())
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ToolsError::Moto(format!("cannot start python: {e}")))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut first_line = String::new();
        let read = BufReader::new(stdout).read_line(&mut first_line);
        let server = MotoServer { child, port };
        if read.is_err() || first_line.trim() != "ready" {
            return Err(ToolsError::Moto(format!(
                "did not start on port {port} (is moto installed in .tools/venv?)"
            )));
        }
        wait_ready(port, Duration::from_secs(30))?;
        configure(port)?;
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL for AWS clients (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        endpoint(self.port)
    }

    /// Forgets every resource, as after a fresh start (the configuration is applied again).
    pub fn reset(&self) -> Result<(), ToolsError> {
        post(self.port, "/moto-api/reset", "")?;
        configure(self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The endpoint URL of a moto server on a loopback port.
pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Starts moto (through [`LAUNCHER`]) on `port` in its own process group so it outlives this
/// process; its output goes to `log`. Returns its PID. Callers record the PID and stop it by PID.
pub fn start_detached(tools: &Tools, port: u16, log: &Path) -> Result<u32, ToolsError> {
    use std::os::unix::process::CommandExt;
    let log_file = std::fs::File::create(log).map_err(crate::io_err("create", log))?;
    let err_file = log_file.try_clone().map_err(crate::io_err("open", log))?;
    let child = Command::new(tools.bin("python"))
        .arg(launcher_file(tools)?)
        .arg(port.to_string())
        .env("MOTO_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .process_group(0)
        .spawn()
        .map_err(|e| ToolsError::Moto(format!("cannot start moto_server: {e}")))?;
    let pid = child.id();
    wait_ready(port, Duration::from_secs(30))?;
    configure(port)?;
    Ok(pid)
}

/// Whether something answers like moto on this loopback port.
pub fn is_running(port: u16) -> bool {
    // `/moto-api/config` answers in constant time; `/moto-api/data.json` serializes every
    // resource and fails with a 500 once some resource types exist.
    http::request(
        addr(port),
        "GET",
        "/moto-api/config",
        None,
        Duration::from_millis(500),
    )
    .is_ok_and(|r| r.status / 100 == 2 && r.body.trim_start().starts_with('{'))
}

/// Waits until moto answers on `port`.
pub fn wait_ready(port: u16, timeout: Duration) -> Result<(), ToolsError> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if is_running(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(ToolsError::Moto(format!(
        "no answer on 127.0.0.1:{port} after {} s",
        timeout.as_secs()
    )))
}

/// Applies [`CONFIG`]; must happen before any resource is created.
pub fn configure(port: u16) -> Result<(), ToolsError> {
    post(port, "/moto-api/config", CONFIG)
}

fn post(port: u16, path: &str, body: &str) -> Result<(), ToolsError> {
    let response = http::request(
        addr(port),
        "POST",
        path,
        Some(body),
        Duration::from_secs(10),
    )
    .map_err(|e| ToolsError::Moto(format!("POST {path}: {e}")))?;
    if response.status / 100 == 2 {
        Ok(())
    } else {
        Err(ToolsError::Moto(format!(
            "POST {path}: status {}: {}",
            response.status, response.body
        )))
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, ToolsError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| ToolsError::Moto(format!("no free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| ToolsError::Moto(format!("no free port: {e}")))
}
