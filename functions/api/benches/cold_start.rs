//! Cold start and package size of the three Lambda functions (issue 3, item 9), printed as plain
//! lines; targets: init under 30 ms, zip under 4 MB.
//!
//! Run: `cargo bench -p sagaform-api --bench cold_start`. It builds `api`, `worker` and `step` with the
//! deploy's own build (`sagaform_deploy::build::build_functions`: pinned cargo-lambda, profile
//! `lambda-aws`, host architecture, the AL2023 glibc check, the deterministic deflate zip), unless
//! `SAGAFORM_BENCH_SKIP_BUILD=1` (then it measures the `target/lambda/<function>/bootstrap`
//! already there, as the last cargo-lambda build left it);
//! `SAGAFORM_BENCH_PROFILE` picks another profile.
//!
//! Cold start: each `bootstrap` is started with `AWS_LAMBDA_RUNTIME_API` pointing at a listener
//! of this process and the environment a deployed function gets (pattern, store, SaaS URLs,
//! region, static credentials); the time from spawning the process to its first
//! `GET /2018-06-01/runtime/invocation/next` is what the function spends before it can take its
//! first event (logging set-up, configuration, AWS clients, and for the `aurora` store the
//! PostgreSQL connection and migration check). Median, minimum and 90th percentile of
//! `SAGAFORM_BENCH_RUNS` (default 21) starts after one unmeasured start (page cache). It does not
//! include what Lambda itself adds (sandbox, code download).
//!
//! Size: the stripped binary and the zip the deploy uploads (`sagaform_deploy::Artifact`).

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sagaform_deploy::build::{BuildRequest, RELEASE_PROFILE, build_functions, host_architecture};
use sagaform_deploy::{Artifact, Progress, Workspace};

const FUNCTIONS: [&str; 3] = ["api", "worker", "step"];
const INIT_TARGET_MS: f64 = 30.0;
const ZIP_TARGET_BYTES: u64 = 4 * 1024 * 1024;
/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The database the `aurora` configurations use on the local server (created if missing).
const BENCH_DATABASE: &str = "sagaform_bench";

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root");
    let workspace = Workspace::new(&root);
    let profile =
        std::env::var("SAGAFORM_BENCH_PROFILE").unwrap_or_else(|_| RELEASE_PROFILE.to_owned());
    let runs: usize = std::env::var("SAGAFORM_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(21)
        .max(1);
    if std::env::var("SAGAFORM_BENCH_SKIP_BUILD").is_err() {
        build(&workspace, &profile);
    }
    let postgres = prepare_database();
    println!(
        "cold_start: profile {profile}, {runs} starts per configuration after one warm-up, target < {INIT_TARGET_MS} ms"
    );
    let mut summary = Vec::new();
    for function in FUNCTIONS {
        let binary = workspace.lambda_binary(function);
        let artifact = match Artifact::from_bootstrap_file(function, &binary) {
            Ok(artifact) => artifact,
            Err(e) => {
                println!("{function}: no package: {e}");
                continue;
            }
        };
        let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
        let zipped = artifact.zip().len() as u64;
        println!(
            "{function}: binary {} | deploy zip (deflate) {} {}",
            mib(size),
            mib(zipped),
            verdict(zipped <= ZIP_TARGET_BYTES),
        );
        for (label, env) in configurations(function, postgres.as_deref()) {
            match measure(&binary, &env, runs) {
                Ok(times) => {
                    let stats = Stats::of(times);
                    println!(
                        "{function} [{label}]: init median {:.1} ms, min {:.1} ms, p90 {:.1} ms {}",
                        stats.median,
                        stats.min,
                        stats.p90,
                        verdict(stats.median < INIT_TARGET_MS)
                    );
                    summary.push((format!("{function} [{label}]"), stats.median));
                }
                Err(e) => println!("{function} [{label}]: failed: {e}"),
            }
        }
    }
    if postgres.is_none() {
        println!(
            "aurora configurations not measured: PostgreSQL is not reachable at 127.0.0.1:5432"
        );
    }
    if let Some((name, worst)) = summary.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        println!("slowest start: {name} {worst:.1} ms median");
    }
}

/// The deploy's build, so the figures are the deployed binaries' and zips'.
fn build(workspace: &Workspace, profile: &str) {
    let tools = sagaform_tools::Tools::ensure()
        .expect("install the pinned tools (cargo-lambda) into .tools/venv");
    let request = BuildRequest {
        functions: FUNCTIONS.iter().map(|f| (*f).to_owned()).collect(),
        architecture: host_architecture()
            .expect("a host architecture Lambda has (x86_64 or aarch64)"),
        profile: profile.to_owned(),
    };
    build_functions(workspace, &tools, &request, &Progress::plain()).expect("build the functions");
}

/// Creates the bench database on the local server; `None` when there is no server.
fn prepare_database() -> Option<String> {
    let psql = |sql: &str, database: &str| {
        Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                database,
                "-tAc",
                sql,
            ])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let exists = psql(
        &format!("SELECT 1 FROM pg_database WHERE datname = '{BENCH_DATABASE}'"),
        "test",
    )?;
    if exists != "1" {
        psql(&format!("CREATE DATABASE {BENCH_DATABASE}"), "test")?;
    }
    let url = format!("postgres://postgres@127.0.0.1:5432/{BENCH_DATABASE}");
    // The deploy step's migrations: a function checks the schema version, it never migrates.
    let settings = sagaform_runtime::store::PostgresSettings::from_url(&url).ok()?;
    tokio::runtime::Runtime::new()
        .ok()?
        .block_on(sagaform_runtime::store::migrate(&settings, None))
        .ok()?;
    Some(url)
}

/// The environments a function is started with: each pattern the function serves, with the
/// DynamoDB store, and with the aurora store on the local server when there is one.
fn configurations(
    function: &str,
    database_url: Option<&str>,
) -> Vec<(String, Vec<(String, String)>)> {
    let patterns: &[&str] = match function {
        "api" => &["orchestrator", "sqs", "stepfunctions"],
        "worker" => &["sqs"],
        _ => &["stepfunctions"],
    };
    let mut configurations = Vec::new();
    for pattern in patterns {
        configurations.push((
            format!("{pattern}, dynamodb"),
            environment(function, pattern, None),
        ));
    }
    if let Some(url) = database_url {
        configurations.push((
            format!("{}, aurora", patterns[0]),
            environment(function, patterns[0], Some(url)),
        ));
    }
    configurations
}

fn environment(function: &str, pattern: &str, database_url: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<(&str, String)> = vec![
        (
            "AWS_LAMBDA_FUNCTION_NAME",
            format!("sagaform-bench-{function}"),
        ),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/sagaform-bench-{function}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "bench".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench".into()),
        // Never contacted at init; set so no client looks for a real endpoint.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
        ("RUST_LOG", "info".into()),
        ("SAGAFORM_PATTERN", pattern.into()),
        (
            "SAGAFORM_QUEUE_URL",
            "http://127.0.0.1:9/123456789012/sagaform-bench".into(),
        ),
        (
            "SAGAFORM_STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:123456789012:stateMachine:sagaform-bench".into(),
        ),
    ];
    match database_url {
        Some(url) => {
            env.push(("SAGAFORM_STORE", "aurora".into()));
            env.push(("SAGAFORM_DATABASE_URL", url.into()));
        }
        None => {
            env.push(("SAGAFORM_STORE", "dynamodb".into()));
            env.push(("SAGAFORM_SAGA_TABLE", "sagaform-bench-sagas".into()));
            env.push((
                "SAGAFORM_IDEMPOTENCY_TABLE",
                "sagaform-bench-idempotency".into(),
            ));
        }
    }
    let mut env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    for service in ["INVENTORY", "PAYMENTS", "ENTITLEMENTS"] {
        env.push((
            format!("SAGAFORM_SAAS_{service}_URL"),
            "http://127.0.0.1:9".into(),
        ));
        env.push((
            format!("SAGAFORM_SAAS_{service}_CONNECT_TIMEOUT_MS"),
            "1000".into(),
        ));
        env.push((
            format!("SAGAFORM_SAAS_{service}_REQUEST_TIMEOUT_MS"),
            "3000".into(),
        ));
    }
    env
}

/// Starts `binary` `runs + 1` times; the init time of each start but the first.
fn measure(binary: &Path, env: &[(String, String)], runs: usize) -> Result<Vec<f64>, String> {
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let elapsed = start_once(binary, env)?;
        if run > 0 {
            times.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    Ok(times)
}

/// One start: spawn, wait for the first `invocation/next` request, stop the process.
fn start_once(binary: &Path, env: &[(String, String)]) -> Result<Duration, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
    let child = Arc::new(Mutex::new(child));
    let connected = Arc::new(AtomicBool::new(false));
    // A process that dies during init never connects: the watchdog notices (or gives up after
    // START_TIMEOUT) and connects itself, which unblocks accept.
    let watchdog = {
        let (child, connected) = (child.clone(), connected.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + START_TIMEOUT;
            while !connected.load(Ordering::SeqCst) {
                let exited = child
                    .lock()
                    .map(|mut c| matches!(c.try_wait(), Ok(Some(_))))
                    .unwrap_or(true);
                if exited || Instant::now() > until {
                    let _ = TcpStream::connect(address);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut first_line = String::new();
    let read = BufReader::new(&stream).read_line(&mut first_line);
    let elapsed = started.elapsed();
    connected.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    let mut child = child
        .lock()
        .map_err(|_| "the child lock is poisoned".to_owned())?;
    let _ = child.kill();
    let _ = child.wait();
    match read {
        Ok(_) if first_line.starts_with("GET /2018-06-01/runtime/invocation/next") => Ok(elapsed),
        _ => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            Err(format!(
                "exited or hung before asking for an invocation (got {first_line:?}): {}",
                stderr.trim()
            ))
        }
    }
}

struct Stats {
    median: f64,
    min: f64,
    p90: f64,
}

impl Stats {
    fn of(mut times: Vec<f64>) -> Stats {
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        Stats {
            median: at(0.5),
            min: times[0],
            p90: at(0.9),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB ({bytes} bytes)", bytes as f64 / 1024.0 / 1024.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "(within target)"
    } else {
        "(OVER TARGET)"
    }
}
