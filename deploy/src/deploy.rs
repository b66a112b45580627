//! `deploy`: from the committed template of a pattern and env to an up-to-date stack.
//!
//! The order is chosen so nothing changes in AWS before every refusal had its chance: lock,
//! stale-template check, stack state, then bootstrap and uploads, the change set, approval, and
//! only then execution. Two layers: [`deploy_pattern`] (what `cargo xtask deploy` runs: checks
//! that the committed template is what `synth` produces) on top of [`deploy_template`] (any
//! template body, which tests also use to deploy deliberately broken templates).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sagaform_contract::template::{ARTIFACT_BUCKET_PARAMETER, function_of_code_key_parameter};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::EnvConfig;
use serde::Serialize;

use crate::bootstrap::{self, BucketState, Upload};
use crate::changeset::{ChangeRow, Format, counts, render_table};
use crate::confirm::{Confirm, Expect};
use crate::error::aws_error;
use crate::hotswap::HotswapReport;
use crate::lock::StackLock;
use crate::stack::{
    self, ChangeSet, ChangeSetResult, ChangeSetSpec, StackInfo, StackState, Watched,
};
use crate::template::{Grant, Template};
use crate::template_diff::TemplateDiff;
use crate::{Artifact, DeployError, PatternEnv, Progress, Refusal, Session, Workspace};

/// When a person must approve the change set before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalPolicy {
    /// Never (the local emulator: IAM is not enforced there, nothing real is at stake).
    Never,
    /// When the change grants new permissions or opens network access (like CDK's default).
    Broadening,
    /// Every change (production).
    AnyChange,
}

impl ApprovalPolicy {
    /// The policy of an env: production approves everything, the local emulator nothing, the
    /// others IAM-broadening changes.
    pub fn for_env(env: &EnvConfig) -> ApprovalPolicy {
        if env.is_local() {
            ApprovalPolicy::Never
        } else if env.production {
            ApprovalPolicy::AnyChange
        } else {
            ApprovalPolicy::Broadening
        }
    }
}

/// How to deploy.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// Execute the change set (false: `--no-execute`, leave it for review).
    pub execute: bool,
    /// How long to wait for the stack operation.
    pub timeout: Duration,
    /// When to ask for approval.
    pub approval: ApprovalPolicy,
    /// `--hotswap`: when only function code changed, update the functions directly instead of
    /// through a change set ([`crate::hotswap`]); refused in production.
    pub hotswap: bool,
}

impl DeployOptions {
    /// Execute, wait up to an hour, approval as the env says.
    pub fn for_env(env: &EnvConfig) -> DeployOptions {
        DeployOptions {
            execute: true,
            timeout: Duration::from_secs(3600),
            approval: ApprovalPolicy::for_env(env),
            hotswap: false,
        }
    }
}

/// A deploy of any template body.
#[derive(Debug, Clone)]
pub struct StackDeployment {
    /// Stack name.
    pub stack_name: String,
    /// Where the template comes from, for messages.
    pub template_file: String,
    /// The template body, deployed as is.
    pub template_body: String,
    /// Function packages; every `<Fn>CodeKey` parameter of the template needs one.
    pub artifacts: Vec<Artifact>,
    /// Stack tags.
    pub tags: Vec<(String, String)>,
    /// Turn termination protection on after the deploy.
    pub termination_protection: bool,
    /// Where to write the outputs (`None`: do not write them).
    pub outputs_path: Option<PathBuf>,
    /// Pattern and env, recorded in the outputs file.
    pub labels: BTreeMap<String, String>,
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployResult {
    /// The stack was created.
    Created,
    /// The stack was updated.
    Updated,
    /// Template and parameters matched the stack: nothing done.
    NoChanges,
    /// `--no-execute`: the change set waits for review.
    ChangeSetCreated,
    /// `--hotswap`: the functions' code was updated directly, without a change set; the
    /// stack's parameters still name the old code until the next full deploy.
    Hotswapped,
}

/// Everything a deploy did, for people and for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    /// Stack name.
    pub stack_name: String,
    /// How it ended.
    pub result: DeployResult,
    /// The change set name (kept only with `--no-execute`).
    pub change_set: Option<String>,
    /// Change set rows (empty for no changes).
    pub changes: Vec<ChangeRow>,
    /// The artifact bucket.
    pub bucket: String,
    /// Whether the bucket was created by this deploy.
    pub bucket_state: BucketState,
    /// Uploads, skipped ones included.
    pub uploads: Vec<Upload>,
    /// Stack outputs after the deploy.
    pub outputs: BTreeMap<String, String>,
    /// Where the outputs were written.
    pub outputs_file: Option<PathBuf>,
    /// Resource types the endpoint does not emulate (local emulator only).
    pub not_emulated: Vec<String>,
    /// The stack was deleted first because a previous create had failed.
    pub recreated: bool,
    /// What `--hotswap` did: the functions it updated, or why it fell back to a change set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hotswap: Option<HotswapReport>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Checks that the committed template of `pattern` / `env` is exactly what `synth` produces now
/// and returns its body.
pub fn committed_template(
    workspace: &Workspace,
    pattern: Pattern,
    env: &str,
) -> Result<String, DeployError> {
    use sagaform_stacks::synth::{self, DriftKind, Selection};
    let selection = Selection {
        pattern: Some(pattern),
        env: Some(env.to_owned()),
    };
    let files = synth::generate(workspace.root(), &selection)
        .map_err(|e| DeployError::Config(e.to_string()))?;
    let drifts = synth::drift(workspace.root(), &files, &selection)
        .map_err(|e| DeployError::Config(e.to_string()))?;
    let relative = Workspace::template_relative(pattern, env);
    if drifts
        .iter()
        .any(|d| d.path == relative && matches!(d.kind, DriftKind::Stale | DriftKind::Missing))
    {
        return Err(Refusal::StaleTemplate {
            pattern: pattern.name().to_owned(),
            env: env.to_owned(),
            path: relative,
        }
        .into());
    }
    let path = workspace.template_path(pattern, env);
    std::fs::read_to_string(&path).map_err(DeployError::io("read", path))
}

/// Stack tags of an env: `env`, `pattern`, `cost-centre` and the env's extra tags.
pub fn stack_tags(env: &EnvConfig, pattern: Pattern) -> Vec<(String, String)> {
    let mut tags: BTreeMap<String, String> = env.tags.extra.clone();
    tags.insert("cost-centre".to_owned(), env.tags.cost_centre.clone());
    tags.insert("env".to_owned(), env.name.clone());
    tags.insert("pattern".to_owned(), pattern.name().to_owned());
    tags.into_iter().collect()
}

/// `cargo xtask deploy`: refuses a stale template, then deploys the committed one (with
/// `options.hotswap`, updates only the functions' code when nothing else changed).
pub async fn deploy_pattern(
    session: &Session,
    target: PatternEnv<'_>,
    artifacts: &[Artifact],
    options: &DeployOptions,
    confirm: &dyn Confirm,
    progress: &Progress,
) -> Result<DeployOutcome, DeployError> {
    if options.hotswap {
        crate::hotswap::refuse_in_production(target.env)?;
    }
    // Taken before anything else (and before the first await, so of two deploys started
    // together in one process the second is refused at once).
    let lock = StackLock::acquire(target.workspace, &target.stack_name(), "deploy")?;
    let call = PatternDeploy {
        session,
        target,
        artifacts,
        options,
        confirm,
        progress,
    };
    if options.hotswap {
        return crate::hotswap::hotswap_locked(&call, lock).await;
    }
    deploy_pattern_locked(&call, lock).await
}

/// The arguments of [`deploy_pattern`], for the steps it takes under the stack's lock.
pub(crate) struct PatternDeploy<'a> {
    pub(crate) session: &'a Session,
    pub(crate) target: PatternEnv<'a>,
    pub(crate) artifacts: &'a [Artifact],
    pub(crate) options: &'a DeployOptions,
    pub(crate) confirm: &'a dyn Confirm,
    pub(crate) progress: &'a Progress,
}

/// [`deploy_pattern`] under the stack's lock: the committed template through a change set.
pub(crate) async fn deploy_pattern_locked(
    call: &PatternDeploy<'_>,
    lock: StackLock,
) -> Result<DeployOutcome, DeployError> {
    let PatternDeploy {
        session, target, ..
    } = *call;
    let template_body = committed_template(target.workspace, target.pattern, &target.env.name)?;
    let template = Template::parse(&target.template_file(), &template_body)?;
    let deployment = pattern_deployment(target, template_body, call.artifacts);
    crate::preflight::check_before_change_set(
        session,
        target.env,
        &deployment.stack_name,
        &template,
        call.progress,
    )
    .await?;
    deploy_locked(
        session,
        &deployment,
        call.options,
        call.confirm,
        call.progress,
        lock,
    )
    .await
}

/// The deployment of a pattern's committed template: its stack, tags, protection and outputs
/// file.
pub(crate) fn pattern_deployment(
    target: PatternEnv<'_>,
    template_body: String,
    artifacts: &[Artifact],
) -> StackDeployment {
    let PatternEnv { env, pattern, .. } = target;
    StackDeployment {
        stack_name: target.stack_name(),
        template_file: target.template_file(),
        template_body,
        artifacts: artifacts.to_vec(),
        tags: stack_tags(env, pattern),
        termination_protection: env.production,
        outputs_path: Some(target.outputs_path()),
        labels: BTreeMap::from([
            ("pattern".to_owned(), pattern.name().to_owned()),
            ("env".to_owned(), env.name.clone()),
        ]),
    }
}

/// Deploys any template body to a stack (locks the stack first).
pub async fn deploy_template(
    session: &Session,
    workspace: &Workspace,
    deployment: &StackDeployment,
    options: &DeployOptions,
    confirm: &dyn Confirm,
    progress: &Progress,
) -> Result<DeployOutcome, DeployError> {
    let lock = StackLock::acquire(workspace, &deployment.stack_name, "deploy")?;
    deploy_locked(session, deployment, options, confirm, progress, lock).await
}

/// The phases of a deploy, in order; each returns early with its refusal or failure.
async fn deploy_locked(
    session: &Session,
    deployment: &StackDeployment,
    options: &DeployOptions,
    confirm: &dyn Confirm,
    progress: &Progress,
    _lock: StackLock,
) -> Result<DeployOutcome, DeployError> {
    let started = Instant::now();
    let template = Template::parse(&deployment.template_file, &deployment.template_body)?;
    let stack = prepare_stack(session, &deployment.stack_name, options, progress).await?;
    let packages = upload_packages(session, deployment, &template, progress).await?;
    let plan = DeployPlan {
        session,
        deployment,
        template,
        stack,
        packages,
        started,
    };
    let Some(change_set) = create_change_set(&plan, progress).await? else {
        progress.line(format!(
            "stack {}: no changes, nothing to deploy",
            deployment.stack_name
        ));
        return report(&plan, DeployResult::NoChanges, None, Vec::new(), progress).await;
    };
    show_change_set(&plan, &change_set, progress);
    if !options.execute {
        leave_for_review(&plan, &change_set, progress);
        return Ok(plan.outcome(
            DeployResult::ChangeSetCreated,
            Some(change_set.name.clone()),
            change_set.rows,
            (BTreeMap::new(), None),
        ));
    }
    approve(&plan, &change_set, options.approval, confirm, progress).await?;
    execute(&plan, &change_set, options.timeout, progress).await?;
    let result = if plan.stack.create {
        DeployResult::Created
    } else {
        DeployResult::Updated
    };
    report(&plan, result, None, change_set.rows, progress).await
}

/// The deployed stack as the deploy found it, after clearing a stack that never got created.
pub(crate) struct PreparedStack {
    /// The stack, when one exists (not deleted for recreation).
    pub(crate) existing: Option<StackInfo>,
    /// No stack: the change set creates it.
    pub(crate) create: bool,
    /// The deployed template (empty when creating).
    pub(crate) deployed: Template,
    /// The stack was deleted first because a previous create had failed.
    pub(crate) recreated: bool,
}

/// The packages in the artifact bucket and the stack parameters naming them.
pub(crate) struct UploadedPackages {
    pub(crate) bucket: String,
    pub(crate) bucket_state: BucketState,
    pub(crate) uploads: Vec<Upload>,
    pub(crate) parameters: Vec<(String, Option<String>)>,
}

/// What the phases after the uploads work on.
pub(crate) struct DeployPlan<'a> {
    pub(crate) session: &'a Session,
    pub(crate) deployment: &'a StackDeployment,
    pub(crate) template: Template,
    pub(crate) stack: PreparedStack,
    pub(crate) packages: UploadedPackages,
    pub(crate) started: Instant,
}

impl DeployPlan<'_> {
    fn stack_name(&self) -> &str {
        &self.deployment.stack_name
    }

    /// Resource types the emulator does not create (none on AWS).
    fn not_emulated(&self) -> Vec<String> {
        if self.session.emulator {
            self.template.not_emulated_types()
        } else {
            Vec::new()
        }
    }

    fn outcome(
        &self,
        result: DeployResult,
        change_set: Option<String>,
        changes: Vec<ChangeRow>,
        (outputs, outputs_file): (BTreeMap<String, String>, Option<PathBuf>),
    ) -> DeployOutcome {
        DeployOutcome {
            stack_name: self.stack_name().to_owned(),
            result,
            change_set,
            changes,
            bucket: self.packages.bucket.clone(),
            bucket_state: self.packages.bucket_state,
            uploads: self.packages.uploads.clone(),
            outputs,
            outputs_file,
            not_emulated: self.not_emulated(),
            recreated: self.stack.recreated,
            hotswap: None,
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Reads the stack's state, which decides between CREATE and UPDATE or stops the deploy; a
/// stack whose first create failed, or that was never created, holds no resources and is
/// deleted so it can be created again.
async fn prepare_stack(
    session: &Session,
    stack_name: &str,
    options: &DeployOptions,
    progress: &Progress,
) -> Result<PreparedStack, DeployError> {
    let mut recreated = false;
    let mut existing = stack::describe(session, stack_name).await?;
    if let Some(info) = &existing {
        match stack::classify(&info.status) {
            StackState::Busy => {
                return Err(Refusal::StackBusy {
                    stack: stack_name.to_owned(),
                    status: info.status.clone(),
                }
                .into());
            }
            StackState::NeedsRecovery => {
                return Err(DeployError::NeedsRecovery {
                    stack: stack_name.to_owned(),
                    status: info.status.clone(),
                    steps: stack::recovery_steps(session, stack_name, &info.status),
                });
            }
            StackState::FailedCreate | StackState::NeverCreated => {
                delete_uncreated(session, stack_name, &info.status, options, progress).await?;
                recreated = true;
                existing = None;
            }
            StackState::Ready | StackState::Missing => {}
        }
    }
    let create = existing.is_none();
    let deployed = if create {
        Template::empty()
    } else {
        stack::deployed_template(session, stack_name).await?
    };
    Ok(PreparedStack {
        existing,
        create,
        deployed,
        recreated,
    })
}

/// Deletes a stack in ROLLBACK_COMPLETE or REVIEW_IN_PROGRESS (it holds no resources).
async fn delete_uncreated(
    session: &Session,
    stack_name: &str,
    status: &str,
    options: &DeployOptions,
    progress: &Progress,
) -> Result<(), DeployError> {
    let why = if status == "ROLLBACK_COMPLETE" {
        "its first create failed and was rolled back (ROLLBACK_COMPLETE), so it cannot be updated"
    } else {
        "it was never created (REVIEW_IN_PROGRESS: a change set that was not executed, or whose execution failed)"
    };
    progress.line(format!(
        "stack {stack_name}: {why}; it holds no resources, deleting it and creating it again"
    ));
    let watched = stack::delete_and_wait(session, stack_name, options.timeout, progress).await?;
    if watched.status != "DELETE_COMPLETE" {
        return Err(DeployError::NeedsRecovery {
            stack: stack_name.to_owned(),
            status: watched.status.clone(),
            steps: stack::recovery_steps(session, stack_name, &watched.status),
        });
    }
    Ok(())
}

/// Makes sure the artifact bucket exists, uploads the packages the template's `<Fn>CodeKey`
/// parameters need (content-addressed: unchanged ones are skipped) and fills the parameters.
pub(crate) async fn upload_packages(
    session: &Session,
    deployment: &StackDeployment,
    template: &Template,
    progress: &Progress,
) -> Result<UploadedPackages, DeployError> {
    let bucket = bootstrap::bucket_name(&session.account_id, &session.region, &session.env_name)?;
    let bucket_state = bootstrap::ensure_bucket(session, &bucket, progress).await?;
    let mut to_upload = Vec::new();
    for function in template
        .parameter_names()
        .iter()
        .filter_map(|p| function_of_code_key_parameter(p))
    {
        let artifact = deployment
            .artifacts
            .iter()
            .find(|a| a.function() == function)
            .ok_or_else(|| {
                DeployError::Build(format!(
                    "{} needs the {function} function but no package was built for it: run `cargo xtask build`",
                    deployment.template_file
                ))
            })?;
        to_upload.push(artifact.clone());
    }
    let uploads = bootstrap::upload_artifacts(session, &bucket, &to_upload, progress).await?;
    let parameters = stack_parameters(deployment, template, &bucket, &to_upload)?;
    Ok(UploadedPackages {
        bucket,
        bucket_state,
        uploads,
        parameters,
    })
}

/// The stack parameters: the bucket, each package's key; parameters with a default keep it.
fn stack_parameters(
    deployment: &StackDeployment,
    template: &Template,
    bucket: &str,
    uploaded: &[Artifact],
) -> Result<Vec<(String, Option<String>)>, DeployError> {
    let mut parameters = Vec::new();
    for name in template.parameter_names() {
        let value = if name == ARTIFACT_BUCKET_PARAMETER {
            bucket.to_owned()
        } else if let Some(artifact) = uploaded.iter().find(|a| a.parameter_name() == name) {
            artifact.key()
        } else if template.parameter_has_default(&name) {
            continue;
        } else {
            return Err(DeployError::Template {
                file: deployment.template_file.clone(),
                reason: format!(
                    "parameter {name} has no default and is neither ArtifactBucket nor a <Function>CodeKey: the deploy cannot fill it"
                ),
            });
        };
        parameters.push((name, Some(value)));
    }
    Ok(parameters)
}

/// Creates the change set; `None` when there is nothing to change.
async fn create_change_set(
    plan: &DeployPlan<'_>,
    progress: &Progress,
) -> Result<Option<ChangeSet>, DeployError> {
    let (session, stack_name) = (plan.session, plan.stack_name());
    let parameters = &plan.packages.parameters;
    let spec = ChangeSetSpec {
        stack_name,
        create: plan.stack.create,
        template_body: &plan.deployment.template_body,
        parameters,
        tags: &plan.deployment.tags,
        purpose: "deploy",
    };
    let change_set = match stack::create_change_set(session, &spec, progress).await? {
        ChangeSetResult::NoChanges => return Ok(None),
        ChangeSetResult::Ready(change_set) => change_set,
    };
    let current_parameters = plan
        .stack
        .existing
        .as_ref()
        .map(|i| i.parameters.clone())
        .unwrap_or_default();
    let same_parameters = parameters
        .iter()
        .all(|(k, v)| current_parameters.get(k) == v.as_ref());
    if !plan.stack.create
        && change_set.rows.is_empty()
        && session.emulator
        && same_parameters
        && TemplateDiff::between(&plan.stack.deployed, &plan.template).is_empty()
    {
        // moto computes an empty change set where AWS would fail it: same template in another
        // form, same parameters.
        stack::delete_change_set(session, stack_name, &change_set.id).await?;
        return Ok(None);
    }
    Ok(Some(change_set))
}

/// Prints the change set's counts and rows, and what the emulator will not create.
fn show_change_set(plan: &DeployPlan<'_>, change_set: &ChangeSet, progress: &Progress) {
    let (add, modify, remove) = counts(&change_set.rows);
    progress.line(format!(
        "change set {} ({}): {add} to add, {modify} to modify, {remove} to remove",
        change_set.name, change_set.kind
    ));
    progress.line(render_table(&change_set.rows, Format::Text).trim_end());
    let not_emulated = plan.not_emulated();
    if !not_emulated.is_empty() {
        progress.line(format!(
            "note: the local emulator does not create {} (deployed as no-ops; they exist only on AWS)",
            not_emulated.join(", ")
        ));
    }
}

/// `--no-execute`: says how to execute or delete the change set left for review.
fn leave_for_review(plan: &DeployPlan<'_>, change_set: &ChangeSet, progress: &Progress) {
    let stack_name = plan.stack_name();
    let target = stack::cli_target(plan.session);
    let name = &change_set.name;
    progress.line(format!(
        "change set {name} left for review (--no-execute). Execute it with:\n  aws cloudformation execute-change-set --stack-name {stack_name} --change-set-name {name} {target}\nor delete it with:\n  aws cloudformation delete-change-set --stack-name {stack_name} --change-set-name {name} {target}"
    ));
}

/// Asks for approval when the policy wants it (production, or new permissions and network
/// access); a refusal or no answer discards the change set.
async fn approve(
    plan: &DeployPlan<'_>,
    change_set: &ChangeSet,
    policy: ApprovalPolicy,
    confirm: &dyn Confirm,
    progress: &Progress,
) -> Result<(), DeployError> {
    let stack_name = plan.stack_name();
    let broadening = broadening_grants(&plan.stack.deployed, &plan.template);
    let reason = match policy {
        ApprovalPolicy::AnyChange => format!("env {} is production", plan.session.env_name),
        ApprovalPolicy::Broadening if !broadening.is_empty() => format!(
            "it grants {} new permission(s) or network access",
            broadening.len()
        ),
        _ => return Ok(()),
    };
    let question = format!(
        "execute change set {} on {stack_name} ({reason})?",
        change_set.name
    );
    show_grants(&broadening, progress);
    let what = format!("change set {} on {stack_name} ({reason})", change_set.name);
    let verdict = confirm.ask(&question, &Expect::YesNo).require(what);
    if verdict.is_err() {
        discard(plan.session, stack_name, &change_set.id, plan.stack.create).await?;
    }
    verdict.map_err(DeployError::from)
}

/// Lists the new grants (at most 40) before the approval question.
fn show_grants(broadening: &[Grant], progress: &Progress) {
    if broadening.is_empty() {
        return;
    }
    progress.line("new permissions and network access:");
    for grant in broadening.iter().take(40) {
        progress.line(format!(
            "  + {} {} {} {}",
            grant.logical_id, grant.effect, grant.what, grant.on
        ));
    }
    if broadening.len() > 40 {
        progress.line(format!("  ... and {} more", broadening.len() - 40));
    }
}

/// Executes the change set and follows the stack until it settles; a stack that did not reach
/// CREATE_COMPLETE or UPDATE_COMPLETE is an error saying what to do next.
async fn execute(
    plan: &DeployPlan<'_>,
    change_set: &ChangeSet,
    timeout: Duration,
    progress: &Progress,
) -> Result<(), DeployError> {
    let (session, stack_name, create) = (plan.session, plan.stack_name(), plan.stack.create);
    let seen = stack::seen_events(session, stack_name).await;
    progress.line(format!(
        "executing change set {} on {stack_name}",
        change_set.name
    ));
    let executed = session
        .cloudformation
        .execute_change_set()
        .stack_name(stack_name)
        .change_set_name(&change_set.id)
        .send()
        .await;
    if let Err(e) = executed {
        let message = crate::error::ProvideMessage::readable_message(&e);
        return Err(execution_refused(session, stack_name, create, message));
    }
    let watched = stack::watch(
        session,
        stack_name,
        seen,
        change_set.rows.len(),
        timeout,
        progress,
    )
    .await?;
    let success = if create {
        "CREATE_COMPLETE"
    } else {
        "UPDATE_COMPLETE"
    };
    if watched.status != success {
        return Err(stack_not_deployed(session, stack_name, watched));
    }
    progress.line(format!(
        "stack {stack_name}: {} in {:.1} s",
        watched.status,
        plan.started.elapsed().as_secs_f64()
    ));
    if plan.deployment.termination_protection {
        enable_termination_protection(session, stack_name, progress).await?;
    }
    Ok(())
}

/// The error of a failed ExecuteChangeSet call.
fn execution_refused(
    session: &Session,
    stack_name: &str,
    create: bool,
    message: String,
) -> DeployError {
    if !session.emulator {
        // On AWS the call only starts the execution: its failure changed nothing, and the
        // change set stays for inspection.
        return DeployError::Aws {
            operation: "CloudFormation.ExecuteChangeSet",
            message,
        };
    }
    // moto applies the change set inside ExecuteChangeSet and reports a failing resource as
    // the call's error, leaving the stack without a rollback.
    let next = if create {
        "; the next deploy deletes the half-created stack and creates it again"
    } else {
        ""
    };
    DeployError::StackFailed {
        stack: stack_name.to_owned(),
        status: if create {
            "CREATE_FAILED"
        } else {
            "UPDATE_FAILED"
        }
        .to_owned(),
        reason: format!("a resource failed: {message}{next}"),
    }
}

/// The error of a stack execution that ended in another status than the one asked for.
fn stack_not_deployed(session: &Session, stack_name: &str, watched: Watched) -> DeployError {
    let reason = watched
        .first_failure
        .clone()
        .or(watched.status_reason.clone())
        .unwrap_or_else(|| "no reason given".to_owned());
    if stack::classify(&watched.status) == StackState::NeedsRecovery {
        return DeployError::NeedsRecovery {
            stack: stack_name.to_owned(),
            status: watched.status.clone(),
            steps: format!(
                "first failure: {reason}\n{}",
                stack::recovery_steps(session, stack_name, &watched.status)
            ),
        };
    }
    let next = match watched.status.as_str() {
        "ROLLBACK_COMPLETE" => {
            "; the stack was rolled back, the next deploy deletes it and creates it again"
        }
        "UPDATE_ROLLBACK_COMPLETE" => {
            "; the stack was rolled back to its previous state, fix the cause and deploy again"
        }
        _ => "",
    };
    DeployError::StackFailed {
        stack: stack_name.to_owned(),
        status: watched.status,
        reason: format!("first failing resource: {reason}{next}"),
    }
}

/// The last phase: reads, prints and records the outputs, and says how the deploy ended.
pub(crate) async fn report(
    plan: &DeployPlan<'_>,
    result: DeployResult,
    change_set: Option<String>,
    changes: Vec<ChangeRow>,
    progress: &Progress,
) -> Result<DeployOutcome, DeployError> {
    let outputs = finish_outputs(
        plan.session,
        plan.deployment,
        &plan.template,
        &plan.packages.parameters,
        progress,
    )
    .await?;
    Ok(plan.outcome(result, change_set, changes, outputs))
}

/// The grants of `new` that `deployed` does not have, plus the denials it drops.
pub fn broadening_grants(deployed: &Template, new: &Template) -> Vec<Grant> {
    let before = deployed.grants();
    let after = new.grants();
    let mut broadening: Vec<Grant> = after
        .iter()
        .filter(|g| g.effect != "Deny" && !before.contains(g))
        .cloned()
        .collect();
    broadening.extend(
        before
            .iter()
            .filter(|g| g.effect == "Deny" && !after.contains(g))
            .map(|g| Grant {
                effect: "no longer Deny".to_owned(),
                ..g.clone()
            }),
    );
    broadening
}

/// Deletes a change set that will not run; for a CREATE, also the empty stack it made.
async fn discard(
    session: &Session,
    stack_name: &str,
    change_set_id: &str,
    create: bool,
) -> Result<(), DeployError> {
    stack::delete_change_set(session, stack_name, change_set_id).await?;
    if create {
        stack::start_delete(session, stack_name).await?;
    }
    Ok(())
}

async fn enable_termination_protection(
    session: &Session,
    stack_name: &str,
    progress: &Progress,
) -> Result<(), DeployError> {
    let result = session
        .cloudformation
        .update_termination_protection()
        .stack_name(stack_name)
        .enable_termination_protection(true)
        .send()
        .await;
    match result {
        Ok(_) => {
            progress.line(format!("stack {stack_name}: termination protection on"));
            Ok(())
        }
        Err(e) if session.emulator => {
            progress.line(format!(
                "note: the emulator does not support termination protection ({})",
                crate::error::ProvideMessage::readable_message(&e)
            ));
            Ok(())
        }
        Err(e) => Err(aws_error("CloudFormation.UpdateTerminationProtection")(e)),
    }
}

/// Reads the stack outputs, prints them and writes them to the outputs file.
async fn finish_outputs(
    session: &Session,
    deployment: &StackDeployment,
    template: &Template,
    parameters: &[(String, Option<String>)],
    progress: &Progress,
) -> Result<(BTreeMap<String, String>, Option<PathBuf>), DeployError> {
    let stack_name = deployment.stack_name.as_str();
    let mut outputs = stack_outputs(session, stack_name).await?;
    if outputs.is_empty() && template.has_outputs() && session.emulator {
        compute_emulator_outputs(session, deployment, parameters).await?;
        outputs = stack_outputs(session, stack_name).await?;
    }
    print_outputs(&outputs, session.emulator, progress);
    let Some(path) = &deployment.outputs_path else {
        return Ok((outputs, None));
    };
    write_outputs_file(path, session, deployment, &outputs)?;
    progress.line(format!("outputs written to {}", path.display()));
    Ok((outputs, Some(path.clone())))
}

/// The outputs DescribeStacks reports (none when the stack is gone).
async fn stack_outputs(
    session: &Session,
    stack_name: &str,
) -> Result<BTreeMap<String, String>, DeployError> {
    Ok(stack::describe(session, stack_name)
        .await?
        .map(|i| i.outputs)
        .unwrap_or_default())
}

/// moto evaluates outputs only in CreateStack and UpdateStack, never for a change set; an
/// UpdateStack with the same template (moto refuses a byte-identical body, hence the trailing
/// newline) makes it compute them without changing any resource.
async fn compute_emulator_outputs(
    session: &Session,
    deployment: &StackDeployment,
    parameters: &[(String, Option<String>)],
) -> Result<(), DeployError> {
    let parameters = parameters
        .iter()
        .map(|(k, v)| {
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(k)
                .set_parameter_value(v.clone())
                .build()
        })
        .collect::<Vec<_>>();
    session
        .cloudformation
        .update_stack()
        .stack_name(&deployment.stack_name)
        .template_body(format!("{}\n", deployment.template_body))
        .set_parameters(Some(parameters))
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .map_err(aws_error("CloudFormation.UpdateStack (emulator outputs)"))?;
    Ok(())
}

/// Prints the outputs as an aligned list.
fn print_outputs(outputs: &BTreeMap<String, String>, emulator: bool, progress: &Progress) {
    if outputs.is_empty() {
        return;
    }
    progress.line("outputs:");
    let width = outputs.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in outputs {
        // moto leaves some `Fn::Sub` of resources it does not model (the HTTP API's URL) as
        // written; say so rather than print it as if it were an address.
        let note = if emulator && value.contains("${") {
            "  (left unresolved by the emulator)"
        } else {
            ""
        };
        progress.line(format!("  {key:<width$}  {value}{note}"));
    }
}

/// Writes the outputs file later commands read: where the stack is, its labels and outputs.
fn write_outputs_file(
    path: &Path,
    session: &Session,
    deployment: &StackDeployment,
    outputs: &BTreeMap<String, String>,
) -> Result<(), DeployError> {
    #[derive(Serialize)]
    struct OutputsFile<'a> {
        stack_name: &'a str,
        region: &'a str,
        account_id: &'a str,
        endpoint_url: Option<&'a str>,
        #[serde(flatten)]
        labels: &'a BTreeMap<String, String>,
        outputs: &'a BTreeMap<String, String>,
    }
    let file = OutputsFile {
        stack_name: &deployment.stack_name,
        region: &session.region,
        account_id: &session.account_id,
        endpoint_url: session.endpoint_url.as_deref(),
        labels: &deployment.labels,
        outputs,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(DeployError::io("create", dir))?;
    }
    let text = serde_json::to_string_pretty(&file).expect("outputs serialize") + "\n";
    std::fs::write(path, text).map_err(DeployError::io("write", path))
}
