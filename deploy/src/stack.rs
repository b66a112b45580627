//! CloudFormation stacks as the commands see them: what state a stack is in and what that means
//! for the next operation, change sets (including "no changes", which AWS and moto report in
//! three different ways), waiting with streamed events, and the recovery steps of the states
//! that need a person.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{
    Capability, Change, ChangeSetStatus, ChangeSetType, Parameter, StackEvent, Tag, TemplateStage,
};
use serde::Serialize;

use crate::changeset::{ChangeRow, rows_from};
use crate::error::{ProvideMessage, aws_error};
use crate::template::Template;
use crate::{DeployError, Progress, Session};

/// What a stack's status means for the next deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackState {
    /// No such stack (or only a deleted one).
    Missing,
    /// Stable: an update can start.
    Ready,
    /// An operation is running (`*_IN_PROGRESS` other than `REVIEW_IN_PROGRESS`).
    Busy,
    /// A change set created the stack but was never executed, or the emulator failed executing
    /// it: the stack has no resources and is safe to delete.
    NeverCreated,
    /// The first create failed and rolled back: the stack can only be deleted.
    FailedCreate,
    /// A person must intervene (`UPDATE_ROLLBACK_FAILED`, `ROLLBACK_FAILED`, `DELETE_FAILED`, ...).
    NeedsRecovery,
}

/// Classifies a CloudFormation stack status.
pub fn classify(status: &str) -> StackState {
    match status {
        "DELETE_COMPLETE" => StackState::Missing,
        "REVIEW_IN_PROGRESS" => StackState::NeverCreated,
        "ROLLBACK_COMPLETE" => StackState::FailedCreate,
        s if s.ends_with("_IN_PROGRESS") => StackState::Busy,
        s if s.ends_with("_FAILED") => StackState::NeedsRecovery,
        _ => StackState::Ready,
    }
}

/// Whether a status ends an operation (nothing in progress any more).
pub fn is_terminal(status: &str) -> bool {
    !status.ends_with("_IN_PROGRESS")
}

/// What DescribeStacks says about a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackInfo {
    /// Stack id (ARN).
    pub stack_id: String,
    /// Status.
    pub status: String,
    /// Why it is in that status, when CloudFormation says.
    pub status_reason: Option<String>,
    /// Whether termination protection is on.
    pub termination_protection: bool,
    /// Current parameter values.
    pub parameters: BTreeMap<String, String>,
    /// Outputs.
    pub outputs: BTreeMap<String, String>,
}

fn is_missing_stack(message: &str) -> bool {
    message.contains("does not exist")
}

/// Describes a stack; `None` when it does not exist.
pub async fn describe(
    session: &Session,
    stack_name: &str,
) -> Result<Option<StackInfo>, DeployError> {
    let answer = match session
        .cloudformation
        .describe_stacks()
        .stack_name(stack_name)
        .send()
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            let message = e.readable_message();
            if is_missing_stack(&message) {
                return Ok(None);
            }
            return Err(DeployError::Aws {
                operation: "CloudFormation.DescribeStacks",
                message,
            });
        }
    };
    let Some(stack) = answer.stacks().first() else {
        return Ok(None);
    };
    let status = stack
        .stack_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    if status == "DELETE_COMPLETE" {
        return Ok(None);
    }
    Ok(Some(StackInfo {
        stack_id: stack.stack_id().unwrap_or_default().to_owned(),
        status,
        status_reason: stack.stack_status_reason().map(str::to_owned),
        termination_protection: stack.enable_termination_protection().unwrap_or(false),
        parameters: stack
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_owned(),
                    p.parameter_value().unwrap_or_default().to_owned(),
                ))
            })
            .collect(),
        outputs: stack
            .outputs()
            .iter()
            .filter_map(|o| {
                Some((
                    o.output_key()?.to_owned(),
                    o.output_value().unwrap_or_default().to_owned(),
                ))
            })
            .collect(),
    }))
}

/// The template a stack was deployed with.
pub async fn deployed_template(
    session: &Session,
    stack_name: &str,
) -> Result<Template, DeployError> {
    let answer = session
        .cloudformation
        .get_template()
        .stack_name(stack_name)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .map_err(aws_error("CloudFormation.GetTemplate"))?;
    Template::parse(
        &format!("deployed template of {stack_name}"),
        answer.template_body().unwrap_or("{}"),
    )
}

/// The `--region` (and `--endpoint-url`) arguments of AWS CLI commands printed for a person.
pub fn cli_target(session: &Session) -> String {
    match &session.endpoint_url {
        Some(url) => format!("--region {} --endpoint-url {url}", session.region),
        None => format!("--region {}", session.region),
    }
}

/// The exact steps out of a state that needs a person.
pub fn recovery_steps(session: &Session, stack_name: &str, status: &str) -> String {
    recovery_steps_for(&cli_target(session), &session.env_name, stack_name, status)
}

/// [`recovery_steps`] for an AWS CLI target (`--region ...`) and env name.
pub fn recovery_steps_for(target: &str, env_name: &str, stack_name: &str, status: &str) -> String {
    let events = format!(
        "aws cloudformation describe-stack-events --stack-name {stack_name} {target} --max-items 30"
    );
    match status {
        "UPDATE_ROLLBACK_FAILED" => format!(
            "An update failed and so did its rollback; the stack cannot change until the rollback completes.\n\
             1. Find the resources that could not roll back:\n     {events}\n\
             2. Fix them by hand (or decide to leave them as they are), then continue the rollback:\n     \
             aws cloudformation continue-update-rollback --stack-name {stack_name} {target}\n   \
             Resources that cannot be rolled back can be skipped:\n     \
             aws cloudformation continue-update-rollback --stack-name {stack_name} {target} --resources-to-skip <LogicalId> ...\n\
             3. Wait for UPDATE_ROLLBACK_COMPLETE:\n     \
             aws cloudformation wait stack-rollback-complete --stack-name {stack_name} {target}\n\
             4. Deploy again: cargo xtask deploy --pattern <pattern> --env {}",
            env_name
        ),
        "ROLLBACK_FAILED" | "CREATE_FAILED" | "IMPORT_ROLLBACK_FAILED" => format!(
            "The first create failed and the stack could not be cleaned up.\n\
             1. Find the resources that failed:\n     {events}\n\
             2. Delete the stack, keeping the resources that block the deletion:\n     \
             aws cloudformation delete-stack --stack-name {stack_name} {target} [--retain-resources <LogicalId> ...]\n\
             3. Deploy again: cargo xtask deploy --pattern <pattern> --env {}",
            env_name
        ),
        "DELETE_FAILED" => format!(
            "A delete failed; some resources are still there.\n\
             1. Find them and why they failed:\n     {events}\n\
             2. Remove what blocks them (e.g. empty a bucket) and run the destroy again, or keep them:\n     \
             aws cloudformation delete-stack --stack-name {stack_name} {target} --retain-resources <LogicalId> ..."
        ),
        other => format!(
            "1. See what happened:\n     {events}\n2. Bring the stack out of {other} by hand, then run the command again."
        ),
    }
}

/// A change set ready for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeSet {
    /// Change set name.
    pub name: String,
    /// Change set id (ARN).
    pub id: String,
    /// CREATE or UPDATE.
    pub kind: String,
    /// Its rows.
    pub rows: Vec<ChangeRow>,
}

/// What creating a change set gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeSetResult {
    /// Something to execute.
    Ready(ChangeSet),
    /// The template and parameters match the stack; the empty change set was deleted.
    NoChanges,
}

/// What to put in a change set.
#[derive(Debug, Clone)]
pub struct ChangeSetSpec<'a> {
    /// Stack name.
    pub stack_name: &'a str,
    /// CREATE for a new stack, UPDATE otherwise.
    pub create: bool,
    /// Template body.
    pub template_body: &'a str,
    /// Parameter values; `None` means "use the stack's previous value".
    pub parameters: &'a [(String, Option<String>)],
    /// Stack tags.
    pub tags: &'a [(String, String)],
    /// Purpose, for the change set name and description (`deploy`, `diff`).
    pub purpose: &'a str,
}

impl ChangeSetSpec<'_> {
    /// The parameters as CloudFormation takes them, `None` as "use the previous value".
    fn cloudformation_parameters(&self) -> Vec<Parameter> {
        self.parameters
            .iter()
            .map(|(key, value)| match value {
                Some(value) => Parameter::builder()
                    .parameter_key(key)
                    .parameter_value(value)
                    .build(),
                None => Parameter::builder()
                    .parameter_key(key)
                    .use_previous_value(true)
                    .build(),
            })
            .collect()
    }
}

fn no_changes_reason(reason: &str) -> bool {
    // AWS: "The submitted information didn't contain changes. Submit different information to
    // create a change set." moto raises "No updates are to be performed." from
    // CreateChangeSet itself when the body is byte-identical.
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

/// Creates a change set and waits until CloudFormation has computed it.
pub async fn create_change_set(
    session: &Session,
    spec: &ChangeSetSpec<'_>,
    progress: &Progress,
) -> Result<ChangeSetResult, DeployError> {
    let name = change_set_name(spec.purpose);
    let kind = if spec.create {
        ChangeSetType::Create
    } else {
        ChangeSetType::Update
    };
    progress.status(format!("change set: creating {name} ({})", kind.as_str()));
    let computed = match request_change_set(session, spec, &name, kind.clone()).await? {
        Some(id) => wait_for_change_set(session, spec.stack_name, &name, &id, progress)
            .await?
            .map(|rows| (id, rows)),
        None => None,
    };
    progress.clear_status();
    Ok(match computed {
        Some((id, rows)) => ChangeSetResult::Ready(ChangeSet {
            name,
            id,
            kind: kind.as_str().to_owned(),
            rows,
        }),
        None => ChangeSetResult::NoChanges,
    })
}

/// `sagaform-<purpose>-<seconds><milliseconds>`: unique per stack, and sorts by time.
fn change_set_name(purpose: &str) -> String {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "sagaform-{purpose}-{}{:03}",
        epoch.as_secs(),
        epoch.subsec_millis()
    )
}

/// Sends CreateChangeSet; the new change set's id, or `None` when the endpoint refused it for
/// having no changes.
async fn request_change_set(
    session: &Session,
    spec: &ChangeSetSpec<'_>,
    name: &str,
    kind: ChangeSetType,
) -> Result<Option<String>, DeployError> {
    let tags = spec
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Vec<_>>();
    let created = session
        .cloudformation
        .create_change_set()
        .stack_name(spec.stack_name)
        .change_set_name(name)
        .change_set_type(kind)
        .description(format!("sagaform {} of {}", spec.purpose, spec.stack_name))
        .template_body(spec.template_body)
        .set_parameters(Some(spec.cloudformation_parameters()))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .set_tags(Some(tags))
        .send()
        .await;
    match created {
        Ok(created) => Ok(Some(created.id().unwrap_or(name).to_owned())),
        Err(e) => {
            let message = e.readable_message();
            if no_changes_reason(&message) {
                return Ok(None);
            }
            Err(DeployError::Aws {
                operation: "CloudFormation.CreateChangeSet",
                message,
            })
        }
    }
}

/// Polls change set `id` until CloudFormation has computed it: its rows, or `None` when it
/// failed for having no changes (it is deleted then, as is any failed one).
async fn wait_for_change_set(
    session: &Session,
    stack_name: &str,
    name: &str,
    id: &str,
    progress: &Progress,
) -> Result<Option<Vec<ChangeRow>>, DeployError> {
    let start = Instant::now();
    loop {
        let described = describe_change_set(session, stack_name, id).await?;
        match described.status {
            Some(ChangeSetStatus::CreateComplete) => {
                return Ok(Some(rows_from(&described.changes)));
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = described.reason.unwrap_or_default();
                delete_change_set(session, stack_name, id).await?;
                if no_changes_reason(&reason) {
                    return Ok(None);
                }
                return Err(DeployError::Aws {
                    operation: "CloudFormation.CreateChangeSet",
                    message: format!("change set {name} failed: {reason}"),
                });
            }
            _ => {}
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(DeployError::Aws {
                operation: "CloudFormation.DescribeChangeSet",
                message: format!("change set {name} still not computed after 10 minutes"),
            });
        }
        progress.tick(format!(
            "change set: waiting for {name} ({:.0} s)",
            start.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(poll_interval(session)).await;
    }
}

/// A change set as DescribeChangeSet returns it, every page read.
struct DescribedChangeSet {
    status: Option<ChangeSetStatus>,
    reason: Option<String>,
    changes: Vec<Change>,
}

async fn describe_change_set(
    session: &Session,
    stack_name: &str,
    id: &str,
) -> Result<DescribedChangeSet, DeployError> {
    let mut token: Option<String> = None;
    let mut changes = Vec::new();
    loop {
        let page = session
            .cloudformation
            .describe_change_set()
            .stack_name(stack_name)
            .change_set_name(id)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(aws_error("CloudFormation.DescribeChangeSet"))?;
        changes.extend(page.changes().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(DescribedChangeSet {
                status: page.status().cloned(),
                reason: page.status_reason().map(str::to_owned),
                changes,
            });
        }
    }
}

/// Deletes a change set.
pub async fn delete_change_set(
    session: &Session,
    stack_name: &str,
    id: &str,
) -> Result<(), DeployError> {
    session
        .cloudformation
        .delete_change_set()
        .stack_name(stack_name)
        .change_set_name(id)
        .send()
        .await
        .map_err(aws_error("CloudFormation.DeleteChangeSet"))?;
    Ok(())
}

/// How often to poll: the emulator answers at once, AWS takes seconds per resource.
pub fn poll_interval(session: &Session) -> Duration {
    if session.emulator {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(2)
    }
}

/// The event ids already there, so only the events of the next operation are streamed.
pub async fn seen_events(session: &Session, stack_name: &str) -> HashSet<String> {
    match session
        .cloudformation
        .describe_stack_events()
        .stack_name(stack_name)
        .send()
        .await
    {
        Ok(page) => page
            .stack_events()
            .iter()
            .filter_map(|e| e.event_id().map(str::to_owned))
            .collect(),
        Err(_) => HashSet::new(),
    }
}

/// The end of a watched operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Final status (`DELETE_COMPLETE` when the stack is gone).
    pub status: String,
    /// The first failing resource and its reason, if any failed.
    pub first_failure: Option<String>,
    /// The stack's status reason.
    pub status_reason: Option<String>,
}

/// Streams the stack's events until the operation ends, with per-resource progress and elapsed
/// time. Where the endpoint records no per-resource events (moto), the resource states from
/// DescribeStackResources are printed when the operation ends.
pub async fn watch(
    session: &Session,
    stack_name: &str,
    seen: HashSet<String>,
    expected_resources: usize,
    timeout: Duration,
    progress: &Progress,
) -> Result<Watched, DeployError> {
    let stack_ref = stack_name;
    let stack_name = readable_name(stack_ref);
    let mut events = EventLog {
        seen,
        start: Instant::now(),
        expected_resources,
        resource_events: false,
        finished: HashSet::new(),
        failures: Vec::new(),
    };
    loop {
        let info = describe(session, stack_ref).await?;
        let (status, reason) = match &info {
            Some(info) => (info.status.clone(), info.status_reason.clone()),
            None => ("DELETE_COMPLETE".to_owned(), None),
        };
        events.print_new(session, stack_ref, progress).await;
        if is_terminal(&status) {
            progress.clear_status();
            if !events.resource_events && info.is_some() {
                print_resource_states(session, stack_ref, progress).await;
            }
            return Ok(Watched {
                status,
                first_failure: events.failures.into_iter().next(),
                status_reason: reason,
            });
        }
        if events.start.elapsed() > timeout {
            progress.clear_status();
            return Err(DeployError::Timeout {
                stack: stack_name.to_owned(),
                status,
                seconds: timeout.as_secs(),
            });
        }
        progress.tick(format!(
            "{stack_name}: {status}, {}/{expected_resources} resources done, {:.0} s",
            events.done(),
            events.start.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(poll_interval(session)).await;
    }
}

/// The name in a stack id (deletes are watched by stack id; people read names), or the name
/// itself.
fn readable_name(stack_ref: &str) -> &str {
    stack_ref
        .split_once(":stack/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or(stack_ref)
}

/// The events of one watched operation: which were printed, which resources finished and which
/// failed.
struct EventLog {
    seen: HashSet<String>,
    start: Instant,
    expected_resources: usize,
    /// Whether the endpoint recorded any per-resource event.
    resource_events: bool,
    finished: HashSet<String>,
    failures: Vec<String>,
}

impl EventLog {
    /// Resources finished so far, at most the expected count.
    fn done(&self) -> usize {
        self.finished.len().min(self.expected_resources)
    }

    /// Prints the stack's events not seen yet, oldest first.
    async fn print_new(&mut self, session: &Session, stack_ref: &str, progress: &Progress) {
        let mut fresh: Vec<StackEvent> = match session
            .cloudformation
            .describe_stack_events()
            .stack_name(stack_ref)
            .send()
            .await
        {
            Ok(page) => page.stack_events().to_vec(),
            Err(_) => Vec::new(),
        };
        fresh.retain(|e| e.event_id().is_some_and(|id| !self.seen.contains(id)));
        // Newest first from the API; print oldest first.
        fresh.reverse();
        for event in fresh {
            self.seen
                .insert(event.event_id().unwrap_or_default().to_owned());
            self.print(&event, progress);
        }
    }

    /// Records what one event says about its resource and prints it with the elapsed time.
    fn print(&mut self, event: &StackEvent, progress: &Progress) {
        let logical = event.logical_resource_id().unwrap_or("?");
        let event_status = event.resource_status().map(|s| s.as_str()).unwrap_or("?");
        let kind = event.resource_type().unwrap_or("");
        let event_reason = event.resource_status_reason().unwrap_or("");
        let is_stack = kind == "AWS::CloudFormation::Stack";
        if !is_stack {
            self.resource_events = true;
            if event_status.ends_with("_COMPLETE") {
                self.finished.insert(logical.to_owned());
            }
            if event_status.ends_with("_FAILED")
                && !event_reason.contains("cancelled")
                && !event_reason.is_empty()
            {
                self.failures
                    .push(format!("{logical} ({kind}): {event_reason}"));
            }
        }
        let counter = if is_stack || self.expected_resources == 0 {
            String::new()
        } else {
            format!(" [{}/{}]", self.done(), self.expected_resources)
        };
        progress.line(format!(
            "  {:>6.1}s  {event_status:<28} {kind:<36} {logical}{counter}{}",
            self.start.elapsed().as_secs_f64(),
            if event_reason.is_empty() {
                String::new()
            } else {
                format!("  ({event_reason})")
            }
        ));
    }
}

async fn print_resource_states(session: &Session, stack_name: &str, progress: &Progress) {
    let Ok(answer) = session
        .cloudformation
        .describe_stack_resources()
        .stack_name(stack_name)
        .send()
        .await
    else {
        return;
    };
    // moto lists the resource types it does not emulate as entries without id or type.
    let resources: Vec<_> = answer
        .stack_resources()
        .iter()
        .filter(|r| r.logical_resource_id().is_some_and(|id| !id.is_empty()))
        .collect();
    let skipped = answer.stack_resources().len() - resources.len();
    progress.line(format!(
        "  resources (from DescribeStackResources: this endpoint records no per-resource events){}:",
        if skipped > 0 { format!(", {skipped} not emulated") } else { String::new() }
    ));
    for resource in resources {
        progress.line(format!(
            "    {:<20} {:<36} {}",
            resource
                .resource_status()
                .map(|s| s.as_str())
                .unwrap_or("?"),
            resource.resource_type().unwrap_or("?"),
            resource.logical_resource_id().unwrap_or("?"),
        ));
    }
}

/// Deletes a stack and waits until it is gone.
pub async fn delete_and_wait(
    session: &Session,
    stack_name: &str,
    timeout: Duration,
    progress: &Progress,
) -> Result<Watched, DeployError> {
    // On AWS, polling by id keeps the deleted stack (and its last events) visible; by name it
    // vanishes the moment the deletion completes. moto fails to describe a deleted stack by id
    // (and deletes synchronously anyway), so the emulator is polled by name.
    let stack_id = if session.emulator {
        stack_name.to_owned()
    } else {
        describe(session, stack_name)
            .await?
            .map_or_else(|| stack_name.to_owned(), |info| info.stack_id)
    };
    let seen = seen_events(session, &stack_id).await;
    start_delete(session, stack_name).await?;
    watch(session, &stack_id, seen, 0, timeout, progress).await
}

/// Starts deleting a stack (DeleteStack returns before the deletion ends).
pub async fn start_delete(session: &Session, stack_name: &str) -> Result<(), DeployError> {
    session
        .cloudformation
        .delete_stack()
        .stack_name(stack_name)
        .send()
        .await
        .map_err(aws_error("CloudFormation.DeleteStack"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_next_deploy_does() {
        assert_eq!(classify("CREATE_COMPLETE"), StackState::Ready);
        assert_eq!(classify("UPDATE_ROLLBACK_COMPLETE"), StackState::Ready);
        assert_eq!(classify("UPDATE_IN_PROGRESS"), StackState::Busy);
        assert_eq!(
            classify("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
            StackState::Busy
        );
        assert_eq!(classify("DELETE_IN_PROGRESS"), StackState::Busy);
        assert_eq!(classify("REVIEW_IN_PROGRESS"), StackState::NeverCreated);
        assert_eq!(classify("ROLLBACK_COMPLETE"), StackState::FailedCreate);
        assert_eq!(
            classify("UPDATE_ROLLBACK_FAILED"),
            StackState::NeedsRecovery
        );
        assert_eq!(classify("DELETE_FAILED"), StackState::NeedsRecovery);
        assert_eq!(classify("DELETE_COMPLETE"), StackState::Missing);
    }

    #[test]
    fn update_rollback_failed_gets_the_exact_recovery_commands() {
        let steps = recovery_steps_for(
            "--region ap-northeast-1",
            "prod",
            "sagaform-sqs-prod",
            "UPDATE_ROLLBACK_FAILED",
        );
        assert!(steps.contains(
            "aws cloudformation continue-update-rollback --stack-name sagaform-sqs-prod --region ap-northeast-1"
        ));
        assert!(steps.contains("--resources-to-skip"));
        assert!(steps.contains("cargo xtask deploy --pattern <pattern> --env prod"));
    }

    #[test]
    fn both_no_change_messages_are_recognised() {
        assert!(no_changes_reason(
            "The submitted information didn't contain changes. Submit different information to create a change set."
        ));
        assert!(no_changes_reason(
            "ValidationError: No updates are to be performed."
        ));
        assert!(!no_changes_reason("Template format error"));
    }
}
