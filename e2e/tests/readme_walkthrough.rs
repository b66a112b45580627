//! The README's walkthrough, run as written for every pattern: each command of its code blocks
//! goes through `bash` from the checkout's root, with `sqs` and `9302` replaced by the pattern
//! and its port as the README says, and `<transaction_id>` by the id of the last submission.
//! What the README promises in its prose (202 and a status URL, COMPLETED, each effect once,
//! COMPENSATED with nothing left, a SaaS that stays down parking the saga IN_DOUBT and `saga
//! retry` completing it with each effect once, COMPENSATION_FAILED and its
//! message in the DLQ within seconds, the DLQ purged, nothing left running after the tear-down)
//! is checked on what the commands print.
//!
//! The walkthrough deploys the local env on its fixed ports (emulator 4566, fake SaaS 9320, APIs
//! 9301 to 9303), so this test fails at once, saying so, when a local env already runs on this
//! machine. A command the test does not know fails it too: a new walkthrough step needs its
//! expectation here.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Ports the local env binds.
const LOCAL_PORTS: [u16; 5] = [4566, 9320, 9301, 9302, 9303];

/// How long a saga of the walkthrough may take to reach the status the README promises.
const SAGA_LIMIT: Duration = Duration::from_secs(90);

/// How long a single command may run (a deploy may build the functions first).
const COMMAND_LIMIT: Duration = Duration::from_secs(900);

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate is in the workspace")
        .to_path_buf()
}

/// The commands of the walkthrough's code blocks, continuation lines joined, in order.
fn walkthrough_commands(readme: &str) -> Vec<String> {
    let start = readme
        .find("## Walkthrough")
        .expect("the README has a Walkthrough section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in section[..end].lines() {
        let Some(code) = line.strip_prefix("    ") else {
            continue;
        };
        let code = code.trim_end();
        match code.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(code);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// What a command printed.
#[derive(Debug)]
struct Ran {
    command: String,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn output(&self) -> String {
        format!(
            "$ {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.stdout, self.stderr
        )
    }

    fn expect_success(&self) -> &Ran {
        assert!(self.success, "the command failed:\n{}", self.output());
        self
    }
}

/// Runs `command` with bash in the checkout. Output goes to files, not pipes: the deploy leaves
/// the emulator and the functions running, and they must not hold this test's pipes open.
fn run(command: &str, scratch: &Path) -> Ran {
    let stdout_path = scratch.join("stdout");
    let stderr_path = scratch.join("stderr");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(checkout())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start bash for `{command}`: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{command}` ran longer than {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ran = Ran {
        command: command.to_owned(),
        success: status.success(),
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    };
    // The transcript, shown when the test fails.
    println!(
        "[{:.1} s, {}]\n{}",
        started.elapsed().as_secs_f64(),
        if ran.success { "ok" } else { "failed" },
        ran.output()
    );
    ran
}

/// An HTTP answer printed by `curl -si`: status, headers (lower-case names), JSON body.
fn parse_http(ran: &Ran) -> (u16, Vec<(String, String)>, Value) {
    let text = ran.stdout.replace("\r\n", "\n");
    let (head, body) = text
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("not an HTTP answer:\n{}", ran.output()));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line:\n{}", ran.output()));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("the body is not JSON ({e}):\n{}", ran.output()));
    (status, headers, body)
}

fn json(ran: &Ran) -> Value {
    serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", ran.output()))
}

fn port_in_use(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Stops whatever the walkthrough started, also when an assertion failed half-way, and removes
/// the scratch folder. It never panics: it may run while the test is unwinding.
struct StopLocalEnv<'a>(&'a Path);

impl Drop for StopLocalEnv<'_> {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["-c", "cargo xtask local stop"])
            .current_dir(checkout())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(self.0);
    }
}

/// One pattern's run through the walkthrough.
struct Walk<'a> {
    pattern: &'a str,
    port: u16,
    scratch: &'a Path,
    /// The statuses the README promises, in the order its status polls come.
    expected_statuses: Vec<&'static str>,
    transaction_id: Option<String>,
    last_status: Option<String>,
    /// Deploys run so far.
    deploys: u32,
}

impl Walk<'_> {
    fn step(&mut self, readme_command: &str) {
        let mut command = readme_command
            .replace("--pattern sqs", &format!("--pattern {}", self.pattern))
            .replace("9302", &self.port.to_string());
        if command.contains("<transaction_id>") {
            let id = self
                .transaction_id
                .clone()
                .unwrap_or_else(|| panic!("`{readme_command}` comes before any submission"));
            command = command.replace("<transaction_id>", &id);
        }
        let api = format!("http://127.0.0.1:{}", self.port);
        let is_sqs = self.pattern == "sqs";

        if command.starts_with("cargo xtask deploy") {
            let ran = run(&command, self.scratch);
            ran.expect_success();
            assert!(
                ran.stdout.contains(&format!("API: {api}")),
                "the deploy does not print the API URL:\n{}",
                ran.output()
            );
            self.deploys += 1;
            if self.deploys > 1 {
                // "Deploying again with nothing changed is a no-op ... the functions already
                // running are kept."
                assert!(
                    ran.stderr.contains("no changes, nothing to deploy")
                        && ran.stderr.contains("functions already running"),
                    "the second deploy changed something:\n{}",
                    ran.output()
                );
            }
        } else if command.starts_with("cargo xtask local status") {
            let ran = run(&command, self.scratch);
            let printed = format!("{}{}", ran.expect_success().stdout, ran.stderr);
            assert!(
                printed.contains(&format!("127.0.0.1:{}", self.port)),
                "status does not show the API:\n{}",
                ran.output()
            );
        } else if command.starts_with(&format!("curl -si -X POST {api}/transactions")) {
            let ran = run(&command, self.scratch);
            let (status, headers, body) = parse_http(ran.expect_success());
            let id = body["transaction_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no transaction_id:\n{}", ran.output()))
                .to_owned();
            if self.pattern == "orchestrator" {
                let finished = match body["status"].as_str() {
                    Some("COMPLETED") => status == 200,
                    Some("COMPENSATED") => {
                        status == 422 && body["error_code"] == "saga_compensated"
                    }
                    Some("COMPENSATION_FAILED") => {
                        status == 500 && body["error_code"] == "saga_compensation_failed"
                    }
                    Some("IN_DOUBT") => status == 202 && body["error_code"] == "saga_in_doubt",
                    _ => false,
                };
                assert!(
                    finished,
                    "the orchestrator answers with the finished saga:\n{}",
                    ran.output()
                );
            } else {
                assert_eq!(status, 202, "{}", ran.output());
                let location = headers.iter().find(|(name, _)| name == "location");
                assert_eq!(
                    location.map(|(_, value)| value.as_str()),
                    Some(format!("/transactions/{id}").as_str()),
                    "{}",
                    ran.output()
                );
            }
            self.transaction_id = Some(id);
        } else if command.starts_with(&format!("curl -s {api}/transactions/")) {
            let expected = self.expected_statuses.remove(0);
            let started = Instant::now();
            // "Poll the status URL until": the promised status, or a terminal one, which does
            // not change any more.
            let view = loop {
                let view = json(run(&command, self.scratch).expect_success());
                let status = view["status"].as_str().unwrap_or_default();
                if status == expected
                    || [
                        "COMPLETED",
                        "COMPENSATED",
                        "COMPENSATION_FAILED",
                        "IN_DOUBT",
                        "FAILED",
                    ]
                    .contains(&status)
                    || started.elapsed() > SAGA_LIMIT
                {
                    break view;
                }
                std::thread::sleep(Duration::from_millis(250));
            };
            assert_eq!(view["status"], expected, "{}: {view:#}", self.pattern);
            self.last_status = Some(expected.to_owned());
        } else if command.starts_with("curl -s http://127.0.0.1:9320/_ledger/") {
            let ledger = json(run(&command, self.scratch).expect_success());
            let services = ledger["services"]
                .as_object()
                .unwrap_or_else(|| panic!("no services in the ledger: {ledger:#}"));
            match self.last_status.as_deref() {
                Some("COMPLETED") => {
                    for service in ["inventory", "payments", "entitlements"] {
                        assert_eq!(
                            services[service]["actions_applied"]
                                .as_array()
                                .map(Vec::len),
                            Some(1),
                            "{}: each effect once: {ledger:#}",
                            self.pattern
                        );
                    }
                }
                Some("COMPENSATED") => {
                    for (service, seen) in services {
                        assert_eq!(
                            seen["outstanding"], 0,
                            "{}: nothing left standing at {service}: {ledger:#}",
                            self.pattern
                        );
                    }
                }
                other => panic!("the ledger is read before a status was seen: {other:?}"),
            }
        } else if command.starts_with("curl -s -X POST http://127.0.0.1:9320/_faults")
            || command.starts_with("curl -s -X DELETE http://127.0.0.1:9320/_faults")
        {
            let ran = run(&command, self.scratch);
            assert!(
                !ran.expect_success().stdout.contains("error"),
                "the fake SaaS refused the fault:\n{}",
                ran.output()
            );
        } else if command.starts_with("cargo xtask saga retry") {
            // "Once the provider answers again, `saga retry` asks the charge again": only a saga
            // seen IN_DOUBT is asked again, and the command names it.
            assert_eq!(self.last_status.as_deref(), Some("IN_DOUBT"));
            let ran = run(&command, self.scratch);
            let id = self.transaction_id.as_deref().unwrap_or_default();
            assert!(
                ran.expect_success().stdout.contains(id),
                "saga retry does not name the saga:\n{}",
                ran.output()
            );
        } else if command.starts_with("cargo xtask local logs")
            || command.starts_with("cargo xtask saga show")
        {
            let ran = run(&command, self.scratch);
            let id = self.transaction_id.as_deref().unwrap_or_default();
            assert!(
                ran.expect_success().stdout.contains(id),
                "the saga's id is not in what was printed:\n{}",
                ran.output()
            );
        } else if command.starts_with("cargo xtask dlq list") {
            if self.pattern == "stepfunctions" {
                expect_no_dead_letter_queue(run(&command, self.scratch));
            } else if is_sqs {
                // "Its message then goes to the dead-letter queue within seconds."
                let id = self.transaction_id.clone().unwrap_or_default();
                let started = Instant::now();
                loop {
                    let ran = run(&command, self.scratch);
                    if ran.expect_success().stdout.contains(&id) {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "the message is not in the DLQ after 30 s:\n{}",
                        ran.output()
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                let saga = json(
                    run(&format!("curl -s {api}/transactions/{id}"), self.scratch).expect_success(),
                );
                assert_eq!(
                    saga["status"], "COMPENSATION_FAILED",
                    "the saga needs a human: {saga:#}"
                );
            } else {
                run(&command, self.scratch).expect_success();
            }
        } else if command.starts_with("cargo xtask dlq purge") {
            let ran = run(&command, self.scratch);
            if self.pattern == "stepfunctions" {
                expect_no_dead_letter_queue(ran);
            } else {
                ran.expect_success();
                let list = command
                    .replace("dlq purge", "dlq list")
                    .replace(" --yes", "");
                let listed = run(&list, self.scratch);
                let id = self.transaction_id.clone().unwrap_or_default();
                assert!(
                    !listed.expect_success().stdout.contains(&id),
                    "the purged message is still listed:\n{}",
                    listed.output()
                );
            }
        } else if command.starts_with("cargo xtask destroy")
            || command.starts_with("cargo xtask local stop")
        {
            run(&command, self.scratch).expect_success();
        } else {
            panic!(
                "the walkthrough has a command this test does not know; add what it must do: {readme_command}"
            );
        }
    }
}

fn expect_no_dead_letter_queue(ran: Ran) {
    assert!(
        !ran.success && ran.stderr.contains("has no dead-letter queue"),
        "stepfunctions has no DLQ, and the command says so:\n{}",
        ran.output()
    );
}

#[test]
fn the_readme_walkthrough_works_as_written_for_every_pattern() {
    let busy: Vec<u16> = LOCAL_PORTS
        .into_iter()
        .filter(|p| port_in_use(*p))
        .collect();
    assert!(
        busy.is_empty(),
        "ports {busy:?} are in use: a local env runs on this machine (`cargo xtask local status`). \
         This test deploys the README's local env on those ports; stop it first with \
         `cargo xtask local stop`"
    );
    let readme = std::fs::read_to_string(checkout().join("README.md")).unwrap();
    let commands = walkthrough_commands(&readme);
    assert!(
        commands.len() >= 10,
        "the walkthrough lost its commands: {commands:#?}"
    );
    let scratch = std::env::temp_dir().join(format!("sagaform-walkthrough-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let _stop = StopLocalEnv(&scratch);

    for (pattern, port, expected_statuses) in [
        (
            "sqs",
            9302,
            vec![
                "COMPLETED",
                "COMPENSATED",
                "IN_DOUBT",
                "COMPLETED",
                "COMPENSATION_FAILED",
            ],
        ),
        (
            "stepfunctions",
            9303,
            vec![
                "COMPLETED",
                "COMPENSATED",
                "IN_DOUBT",
                "COMPLETED",
                "COMPENSATION_FAILED",
            ],
        ),
        (
            "orchestrator",
            9301,
            vec![
                "COMPLETED",
                "COMPENSATED",
                "IN_DOUBT",
                "COMPLETED",
                "COMPENSATION_FAILED",
            ],
        ),
    ] {
        let mut walk = Walk {
            pattern,
            port,
            scratch: &scratch,
            expected_statuses,
            transaction_id: None,
            last_status: None,
            deploys: 0,
        };
        for command in &commands {
            walk.step(command);
        }
        assert!(
            walk.expected_statuses.is_empty(),
            "{pattern}: the walkthrough polled fewer statuses than expected: {:?}",
            walk.expected_statuses
        );
        // Stopped processes release their ports within moments.
        let stopped = Instant::now();
        let mut left: Vec<u16> = LOCAL_PORTS
            .into_iter()
            .filter(|p| port_in_use(*p))
            .collect();
        while !left.is_empty() && stopped.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(200));
            left.retain(|p| port_in_use(*p));
        }
        assert!(
            left.is_empty(),
            "{pattern}: after the tear-down, ports {left:?} still answer"
        );
    }
}
