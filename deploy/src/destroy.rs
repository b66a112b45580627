//! `destroy`: deletes a pattern's stack in an env after confirmation, says which data resources
//! survive because of their Retain policy (or leave a final snapshot, with Snapshot), and on the
//! local env also clears the artifacts only that stack used.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use sagaform_contract::template::function_of_code_key_parameter;
use sagaform_stacks::config::EnvConfig;
use serde::Serialize;

use crate::bootstrap;
use crate::confirm::{Confirm, Expect};
use crate::error::aws_error;
use crate::lock::StackLock;
use crate::stack::{self, StackInfo, StackState};
use crate::{DeployError, PatternEnv, Progress, Refusal, Session};

/// How to destroy.
#[derive(Debug, Clone)]
pub struct DestroyOptions {
    /// Allow destroying a production stack.
    pub force_prod: bool,
    /// How long to wait for the deletion.
    pub timeout: Duration,
}

impl Default for DestroyOptions {
    fn default() -> Self {
        DestroyOptions {
            force_prod: false,
            timeout: Duration::from_secs(3600),
        }
    }
}

/// A resource the stack deletion leaves in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetainedResource {
    /// Logical id.
    pub logical_id: String,
    /// Resource type.
    pub resource_type: String,
    /// `Retain`, `RetainExceptOnCreate` or `Snapshot`.
    pub policy: String,
    /// Physical id (table name, cluster id, ...), when known.
    pub physical_id: Option<String>,
}

/// How a destroy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestroyResult {
    /// The stack was deleted.
    Destroyed,
    /// There was no stack.
    NothingToDestroy,
}

/// Everything a destroy did.
#[derive(Debug, Clone, Serialize)]
pub struct DestroyOutcome {
    /// Stack name.
    pub stack_name: String,
    /// How it ended.
    pub result: DestroyResult,
    /// Data kept by Retain policies, and resources that leave a final snapshot.
    pub retained: Vec<RetainedResource>,
    /// Artifact objects deleted from the local bucket.
    pub artifacts_cleared: Vec<String>,
    /// Whether the outputs file was removed.
    pub outputs_file_removed: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// `cargo xtask destroy`.
pub async fn destroy_pattern(
    session: &Session,
    target: PatternEnv<'_>,
    options: &DestroyOptions,
    confirm: &dyn Confirm,
    progress: &Progress,
) -> Result<DestroyOutcome, DeployError> {
    let started = Instant::now();
    let stack_name = target.stack_name();
    let _lock = StackLock::acquire(target.workspace, &stack_name, "destroy")?;
    let outputs_path = target.outputs_path();
    let Some(info) = stack::describe(session, &stack_name).await? else {
        progress.line(format!(
            "stack {stack_name} does not exist: nothing to destroy"
        ));
        return Ok(DestroyOutcome {
            outputs_file_removed: remove_outputs_file(&outputs_path)?,
            ..DestroyOutcome::empty(stack_name, started)
        });
    };
    refuse_unsafe(target.env, options, &stack_name, &info)?;
    // What survives, from the deployed template and the stack's physical ids.
    let retained = retained_resources(session, &stack_name, &info.status).await;
    show_retained(&stack_name, &retained, progress);
    let question = format!(
        "delete stack {stack_name} (env {}, status {})?",
        target.env.name, info.status
    );
    confirm
        .ask(&question, &Expect::Exactly(stack_name.clone()))
        .require(format!("destroy of {stack_name}"))?;
    if info.termination_protection {
        disable_termination_protection(session, &stack_name, progress).await?;
    }
    let code_keys = code_keys(&info);
    delete(session, &stack_name, options.timeout, progress).await?;
    progress.line(format!(
        "stack {stack_name} deleted in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(DestroyOutcome {
        result: DestroyResult::Destroyed,
        retained,
        outputs_file_removed: remove_outputs_file(&outputs_path)?,
        artifacts_cleared: if target.env.is_local() {
            clear_local_artifacts(session, &target.env.name, &code_keys, progress).await?
        } else {
            Vec::new()
        },
        ..DestroyOutcome::empty(stack_name, started)
    })
}

impl DestroyOutcome {
    /// The outcome of a destroy that found no stack: nothing retained, cleared or removed, and
    /// the seconds since `started`. A destroy that deleted one fills in the rest.
    fn empty(stack_name: String, started: Instant) -> DestroyOutcome {
        DestroyOutcome {
            stack_name,
            result: DestroyResult::NothingToDestroy,
            retained: Vec::new(),
            artifacts_cleared: Vec::new(),
            outputs_file_removed: false,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// The artifact keys the stack's code-key parameters hold (read before the stack is gone).
fn code_keys(info: &StackInfo) -> Vec<String> {
    info.parameters
        .iter()
        .filter(|(k, _)| function_of_code_key_parameter(k).is_some())
        .map(|(_, v)| v.clone())
        .collect()
}

/// Removes the outputs file of the stack; whether there was one.
fn remove_outputs_file(path: &Path) -> Result<bool, DeployError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DeployError::io("remove", path)(e)),
    }
}

/// Refuses a production stack without `--force-prod` and a stack another operation is changing.
fn refuse_unsafe(
    env: &EnvConfig,
    options: &DestroyOptions,
    stack_name: &str,
    info: &StackInfo,
) -> Result<(), Refusal> {
    if env.production && !options.force_prod {
        return Err(Refusal::ProductionProtected {
            env: env.name.clone(),
            stack: stack_name.to_owned(),
        });
    }
    if stack::classify(&info.status) == StackState::Busy {
        return Err(Refusal::StackBusy {
            stack: stack_name.to_owned(),
            status: info.status.clone(),
        });
    }
    Ok(())
}

/// Says which data resources the deletion keeps, so nobody assumes they are gone.
fn show_retained(stack_name: &str, retained: &[RetainedResource], progress: &Progress) {
    if retained.is_empty() {
        progress.line(format!(
            "stack {stack_name}: every resource is deleted (no Retain or Snapshot policies)"
        ));
        return;
    }
    progress.line(format!(
        "stack {stack_name}: this data is KEPT by its DeletionPolicy and must be deleted by hand if no longer wanted:"
    ));
    for r in retained {
        progress.line(retained_line(r));
    }
}

/// One line of what a deletion keeps: a retained resource stays as it is; a snapshotted one is
/// deleted and leaves a final snapshot, which is what must be deleted by hand.
fn retained_line(r: &RetainedResource) -> String {
    let physical = r
        .physical_id
        .as_deref()
        .map(|p| format!(": {p}"))
        .unwrap_or_default();
    if r.policy == "Snapshot" {
        format!(
            "  Snapshot {} ({}){physical}: deleted after a final snapshot, which is kept",
            r.logical_id, r.resource_type
        )
    } else {
        format!(
            "  {} {} ({}){physical}",
            r.policy, r.logical_id, r.resource_type
        )
    }
}

/// Turns termination protection off (a production stack, allowed by `--force-prod`).
async fn disable_termination_protection(
    session: &Session,
    stack_name: &str,
    progress: &Progress,
) -> Result<(), DeployError> {
    progress.line(format!(
        "stack {stack_name}: turning termination protection off (--force-prod)"
    ));
    session
        .cloudformation
        .update_termination_protection()
        .stack_name(stack_name)
        .enable_termination_protection(false)
        .send()
        .await
        .map_err(aws_error("CloudFormation.UpdateTerminationProtection"))?;
    Ok(())
}

/// Deletes the stack and waits; a deletion that did not complete needs a person.
async fn delete(
    session: &Session,
    stack_name: &str,
    timeout: Duration,
    progress: &Progress,
) -> Result<(), DeployError> {
    progress.line(format!("deleting stack {stack_name}"));
    let watched = stack::delete_and_wait(session, stack_name, timeout, progress).await?;
    if watched.status == "DELETE_COMPLETE" {
        return Ok(());
    }
    let reason = watched
        .first_failure
        .or(watched.status_reason)
        .unwrap_or_default();
    Err(DeployError::NeedsRecovery {
        stack: stack_name.to_owned(),
        status: watched.status.clone(),
        steps: format!(
            "first failure: {reason}\n{}",
            stack::recovery_steps(session, stack_name, &watched.status)
        ),
    })
}

async fn retained_resources(
    session: &Session,
    stack_name: &str,
    status: &str,
) -> Vec<RetainedResource> {
    // A stack that never got past REVIEW_IN_PROGRESS has no template worth reading.
    if status == "REVIEW_IN_PROGRESS" {
        return Vec::new();
    }
    let Ok(template) = stack::deployed_template(session, stack_name).await else {
        return Vec::new();
    };
    let physical: Vec<(String, String)> = session
        .cloudformation
        .describe_stack_resources()
        .stack_name(stack_name)
        .send()
        .await
        .map(|answer| {
            answer
                .stack_resources()
                .iter()
                .filter_map(|r| {
                    Some((
                        r.logical_resource_id()?.to_owned(),
                        r.physical_resource_id()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    template
        .retained_resources()
        .into_iter()
        .map(|(logical_id, resource_type, policy)| RetainedResource {
            physical_id: physical
                .iter()
                .find(|(l, _)| *l == logical_id)
                .map(|(_, p)| p.clone()),
            logical_id,
            resource_type,
            policy,
        })
        .collect()
}

/// Deletes the destroyed stack's artifacts from the local bucket, except those another stack
/// of the same env still uses (content-addressed keys are shared between patterns).
async fn clear_local_artifacts(
    session: &Session,
    env_name: &str,
    code_keys: &[String],
    progress: &Progress,
) -> Result<Vec<String>, DeployError> {
    let bucket = bootstrap::bucket_name(&session.account_id, &session.region, env_name)?;
    let mut in_use: BTreeSet<String> = BTreeSet::new();
    let stacks = session
        .cloudformation
        .describe_stacks()
        .send()
        .await
        .map_err(aws_error("CloudFormation.DescribeStacks"))?;
    for other in stacks.stacks() {
        let name = other.stack_name().unwrap_or_default();
        let live = other
            .stack_status()
            .is_some_and(|s| s.as_str() != "DELETE_COMPLETE");
        if live && name.starts_with("sagaform-") && name.ends_with(&format!("-{env_name}")) {
            for p in other.parameters() {
                if p.parameter_key()
                    .and_then(function_of_code_key_parameter)
                    .is_some()
                {
                    in_use.extend(p.parameter_value().map(str::to_owned));
                }
            }
        }
    }
    let unused: Vec<String> = code_keys
        .iter()
        .filter(|k| !in_use.contains(*k))
        .cloned()
        .collect();
    if unused.is_empty() {
        return Ok(unused);
    }
    bootstrap::delete_keys(session, &bucket, &unused).await?;
    progress.line(format!(
        "local artifacts cleared from s3://{bucket}: {}",
        unused.join(", ")
    ));
    Ok(unused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    /// The committed orchestrator stack of an AWS env, as `destroy` reads it back from
    /// CloudFormation.
    fn committed_orchestrator_template(env: &str) -> Template {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../templates/orchestrator/{env}.yaml"));
        let body = std::fs::read_to_string(&path).unwrap();
        Template::parse(&path.display().to_string(), &body).unwrap()
    }

    #[test]
    fn destroy_reports_the_aurora_cluster_as_deleted_after_a_final_snapshot() {
        for env in ["staging", "prod"] {
            let retained = committed_orchestrator_template(env).retained_resources();
            let clusters: Vec<_> = retained
                .iter()
                .filter(|(_, kind, _)| kind == "AWS::RDS::DBCluster")
                .collect();
            assert_eq!(
                clusters,
                [&(
                    "DatabaseCluster".to_owned(),
                    "AWS::RDS::DBCluster".to_owned(),
                    "Snapshot".to_owned()
                )],
                "{env}"
            );
            // Nothing else is kept, so nothing holds on to the cluster's subnets and security
            // groups when the stack deletes them.
            assert!(
                retained
                    .iter()
                    .all(|(_, kind, _)| kind == "AWS::RDS::DBCluster" || kind == "AWS::SQS::Queue"),
                "{env}: {retained:?}"
            );
        }
        let line = retained_line(&RetainedResource {
            logical_id: "DatabaseCluster".to_owned(),
            resource_type: "AWS::RDS::DBCluster".to_owned(),
            policy: "Snapshot".to_owned(),
            physical_id: Some("sagaform-orchestrator-prod-databasecluster-1".to_owned()),
        });
        assert_eq!(
            line,
            "  Snapshot DatabaseCluster (AWS::RDS::DBCluster): sagaform-orchestrator-prod-databasecluster-1: deleted after a final snapshot, which is kept"
        );
    }
}
