//! Helpers shared by the integration tests: the test function binary, scratch folders and
//! function specs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sagaform_local::{FunctionSpec, InvokeOutcome, LocalFunction, RuntimeSettings};
use serde_json::Value;

/// The test Lambda function (`src/bin/test-lambda.rs`), built by cargo for these tests.
pub fn test_lambda() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_test-lambda"))
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir()
        .join("sagaform-local-tests")
        .join(format!("{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A spec of the test function.
pub fn spec(name: &str, timeout: Duration, max_processes: usize) -> FunctionSpec {
    FunctionSpec {
        name: name.to_owned(),
        arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        bootstrap: test_lambda(),
        environment: BTreeMap::new(),
        timeout,
        memory_mb: 128,
        max_processes,
        asynchronous: sagaform_local::AsyncInvokeConfig::default(),
    }
}

/// The test function under the local runtime, logging into `dir`.
pub fn function(
    spec: FunctionSpec,
    dir: &std::path::Path,
    endpoint: Option<String>,
) -> LocalFunction {
    LocalFunction::new(
        spec,
        RuntimeSettings::new("us-east-1", endpoint, dir.join("logs")),
    )
    .unwrap()
}

/// Invokes and expects a successful JSON answer.
pub async fn invoke_ok(function: &LocalFunction, payload: Value) -> Value {
    match function.invoke(payload.to_string().into()).await.unwrap() {
        InvokeOutcome::Success(body) => serde_json::from_slice(&body).unwrap(),
        InvokeOutcome::FunctionError(error) => panic!(
            "expected success, got {}: {}",
            error.error_type,
            String::from_utf8_lossy(&error.body)
        ),
    }
}

/// Invokes and expects a function error; returns its type and document.
pub async fn invoke_err(function: &LocalFunction, payload: Value) -> (String, Value) {
    match function.invoke(payload.to_string().into()).await.unwrap() {
        InvokeOutcome::FunctionError(error) => (
            error.error_type,
            serde_json::from_slice(&error.body).unwrap(),
        ),
        InvokeOutcome::Success(body) => panic!(
            "expected a function error, got {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// Whether a process with this PID still exists (and is not a zombie).
pub fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rfind(')')
                .map(|i| stat[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Waits (up to `limit`) until `condition` holds; panics with `what` otherwise.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not reached within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates `bucket` (if needed) in the emulator and puts `bytes` at `key`.
pub async fn put_object(config: &aws_config::SdkConfig, bucket: &str, key: &str, bytes: Vec<u8>) {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    );
    let _ = s3.create_bucket().bucket(bucket).send().await;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .expect("put the code zip");
}

/// Creates a CloudFormation stack in the emulator and waits until it is created.
pub async fn create_stack(
    config: &aws_config::SdkConfig,
    name: &str,
    template: &str,
    parameters: &[(&str, &str)],
) {
    use aws_sdk_cloudformation::types::{Parameter, StackStatus};
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let parameters: Vec<Parameter> = parameters
        .iter()
        .map(|(key, value)| {
            Parameter::builder()
                .parameter_key(*key)
                .parameter_value(*value)
                .build()
        })
        .collect();
    cfn.create_stack()
        .stack_name(name)
        .template_body(template)
        .set_parameters(Some(parameters))
        .send()
        .await
        .expect("create the stack");
    eventually(Duration::from_secs(60), "the stack is created", || {
        let cfn = cfn.clone();
        async move {
            let stacks = cfn.describe_stacks().stack_name(name).send().await.unwrap();
            let status = stacks.stacks()[0].stack_status().cloned();
            assert_ne!(status, Some(StackStatus::CreateFailed), "{stacks:?}");
            status == Some(StackStatus::CreateComplete)
        }
    })
    .await;
}

/// A role Lambda can assume, for test templates.
pub const ROLE_RESOURCE: &str = r#"
  FunctionRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
"#;
