//! The `fake-saas` binary: announces its URL once ready, serves, and refuses non-loopback
//! addresses.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_its_url_when_ready_and_serves_the_ledger() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-saas"))
        .args(["--listen", "127.0.0.1:0", "--seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("ready line: {line:?}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let ledger = reqwest::get(format!("{url}/_ledger")).await.unwrap();
    assert_eq!(ledger.status(), reqwest::StatusCode::OK);

    // SIGTERM, as a supervisor or a test harness sends it, is a clean stop.
    let mut running = running;
    let pid = running.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || {
        let status = running.0.wait().unwrap();
        drop(running);
        status
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn the_binary_refuses_to_listen_beyond_loopback() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-saas"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
