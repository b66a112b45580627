//! `deploy --hotswap`: when the only change is the functions' code, each changed function gets
//! its new package directly (Lambda UpdateFunctionCode, then waiting until the update is
//! done) instead of a change set, which takes seconds instead of a stack update.
//!
//! The stack is not told: its parameters still name the old code keys, so it drifts from what
//! runs until the next full deploy, and the deploy says so. Anything else changed (the template,
//! another parameter, a stack that is missing or not in a stable `*_COMPLETE` state) falls back
//! to the normal change-set deploy, saying why. Production envs refuse `--hotswap`: there every
//! change goes through a change set a person approves.
//!
//! What changed is decided by [`decide`], a pure function over the deployed template and
//! parameters and the new ones. Besides the functions whose code key parameter changed, a
//! function whose running code (its `CodeSha256`) is not the new package is updated too: after
//! an earlier hotswap, going back to the code the stack names changes no parameter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_lambda::types::LastUpdateStatus;
use base64::Engine as _;
use sagaform_contract::FunctionRole;
use sagaform_contract::template::function_of_code_key_parameter;
use sagaform_stacks::config::EnvConfig;
use serde::Serialize;

use crate::deploy::{
    DeployOutcome, DeployPlan, DeployResult, PatternDeploy, PreparedStack, committed_template,
    deploy_pattern_locked, pattern_deployment, report, upload_packages,
};
use crate::error::aws_error;
use crate::lock::StackLock;
use crate::stack::{self, StackState};
use crate::template::{Template, render};
use crate::template_diff::TemplateDiff;
use crate::{Artifact, DeployError, PatternEnv, Refusal};

/// A function whose package changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeChange {
    /// The function (`api`, `worker`, `step`).
    pub function: String,
    /// Its code key parameter (`ApiCodeKey`).
    pub parameter: String,
    /// The key the stack's parameter names (`None`: the stack has no such parameter).
    pub stack_key: Option<String>,
    /// The key of the new package.
    pub new_key: String,
}

/// Whether a deploy can be a hotswap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotswapDecision {
    /// Only code key parameters differ (possibly none): update these functions' code.
    Hotswap {
        /// The functions whose code key parameter changed.
        functions: Vec<CodeChange>,
    },
    /// Something else changed: deploy through a change set.
    FallBack {
        /// What changed, for the person deploying.
        reason: String,
    },
}

/// What `--hotswap` did, in the deploy's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HotswapReport {
    /// The functions whose code was updated directly (empty when it fell back).
    pub updated: Vec<CodeChange>,
    /// Why it fell back to a change-set deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fell_back: Option<String>,
    /// How the stack now drifts from what runs, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
}

/// Refuses `--hotswap` on a production env.
pub fn refuse_in_production(env: &EnvConfig) -> Result<(), Refusal> {
    if env.production {
        return Err(Refusal::HotswapInProduction {
            env: env.name.clone(),
        });
    }
    Ok(())
}

/// Decides from the deployed template and parameters and the new ones: a hotswap when the
/// templates are the same (in normal form, as the no-op detection compares them) and only code
/// key parameters differ; a fall-back naming what else changed otherwise.
pub fn decide(
    deployed: &Template,
    new: &Template,
    deployed_parameters: &BTreeMap<String, String>,
    new_parameters: &[(String, Option<String>)],
) -> HotswapDecision {
    let diff = TemplateDiff::between(deployed, new);
    if !diff.is_empty() {
        let entries: Vec<String> = diff
            .entries
            .iter()
            .map(|e| format!("{} {}", e.section, e.id))
            .collect();
        return HotswapDecision::FallBack {
            reason: format!(
                "the template changed, not only function code ({})",
                listed(&entries)
            ),
        };
    }
    let mut functions = Vec::new();
    let mut others = Vec::new();
    for (name, value) in new_parameters {
        let stack_value = deployed_parameters.get(name);
        if value.is_none() || stack_value == value.as_ref() {
            continue;
        }
        match (function_of_code_key_parameter(name), value) {
            (Some(function), Some(new_key)) => functions.push(CodeChange {
                function,
                parameter: name.clone(),
                stack_key: stack_value.cloned(),
                new_key: new_key.clone(),
            }),
            _ => others.push(name.clone()),
        }
    }
    // A parameter the deploy leaves to its default takes the default again.
    for (name, stack_value) in deployed_parameters {
        if new_parameters.iter().any(|(n, _)| n == name) {
            continue;
        }
        let default = new
            .section("Parameters")
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, p)| p.get("Default").map(render));
        if default.as_deref() != Some(stack_value.as_str()) {
            others.push(name.clone());
        }
    }
    if !others.is_empty() {
        return HotswapDecision::FallBack {
            reason: format!(
                "parameters other than function code changed ({})",
                listed(&others)
            ),
        };
    }
    HotswapDecision::Hotswap { functions }
}

/// At most five names, then how many more.
fn listed(names: &[String]) -> String {
    let mut text = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}

/// Whether a stack status is stable and complete (`CREATE_COMPLETE`, `UPDATE_COMPLETE`,
/// `UPDATE_ROLLBACK_COMPLETE`, ...): nothing in progress, nothing failed.
fn stable(status: &str) -> bool {
    stack::classify(status) == StackState::Ready && status.ends_with("_COMPLETE")
}

/// [`crate::deploy::deploy_pattern`] with `--hotswap`, under the stack's lock: the functions'
/// code updated directly when nothing else changed, the change-set deploy otherwise.
pub(crate) async fn hotswap_locked(
    call: &PatternDeploy<'_>,
    lock: StackLock,
) -> Result<DeployOutcome, DeployError> {
    let PatternDeploy {
        session,
        target,
        artifacts,
        options,
        progress,
        ..
    } = *call;
    let started = Instant::now();
    let stack_name = target.stack_name();
    let template_body = committed_template(target.workspace, target.pattern, &target.env.name)?;
    let template = Template::parse(&target.template_file(), &template_body)?;
    let info = match stack::describe(session, &stack_name).await? {
        None => {
            let reason = format!("stack {stack_name} does not exist yet");
            return fall_back(call, lock, reason).await;
        }
        Some(info) if !stable(&info.status) => {
            let reason = format!(
                "stack {stack_name} is in {}, not a stable *_COMPLETE state",
                info.status
            );
            return fall_back(call, lock, reason).await;
        }
        Some(info) => info,
    };
    let deployed = stack::deployed_template(session, &stack_name).await?;
    let deployment = pattern_deployment(target, template_body, artifacts);
    let packages = upload_packages(session, &deployment, &template, progress).await?;
    let drifting = match decide(&deployed, &template, &info.parameters, &packages.parameters) {
        HotswapDecision::FallBack { reason } => return fall_back(call, lock, reason).await,
        HotswapDecision::Hotswap { functions } => functions,
    };
    let lambda = aws_sdk_lambda::Client::new(&session.aws);
    let updates = to_update(
        &lambda,
        &stack_name,
        artifacts,
        &info.parameters,
        &packages.parameters,
    )
    .await?;
    let mut updated = Vec::new();
    for change in updates {
        let function_name = physical_name(&stack_name, &change.function);
        update_code(
            &lambda,
            &function_name,
            &packages.bucket,
            &change.new_key,
            options.timeout,
            stack::poll_interval(session),
        )
        .await?;
        progress.line(format!(
            "hotswap: {function_name} now runs {} (no change set)",
            change.new_key
        ));
        updated.push(change);
    }
    if updated.is_empty() {
        progress.line(format!(
            "stack {stack_name}: no changes, every function already runs its package"
        ));
    }
    let drift = drift_note(target, &drifting);
    if let Some(drift) = &drift {
        progress.line(drift);
    }
    let plan = DeployPlan {
        session,
        deployment: &deployment,
        template,
        stack: PreparedStack {
            existing: Some(info),
            create: false,
            deployed,
            recreated: false,
        },
        packages,
        started,
    };
    let result = if updated.is_empty() {
        DeployResult::NoChanges
    } else {
        DeployResult::Hotswapped
    };
    let mut outcome = report(&plan, result, None, Vec::new(), progress).await?;
    drop(lock);
    outcome.hotswap = Some(HotswapReport {
        updated,
        fell_back: None,
        drift,
    });
    Ok(outcome)
}

/// The change-set deploy, after saying why the hotswap could not be done.
async fn fall_back(
    call: &PatternDeploy<'_>,
    lock: StackLock,
    reason: String,
) -> Result<DeployOutcome, DeployError> {
    call.progress.line(format!(
        "hotswap not possible: {reason}; deploying through a change set instead"
    ));
    let mut outcome = deploy_pattern_locked(call, lock).await?;
    outcome.hotswap = Some(HotswapReport {
        updated: Vec::new(),
        fell_back: Some(reason),
        drift: None,
    });
    Ok(outcome)
}

/// The functions whose running code (Lambda's `CodeSha256`) is not their new package: those
/// whose code key changed, unless an earlier hotswap already put the package in place, and
/// those whose key did not change but that run other code (left by an earlier hotswap).
async fn to_update(
    lambda: &aws_sdk_lambda::Client,
    stack_name: &str,
    artifacts: &[Artifact],
    stack_parameters: &BTreeMap<String, String>,
    parameters: &[(String, Option<String>)],
) -> Result<Vec<CodeChange>, DeployError> {
    let mut updates = Vec::new();
    for (parameter, key) in parameters {
        let (Some(function), Some(key)) = (function_of_code_key_parameter(parameter), key) else {
            continue;
        };
        let Some(artifact) = artifacts.iter().find(|a| a.function() == function) else {
            continue;
        };
        let name = physical_name(stack_name, &function);
        let running = lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .map_err(aws_error("Lambda.GetFunctionConfiguration"))?;
        if running.code_sha256() != Some(code_sha256(artifact).as_str()) {
            updates.push(CodeChange {
                function,
                parameter: parameter.clone(),
                stack_key: stack_parameters.get(parameter).cloned(),
                new_key: key.clone(),
            });
        }
    }
    Ok(updates)
}

/// Lambda's `CodeSha256` of a package: the base64 of the zip's SHA-256.
fn code_sha256(artifact: &Artifact) -> String {
    let bytes: Vec<u8> = (0..artifact.sha256().len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&artifact.sha256()[i..i + 2], 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A function's physical name: the contract's `<stack>-<role>` (the template names them so).
fn physical_name(stack_name: &str, function: &str) -> String {
    FunctionRole::from_name(function).map_or_else(
        || format!("{stack_name}-{function}"),
        |role| role.physical_name(stack_name),
    )
}

/// Points a function at a new package and waits until Lambda reports the update done.
async fn update_code(
    lambda: &aws_sdk_lambda::Client,
    function_name: &str,
    bucket: &str,
    key: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<(), DeployError> {
    lambda
        .update_function_code()
        .function_name(function_name)
        .s3_bucket(bucket)
        .s3_key(key)
        .send()
        .await
        .map_err(aws_error("Lambda.UpdateFunctionCode"))?;
    let deadline = Instant::now() + timeout;
    loop {
        let configuration = lambda
            .get_function_configuration()
            .function_name(function_name)
            .send()
            .await
            .map_err(aws_error("Lambda.GetFunctionConfiguration"))?;
        match configuration.last_update_status() {
            // No status: nothing is being updated (an emulator may not report one).
            None | Some(LastUpdateStatus::Successful) => return Ok(()),
            Some(LastUpdateStatus::Failed) => {
                return Err(DeployError::Aws {
                    operation: "Lambda.UpdateFunctionCode",
                    message: format!(
                        "the code update of {function_name} failed: {}",
                        configuration
                            .last_update_status_reason()
                            .unwrap_or("no reason given")
                    ),
                });
            }
            Some(status) if Instant::now() >= deadline => {
                return Err(DeployError::Aws {
                    operation: "Lambda.GetFunctionConfiguration",
                    message: format!(
                        "{function_name} still {} after {} s: it keeps going in Lambda; check it with `aws lambda get-function-configuration --function-name {function_name}`",
                        status.as_str(),
                        timeout.as_secs()
                    ),
                });
            }
            Some(_) => tokio::time::sleep(poll).await,
        }
    }
}

/// What the stack's parameters still say after a hotswap, when they name other code than runs
/// (`drifting`: the code key parameters that differ from the new packages').
fn drift_note(target: PatternEnv<'_>, drifting: &[CodeChange]) -> Option<String> {
    let stale: Vec<String> = drifting
        .iter()
        .map(|c| {
            format!(
                "{} = {}",
                c.parameter,
                c.stack_key.as_deref().unwrap_or("(none)")
            )
        })
        .collect();
    if stale.is_empty() {
        return None;
    }
    Some(format!(
        "stack {} now drifts: its parameters still name the old code ({}) while the functions run the new packages, until the next full deploy; `cargo xtask deploy --pattern {} --env {}` without --hotswap sets them through a change set",
        target.stack_name(),
        stale.join(", "),
        target.pattern,
        target.env.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYED: &str = r#"
Parameters:
  ArtifactBucket: {Type: String}
  ApiCodeKey: {Type: String}
  WorkerCodeKey: {Type: String}
  LogLevel: {Type: String, Default: info}
Resources:
  ApiFunction:
    Type: AWS::Lambda::Function
    Properties:
      Code: {S3Bucket: !Ref ArtifactBucket, S3Key: !Ref ApiCodeKey}
      Timeout: 30
"#;

    fn parameters(api: &str, worker: &str) -> Vec<(String, Option<String>)> {
        vec![
            ("ArtifactBucket".to_owned(), Some("bucket".to_owned())),
            ("ApiCodeKey".to_owned(), Some(api.to_owned())),
            ("WorkerCodeKey".to_owned(), Some(worker.to_owned())),
        ]
    }

    fn stack_parameters(api: &str, worker: &str) -> BTreeMap<String, String> {
        let mut stack: BTreeMap<String, String> = parameters(api, worker)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap()))
            .collect();
        stack.insert("LogLevel".to_owned(), "info".to_owned());
        stack
    }

    fn template(body: &str) -> Template {
        Template::parse("test.yaml", body).unwrap()
    }

    #[test]
    fn only_code_keys_changed_is_a_hotswap_of_those_functions() {
        let decision = decide(
            &template(DEPLOYED),
            // The same template in another form (JSON-style flow, long-form Ref).
            &template(&DEPLOYED.replace("!Ref ApiCodeKey", "{Ref: ApiCodeKey}")),
            &stack_parameters("api/old.zip", "worker/same.zip"),
            &parameters("api/new.zip", "worker/same.zip"),
        );
        assert_eq!(
            decision,
            HotswapDecision::Hotswap {
                functions: vec![CodeChange {
                    function: "api".to_owned(),
                    parameter: "ApiCodeKey".to_owned(),
                    stack_key: Some("api/old.zip".to_owned()),
                    new_key: "api/new.zip".to_owned(),
                }]
            }
        );
    }

    #[test]
    fn nothing_changed_is_a_hotswap_of_nothing() {
        let decision = decide(
            &template(DEPLOYED),
            &template(DEPLOYED),
            &stack_parameters("api/a.zip", "worker/b.zip"),
            &parameters("api/a.zip", "worker/b.zip"),
        );
        assert_eq!(
            decision,
            HotswapDecision::Hotswap {
                functions: Vec::new()
            }
        );
    }

    #[test]
    fn a_template_change_falls_back_and_names_it() {
        let decision = decide(
            &template(DEPLOYED),
            &template(&DEPLOYED.replace("Timeout: 30", "Timeout: 60")),
            &stack_parameters("api/old.zip", "worker/b.zip"),
            &parameters("api/new.zip", "worker/b.zip"),
        );
        let HotswapDecision::FallBack { reason } = decision else {
            panic!("a template change must fall back: {decision:?}");
        };
        assert!(reason.contains("the template changed"), "{reason}");
        assert!(reason.contains("Resources ApiFunction"), "{reason}");
    }

    #[test]
    fn another_parameter_changed_falls_back_and_names_it() {
        let mut new = parameters("api/new.zip", "worker/b.zip");
        new[0].1 = Some("other-bucket".to_owned());
        let decision = decide(
            &template(DEPLOYED),
            &template(DEPLOYED),
            &stack_parameters("api/old.zip", "worker/b.zip"),
            &new,
        );
        assert_eq!(
            decision,
            HotswapDecision::FallBack {
                reason: "parameters other than function code changed (ArtifactBucket)".to_owned()
            }
        );
        // A parameter left to its default, when the stack has another value.
        let mut stack = stack_parameters("api/old.zip", "worker/b.zip");
        stack.insert("LogLevel".to_owned(), "debug".to_owned());
        let decision = decide(
            &template(DEPLOYED),
            &template(DEPLOYED),
            &stack,
            &parameters("api/new.zip", "worker/b.zip"),
        );
        assert!(
            matches!(&decision, HotswapDecision::FallBack { reason } if reason.contains("LogLevel")),
            "{decision:?}"
        );
    }

    #[test]
    fn production_refuses_hotswap() {
        let staging = sagaform_stacks::fixtures::example_env("staging");
        assert!(refuse_in_production(&staging).is_ok());
        let prod = sagaform_stacks::fixtures::example_env("prod");
        assert!(prod.production);
        let refusal = refuse_in_production(&prod).unwrap_err();
        assert!(
            refusal.to_string().contains("--hotswap is refused"),
            "{refusal}"
        );
        assert_eq!(DeployError::from(refusal).exit_code(), crate::EXIT_REFUSED);
    }

    #[test]
    fn code_sha256_is_the_base64_of_the_package_digest() {
        let artifact = Artifact::from_zip_bytes("api", b"zip bytes".to_vec());
        // sha256("zip bytes"), as Lambda reports it.
        let expected = {
            use sha2::Digest;
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"zip bytes"))
        };
        assert_eq!(code_sha256(&artifact), expected);
    }
}
