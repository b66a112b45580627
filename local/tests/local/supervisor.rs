//! The supervisor serves a stack deployed through CloudFormation on moto: functions from the
//! artifact bucket with the stack's environment, the HTTP API from the template's routes, the
//! SQS event source mapping with its settings, invokes forwarded from moto; it writes a state
//! file, stops cleanly, and a restart after a crash leaves no stray processes.

use crate::common;

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use common::*;
use sagaform_local::discovery::emulator_config;
use sagaform_local::{LocalEnvironment, LocalState, UpOptions, moto_forward};
use sagaform_tools::Tools;
use sagaform_tools::moto::MotoServer;
use serde_json::{Value, json};

const STACK: &str = "sagaform-sqs-local";

/// Deploys a small sqs-pattern-shaped stack whose functions are the test binary.
async fn deploy(moto: &MotoServer, record_file: &Path) -> aws_config::SdkConfig {
    let config = emulator_config(&moto.endpoint(), "us-east-1").await;
    let binary = std::fs::read(test_lambda()).unwrap();
    let zip = sagaform_local::zip::single_stored_entry("bootstrap", &binary);
    put_object(&config, "artifacts", "api/abc.zip", zip.clone()).await;
    put_object(&config, "artifacts", "worker/def.zip", zip).await;
    let template = format!(
        r#"
Parameters:
  ArtifactBucket: {{Type: String}}
  ApiCodeKey: {{Type: String}}
  WorkerCodeKey: {{Type: String}}
  RecordFile: {{Type: String}}
Resources:{ROLE_RESOURCE}
  Dlq:
    Type: AWS::SQS::Queue
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 5
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: 3
  ApiFunction:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: provided.al2023
      Handler: bootstrap
      Timeout: 120
      Role: !GetAtt FunctionRole.Arn
      Code:
        S3Bucket: !Ref ArtifactBucket
        S3Key: !Ref ApiCodeKey
      Environment:
        Variables:
          SAGAFORM_PATTERN: sqs
          SAGAFORM_QUEUE_URL: !Ref Queue
  WorkerFunction:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: provided.al2023
      Handler: bootstrap
      Timeout: 5
      Role: !GetAtt FunctionRole.Arn
      Code:
        S3Bucket: !Ref ArtifactBucket
        S3Key: !Ref WorkerCodeKey
      Environment:
        Variables:
          TEST_LAMBDA_RECORD_FILE: !Ref RecordFile
  WorkerMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: !GetAtt Queue.Arn
      FunctionName: !Ref WorkerFunction
      BatchSize: 5
      MaximumBatchingWindowInSeconds: 1
      FunctionResponseTypes: [ReportBatchItemFailures]
      ScalingConfig: {{MaximumConcurrency: 2}}
  HttpApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: sagaform-sqs-local
      ProtocolType: HTTP
  ApiIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref HttpApi
      IntegrationType: AWS_PROXY
      IntegrationUri: !GetAtt ApiFunction.Arn
      PayloadFormatVersion: "2.0"
      TimeoutInMillis: 29000
  PostTransaction:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref HttpApi
      RouteKey: POST /transactions
      Target: !Join ["/", [integrations, !Ref ApiIntegration]]
  GetTransaction:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref HttpApi
      RouteKey: GET /transactions/{{id}}
      Target: !Join ["/", [integrations, !Ref ApiIntegration]]
"#
    );
    let record_file = record_file.display().to_string();
    create_stack(
        &config,
        STACK,
        &template,
        &[
            ("ArtifactBucket", "artifacts"),
            ("ApiCodeKey", "api/abc.zip"),
            ("WorkerCodeKey", "worker/def.zip"),
            ("RecordFile", &record_file),
        ],
    )
    .await;
    config
}

async fn queue_url(config: &aws_config::SdkConfig) -> String {
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let resource = cfn
        .describe_stack_resource()
        .stack_name(STACK)
        .logical_resource_id("Queue")
        .send()
        .await
        .unwrap();
    resource
        .stack_resource_detail()
        .unwrap()
        .physical_resource_id()
        .unwrap()
        .to_owned()
}

fn function_of_role<'a>(
    state: &'a LocalState,
    role: &str,
) -> &'a sagaform_local::state::FunctionState {
    state
        .functions
        .iter()
        .find(|f| f.role.as_deref() == Some(role))
        .unwrap_or_else(|| panic!("no {role} function in {state:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_stack_is_served_end_to_end_and_stops_cleanly() {
    let tools = Tools::ensure().expect("install pinned tools");
    let moto = MotoServer::start(&tools).expect("start moto");
    let dir = scratch("supervisor-e2e");
    let record_file = dir.join("records.jsonl");
    let config = deploy(&moto, &record_file).await;
    // moto's physical id of a queue is an AWS-style URL; GetQueueUrl answers a local one.
    let queue_physical_id = queue_url(&config).await;
    let queue_name = queue_physical_id.rsplit('/').next().unwrap().to_owned();

    let options = UpOptions::for_pattern("sqs", "local", &moto.endpoint(), dir.join("state"));
    let environment = LocalEnvironment::start(options).await.expect("start");

    let state = LocalState::read(&dir.join("state"))
        .unwrap()
        .expect("state file");
    assert_eq!(state.pid, std::process::id());
    assert_eq!(state.stack_name, STACK);
    assert!(state.invoke_forwarding);
    assert_eq!(state.api_url, environment.api_url());
    assert_eq!(function_of_role(&state, "api").timeout_seconds, 120);
    assert!(
        function_of_role(&state, "worker")
            .bootstrap
            .starts_with(dir.join("state/functions"))
    );
    let mapping = &state.event_source_mappings[0];
    assert_eq!(mapping.batch_size, 5);
    assert_eq!(mapping.batching_window_seconds, 1);
    assert!(mapping.report_batch_item_failures);
    assert_eq!(mapping.maximum_concurrency, Some(2));
    assert_eq!(mapping.visibility_timeout_seconds, Some(5));
    assert!(
        mapping.queue_url.ends_with(&format!("/{queue_name}")),
        "{mapping:?}"
    );
    let queue = mapping.queue_url.clone();
    let mut route_keys: Vec<&str> = state.routes.iter().map(|r| r.route_key.as_str()).collect();
    route_keys.sort();
    assert_eq!(route_keys, ["GET /transactions/{id}", "POST /transactions"]);

    // The HTTP API reaches the api function with a payload 2.0 event.
    let api_url = state.api_url.clone().unwrap();
    let response = reqwest::Client::new()
        .post(format!("{api_url}/transactions"))
        .body(r#"{"player_id":"p1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["routeKey"], "POST /transactions");

    // An Invoke sent to moto runs the real binary, with the environment the stack resolved.
    let lambda = aws_sdk_lambda::Client::new(&config);
    let api_name = function_of_role(&state, "api").name.clone();
    let invoked = lambda
        .invoke()
        .function_name(&api_name)
        .payload(Blob::new(
            json!({"env": ["SAGAFORM_QUEUE_URL", "AWS_ENDPOINT_URL"]}).to_string(),
        ))
        .send()
        .await
        .unwrap();
    let env: Value = serde_json::from_slice(invoked.payload().unwrap().as_ref()).unwrap();
    assert_eq!(env["SAGAFORM_QUEUE_URL"], queue_physical_id.as_str());
    assert_eq!(env["AWS_ENDPOINT_URL"], moto.endpoint().as_str());

    // A message sent to the queue is delivered by the local poller (moto's own delivery is
    // off, or it would have consumed the message without running anything).
    let sqs = aws_sdk_sqs::Client::new(&config);
    sqs.send_message()
        .queue_url(&queue)
        .message_body("ok-1")
        .send()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the worker processes the message",
        || {
            let record_file = record_file.clone();
            async move {
                std::fs::read_to_string(&record_file)
                    .unwrap_or_default()
                    .contains("\"ok-1\"")
            }
        },
    )
    .await;

    let running: Vec<u64> = environment
        .functions()
        .iter()
        .flat_map(|f| f.processes())
        .map(|p| u64::from(p.pid))
        .collect();
    assert!(!running.is_empty());
    let invoke_url = environment.invoke_url();
    environment.shutdown().await.unwrap();
    for pid in running {
        assert!(!alive(pid), "function process {pid} outlived shutdown");
    }
    assert!(
        LocalState::read(&dir.join("state")).unwrap().is_none(),
        "state file removed"
    );
    let forwarding = moto_forward::forwarding(&moto.endpoint())
        .await
        .unwrap()
        .expect("moto started by the launcher forwards");
    assert!(
        !forwarding.routes.values().any(|url| *url == invoke_url),
        "unregistered from moto: {forwarding:?}"
    );
}

/// Kills the process group of a supervisor started by a test, whatever happens to the test.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// Starts `sagaform-local up` in its own process group (as `cargo xtask local up` does) and
/// returns it with the state it printed when ready.
fn start_binary(
    moto: &MotoServer,
    state_dir: &Path,
) -> (std::process::Child, GroupGuard, LocalState) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sagaform-local"))
        .args([
            "up",
            "--stack",
            STACK,
            "--moto-endpoint",
            &moto.endpoint(),
            "--state-dir",
        ])
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let guard = GroupGuard(child.id());
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let state: LocalState = serde_json::from_str(&line).expect("the ready line is the state");
    (child, guard, state)
}

async fn invoke_event(invoke_url: &str, function: &str, payload: Value) {
    let status = reqwest::Client::new()
        .post(format!(
            "{invoke_url}/2015-03-31/functions/{function}/invocations"
        ))
        .header("X-Amz-Invocation-Type", "Event")
        .body(payload.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_crash_leaves_no_stray_processes() {
    let tools = Tools::ensure().expect("install pinned tools");
    let moto = MotoServer::start(&tools).expect("start moto");
    let dir = scratch("supervisor-crash");
    deploy(&moto, &dir.join("records.jsonl")).await;
    let state_dir: PathBuf = dir.join("state");

    let (mut first, _first_guard, state) = start_binary(&moto, &state_dir);
    assert_eq!(state.pid, first.id());
    let api = function_of_role(&state, "api").name.clone();
    // A long invocation keeps a bootstrap busy: it will not notice the crash by itself.
    invoke_event(&state.invoke_url, &api, json!({"sleep_ms": 100_000})).await;
    let mut busy_pid = 0;
    eventually(
        Duration::from_secs(20),
        "the state file lists the busy process",
        || {
            let state_dir = state_dir.clone();
            let api = api.clone();
            let busy_pid = &mut busy_pid;
            let state = LocalState::read(&state_dir).unwrap().unwrap();
            let pid = state
                .functions
                .iter()
                .find(|f| f.name == api)
                .and_then(|f| f.processes.first())
                .map(|p| p.pid);
            *busy_pid = pid.unwrap_or(0);
            async move { pid.is_some() }
        },
    )
    .await;

    first.kill().unwrap(); // SIGKILL: no cleanup runs.
    first.wait().unwrap();
    assert!(
        alive(u64::from(busy_pid)),
        "the busy bootstrap survived the crash"
    );

    let (mut second, _second_guard, restarted) = start_binary(&moto, &state_dir);
    assert!(
        !alive(u64::from(busy_pid)),
        "the restart killed the stray bootstrap"
    );
    assert_eq!(restarted.pid, second.id());
    let response = reqwest::Client::new()
        .get(format!(
            "{}/transactions/tx-1",
            restarted.api_url.clone().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "the restarted environment serves");
    let forwarding = moto_forward::forwarding(&moto.endpoint())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        forwarding.endpoint_for(&api),
        Some(restarted.invoke_url.as_str()),
        "moto forwards to the new instance"
    );

    let stop = Command::new(env!("CARGO_BIN_EXE_sagaform-local"))
        .args(["stop", "--state-dir"])
        .arg(&state_dir)
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    assert!(
        String::from_utf8_lossy(&stop.stdout).contains(&format!("pid {}", second.id())),
        "{stop:?}"
    );
    assert!(!alive(u64::from(second.id())), "stop ended the supervisor");
    assert!(
        second.wait().unwrap().success(),
        "SIGTERM is a clean shutdown"
    );
    assert!(LocalState::read(&state_dir).unwrap().is_none());
    let forwarding = moto_forward::forwarding(&moto.endpoint())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        forwarding.endpoint_for(&api),
        None,
        "stop left no forwarding behind"
    );
}
