//! Step Functions Tasks (`arn:aws:states:::lambda:invoke`) run by moto's interpreter reach the
//! local function through the launcher's invoke forwarding, and Retry / Catch behave as on AWS:
//! they match the function's `errorType`.

use crate::common;

use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use common::*;
use sagaform_local::discovery::emulator_config;
use sagaform_local::{Functions, InvokeApi, LocalFunction, moto_forward};
use sagaform_tools::Tools;
use sagaform_tools::moto::MotoServer;
use serde_json::{Value, json};

struct Setup {
    _moto: MotoServer,
    _invoke_api: InvokeApi,
    function: LocalFunction,
    function_arn: String,
    sfn: aws_sdk_sfn::Client,
    dir: std::path::PathBuf,
}

/// moto with a Lambda function `step-fn` whose invokes are forwarded to the test binary.
async fn setup(name: &str) -> Setup {
    let tools = Tools::ensure().expect("install pinned tools");
    let moto = MotoServer::start(&tools).expect("start moto");
    let config = emulator_config(&moto.endpoint(), "us-east-1").await;
    // moto keeps the zip but never runs it; the local runtime runs the binary.
    let zip = sagaform_local::zip::single_stored_entry("bootstrap", b"placeholder");
    put_object(&config, "artifacts", "step.zip", zip).await;
    let template = format!(
        "Resources:{ROLE_RESOURCE}
  StepFunction:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: step-fn
      Runtime: provided.al2023
      Handler: bootstrap
      Role: !GetAtt FunctionRole.Arn
      Code: {{S3Bucket: artifacts, S3Key: step.zip}}
"
    );
    create_stack(&config, "sfn-test", &template, &[]).await;
    let function_arn = aws_sdk_lambda::Client::new(&config)
        .get_function()
        .function_name("step-fn")
        .send()
        .await
        .unwrap()
        .configuration()
        .unwrap()
        .function_arn()
        .unwrap()
        .to_owned();

    let dir = scratch(name);
    let function = function(
        spec("step-fn", Duration::from_secs(5), 2),
        &dir,
        Some(moto.endpoint()),
    );
    let invoke_api = InvokeApi::serve(Functions::new([function.clone()]), 0)
        .await
        .unwrap();
    moto_forward::register(
        &moto.endpoint(),
        &invoke_api.url(),
        Some(vec!["step-fn".into()]),
    )
    .await
    .expect("moto started by the sagaform launcher accepts the registration");
    Setup {
        sfn: aws_sdk_sfn::Client::new(&config),
        _moto: moto,
        _invoke_api: invoke_api,
        function,
        function_arn,
        dir,
    }
}

/// A saga-shaped machine: one Task with Retry on `Retryable` and Catch of everything into a
/// compensation Task, then Fail.
fn definition(function_arn: &str, payload: Value, compensation_file: &str) -> String {
    json!({
        "StartAt": "Reserve",
        "States": {
            "Reserve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload": payload},
                "ResultSelector": {"attempts.$": "$.Payload.attempts"},
                "ResultPath": "$.results.reserve",
                "Retry": [{
                    "ErrorEquals": ["Retryable"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 2,
                    "BackoffRate": 1.0
                }],
                "Catch": [{
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.error",
                    "Next": "Release"
                }],
                "Next": "Done"
            },
            "Release": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": function_arn,
                    "Payload": {"record_file": compensation_file, "record.$": "$.error"}
                },
                "ResultPath": "$.compensations.reserve",
                "Next": "Failed"
            },
            "Failed": {"Type": "Fail", "Error": "SagaFailed", "Cause": "compensated"},
            "Done": {"Type": "Succeed"}
        }
    })
    .to_string()
}

async fn run(
    setup: &Setup,
    payload: Value,
) -> (
    aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput,
    String,
) {
    let compensation_file = setup.dir.join("compensations.jsonl");
    let machine = setup
        .sfn
        .create_state_machine()
        .name("saga")
        .role_arn("arn:aws:iam::123456789012:role/sfn-role")
        .definition(definition(
            &setup.function_arn,
            payload,
            &compensation_file.display().to_string(),
        ))
        .send()
        .await
        .unwrap();
    let execution = setup
        .sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name("tx-1")
        .input(json!({"transaction_id": "tx-1"}).to_string())
        .send()
        .await
        .unwrap();
    let arn = execution.execution_arn().to_owned();
    eventually(Duration::from_secs(60), "the execution ends", || {
        let sfn = setup.sfn.clone();
        let arn = arn.clone();
        async move {
            let output = sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .unwrap();
            output.status() != &ExecutionStatus::Running
        }
    })
    .await;
    let described = setup
        .sfn
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .unwrap();
    let compensations = std::fs::read_to_string(compensation_file).unwrap_or_default();
    (described, compensations)
}

fn attempts(setup: &Setup) -> u64 {
    std::fs::read_to_string(setup.dir.join("counter"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_error_is_retried_until_the_task_succeeds() {
    let setup = setup("sfn-retry").await;
    let counter = setup.dir.join("counter").display().to_string();
    let (execution, compensations) = run(
        &setup,
        json!({"fail_times": 2, "counter_file": counter, "error_type": "Retryable"}),
    )
    .await;
    assert_eq!(
        execution.status(),
        &ExecutionStatus::Succeeded,
        "{execution:?}"
    );
    let output: Value = serde_json::from_str(execution.output().unwrap()).unwrap();
    assert_eq!(output["results"]["reserve"]["attempts"], 3);
    assert_eq!(output["transaction_id"], "tx-1");
    assert_eq!(attempts(&setup), 3, "one call and two retries");
    assert!(compensations.is_empty(), "no compensation on success");
    setup.function.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_is_not_retried_and_is_caught_into_the_compensation() {
    let setup = setup("sfn-permanent").await;
    let counter = setup.dir.join("counter").display().to_string();
    let (execution, compensations) = run(
        &setup,
        json!({"fail_times": 99, "counter_file": counter, "error_type": "Permanent"}),
    )
    .await;
    assert_eq!(
        execution.status(),
        &ExecutionStatus::Failed,
        "{execution:?}"
    );
    assert_eq!(execution.error(), Some("SagaFailed"));
    assert_eq!(attempts(&setup), 1, "Retry matches Retryable only");
    let caught: Value = serde_json::from_str(compensations.lines().next().unwrap()).unwrap();
    assert_eq!(
        caught["Error"], "Permanent",
        "Catch sees the function's errorType"
    );
    let cause: Value = serde_json::from_str(caught["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(cause["errorMessage"], "attempt 1 fails on purpose");
    setup.function.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_on_a_retryable_error_end_in_the_catch() {
    let setup = setup("sfn-exhausted").await;
    let counter = setup.dir.join("counter").display().to_string();
    let (execution, compensations) = run(
        &setup,
        json!({"fail_times": 99, "counter_file": counter, "error_type": "Retryable"}),
    )
    .await;
    assert_eq!(
        execution.status(),
        &ExecutionStatus::Failed,
        "{execution:?}"
    );
    assert_eq!(
        attempts(&setup),
        3,
        "MaxAttempts 2 means three calls in all"
    );
    let caught: Value = serde_json::from_str(compensations.lines().next().unwrap()).unwrap();
    assert_eq!(caught["Error"], "Retryable");
    setup.function.shutdown().await;
}
