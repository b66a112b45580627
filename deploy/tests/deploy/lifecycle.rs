//! The stack lifecycle on the local emulator (moto 5.2.5, started per test): create, no-op
//! redeploy, update after a config change, diff and destroy for every pattern, and the paths
//! that must not go wrong: a failing resource, a stale template, a missing stack, two deploys at
//! once, approvals without a terminal, a change set left for review.

use crate::support;

use sagaform_deploy::change_preview::diff_pattern;
use sagaform_deploy::changeset::Format;
use sagaform_deploy::confirm::{AlwaysNo, AssumeYes, NoTerminal};
use sagaform_deploy::deploy::{
    ApprovalPolicy, DeployOptions, DeployResult, StackDeployment, deploy_pattern, deploy_template,
};
use sagaform_deploy::destroy::{DestroyOptions, DestroyResult, destroy_pattern};
use sagaform_deploy::template_diff::EntryChange;
use sagaform_deploy::{Artifact, DeployError, Progress, Refusal, stack, stack_name};
use sagaform_stacks::Pattern;
use support::Fixture;

async fn full_lifecycle(pattern: Pattern) {
    let mut f = Fixture::new(&format!("lifecycle-{pattern}")).await;
    let artifacts = f.artifacts(pattern);
    let options = DeployOptions::for_env(&f.env);
    let name = stack_name(pattern, "local");
    let (progress, lines) = Progress::capture();

    // Create: bootstrap, every package uploaded, outputs printed and written.
    let created = deploy_pattern(
        &f.session,
        f.target(pattern),
        &artifacts,
        &options,
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap_or_else(|e| panic!("first deploy of {pattern}: {e}\n{}", lines.text()));
    assert_eq!(created.result, DeployResult::Created);
    assert_eq!(created.uploads.len(), artifacts.len());
    assert!(created.uploads.iter().all(|u| u.uploaded));
    assert!(!created.changes.is_empty());
    assert!(created.changes.iter().all(|c| c.action == "Add"));
    assert!(
        !created.outputs.is_empty(),
        "outputs missing:\n{}",
        lines.text()
    );
    let outputs_file = f.outputs_file(pattern);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&outputs_file).unwrap()).unwrap();
    assert_eq!(written["stack_name"], name.as_str());
    assert_eq!(
        written["outputs"].as_object().unwrap().len(),
        created.outputs.len()
    );
    assert!(
        lines.text().contains("the local emulator does not create"),
        "no note about types moto does not emulate:\n{}",
        lines.text()
    );

    // Diff right after the deploy: nothing to change.
    let report = diff_pattern(&f.session, f.target(pattern), &artifacts, &progress)
        .await
        .unwrap();
    assert!(
        report.is_empty(),
        "diff after deploy is not empty:\n{}",
        report.render(Format::Text)
    );

    // No-op redeploy: no upload, no stack update (no new stack event), the empty change set
    // gone.
    let events_before = f.event_count(&name).await;
    let again = deploy_pattern(
        &f.session,
        f.target(pattern),
        &artifacts,
        &options,
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lines.text()));
    assert_eq!(again.result, DeployResult::NoChanges);
    assert!(
        again.uploads.iter().all(|u| !u.uploaded),
        "{:?}",
        again.uploads
    );
    assert_eq!(
        f.event_count(&name).await,
        events_before,
        "a no-op redeploy touched the stack"
    );
    assert_eq!(again.outputs, created.outputs);
    let change_sets = f
        .session
        .cloudformation
        .list_change_sets()
        .stack_name(&name)
        .send()
        .await
        .unwrap();
    assert!(
        change_sets
            .summaries()
            .iter()
            .all(|s| s.execution_status().map(|e| e.as_str()) != Some("AVAILABLE")),
        "an empty change set was left behind"
    );

    // A config change (log retention), synthesized: diff names the property, deploy updates.
    f.edit_local_env("log_retention_days = 1", "log_retention_days = 3");
    f.synth();
    let report = diff_pattern(&f.session, f.target(pattern), &artifacts, &progress)
        .await
        .unwrap();
    let text = report.render(Format::Text);
    assert!(!report.stale);
    let log_groups: Vec<_> = report
        .template
        .entries
        .iter()
        .filter(|e| e.resource_type.as_deref() == Some("AWS::Logs::LogGroup"))
        .collect();
    assert!(!log_groups.is_empty(), "{text}");
    for entry in &log_groups {
        assert_eq!(entry.change, EntryChange::Modified);
        assert!(
            entry
                .properties
                .iter()
                .any(|p| p.path == "Properties.RetentionInDays"
                    && p.old.as_deref() == Some("1")
                    && p.new.as_deref() == Some("3")),
            "{text}"
        );
    }
    let rows = report
        .change_set
        .as_ref()
        .expect("a change set view for an existing stack");
    assert!(
        rows.iter()
            .any(|r| r.action == "Modify" && r.resource_type == "AWS::Logs::LogGroup"),
        "{text}"
    );
    assert!(
        report
            .render(Format::Markdown)
            .contains("| ~ | Resources |")
    );

    let updated = deploy_pattern(
        &f.session,
        f.target(pattern),
        &artifacts,
        &options,
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lines.text()));
    assert_eq!(updated.result, DeployResult::Updated);
    assert!(
        updated.uploads.iter().all(|u| !u.uploaded),
        "unchanged packages were uploaded again"
    );
    assert!(updated.changes.iter().all(|c| c.action == "Modify"));
    let report = diff_pattern(&f.session, f.target(pattern), &artifacts, &progress)
        .await
        .unwrap();
    assert!(report.is_empty(), "{}", report.render(Format::Text));

    // Destroy: gone, outputs file and local artifacts cleared.
    let destroyed = destroy_pattern(
        &f.session,
        f.target(pattern),
        &DestroyOptions::default(),
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lines.text()));
    assert_eq!(destroyed.result, DestroyResult::Destroyed);
    assert!(stack::describe(&f.session, &name).await.unwrap().is_none());
    assert!(!outputs_file.exists());
    assert_eq!(destroyed.artifacts_cleared.len(), artifacts.len());
    let bucket = &created.bucket;
    for artifact in &artifacts {
        let head = f
            .session
            .s3
            .head_object()
            .bucket(bucket)
            .key(artifact.key())
            .send()
            .await;
        assert!(
            head.is_err(),
            "{} still in the local bucket",
            artifact.key()
        );
    }
}

#[tokio::test]
async fn orchestrator_goes_through_the_whole_lifecycle() {
    full_lifecycle(Pattern::Orchestrator).await;
}

#[tokio::test]
async fn sqs_goes_through_the_whole_lifecycle() {
    full_lifecycle(Pattern::Sqs).await;
}

#[tokio::test]
async fn stepfunctions_goes_through_the_whole_lifecycle() {
    full_lifecycle(Pattern::StepFunctions).await;
}

/// A queue whose FIFO flag contradicts its name: the emulator rejects it when creating it.
const BROKEN: &str = r#"
Parameters:
  ArtifactBucket: {Type: String}
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: sagaform-broken-queue
      FifoQueue: true
Outputs:
  TopicArn: {Value: !Ref Topic}
"#;

#[tokio::test]
async fn a_failing_resource_is_reported_and_the_next_deploy_recovers() {
    let f = Fixture::new("failing-resource").await;
    let options = DeployOptions::for_env(&f.env);
    let (progress, _lines) = Progress::capture();
    let mut deployment = StackDeployment {
        stack_name: "sagaform-broken-local".to_owned(),
        template_file: "broken.yaml".to_owned(),
        template_body: BROKEN.to_owned(),
        artifacts: Vec::new(),
        tags: vec![("env".to_owned(), "local".to_owned())],
        termination_protection: false,
        outputs_path: None,
        labels: Default::default(),
    };
    let error = deploy_template(
        &f.session,
        &f.workspace,
        &deployment,
        &options,
        &AssumeYes,
        &progress,
    )
    .await
    .expect_err("the broken queue must fail the deploy");
    let message = error.to_string();
    assert!(
        matches!(error, DeployError::StackFailed { .. }),
        "{message}"
    );
    assert!(message.contains("sagaform-broken-local"), "{message}");
    assert!(
        message.to_lowercase().contains("fifo"),
        "the reason is missing: {message}"
    );
    assert!(
        message.contains("next deploy"),
        "no recovery hint: {message}"
    );

    deployment.template_body = BROKEN.replace("FifoQueue: true", "FifoQueue: false");
    let recovered = deploy_template(
        &f.session,
        &f.workspace,
        &deployment,
        &options,
        &AssumeYes,
        &progress,
    )
    .await
    .expect("the fixed template deploys over the failed one");
    assert_eq!(recovered.result, DeployResult::Created);
    assert!(recovered.recreated, "the failed stack was not replaced");
    assert!(recovered.outputs.contains_key("TopicArn"));
}

#[tokio::test]
async fn a_stale_template_is_refused_before_anything_changes() {
    let mut f = Fixture::new("stale").await;
    f.edit_local_env("log_retention_days = 1", "log_retention_days = 7");
    let (progress, _lines) = Progress::capture();
    let error = deploy_pattern(
        &f.session,
        f.target(Pattern::Sqs),
        &f.artifacts(Pattern::Sqs),
        &DeployOptions::for_env(&f.env),
        &AssumeYes,
        &progress,
    )
    .await
    .expect_err("a stale template must be refused");
    assert!(
        matches!(error.refusal(), Some(Refusal::StaleTemplate { .. })),
        "{error}"
    );
    assert_eq!(error.exit_code(), 3);
    assert!(error.to_string().contains("templates/sqs/local.yaml"));
    assert!(error.to_string().contains("cargo xtask synth"));
    assert!(
        stack::describe(&f.session, "sagaform-sqs-local")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn destroying_a_missing_stack_is_nothing_to_destroy() {
    let f = Fixture::new("destroy-missing").await;
    let (progress, lines) = Progress::capture();
    let outcome = destroy_pattern(
        &f.session,
        f.target(Pattern::StepFunctions),
        &DestroyOptions::default(),
        &NoTerminal,
        &progress,
    )
    .await
    .expect("a missing stack is not an error");
    assert_eq!(outcome.result, DestroyResult::NothingToDestroy);
    assert!(lines.text().contains("nothing to destroy"));
}

#[tokio::test]
async fn the_second_of_two_concurrent_deploys_is_refused() {
    let f = Fixture::new("concurrent").await;
    let artifacts = f.artifacts(Pattern::Sqs);
    let options = DeployOptions::for_env(&f.env);
    let (progress, _lines) = Progress::capture();
    let deploy = || {
        deploy_pattern(
            &f.session,
            f.target(Pattern::Sqs),
            &artifacts,
            &options,
            &AssumeYes,
            &progress,
        )
    };
    let (first, second) = tokio::join!(deploy(), deploy());
    let first = first.expect("the first deploy proceeds");
    assert_eq!(first.result, DeployResult::Created);
    let error = second.expect_err("the second deploy must be refused");
    assert!(
        matches!(error.refusal(), Some(Refusal::LockedLocally { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("sagaform-sqs-local"), "{error}");
    assert!(error.to_string().contains("deploy by pid"), "{error}");
    // The lock goes with the first deploy: a later deploy runs (as a no-op).
    let later = deploy().await.unwrap();
    assert_eq!(later.result, DeployResult::NoChanges);
}

#[tokio::test]
async fn iam_changes_without_a_terminal_are_refused_and_leave_nothing() {
    let f = Fixture::new("approval").await;
    let mut options = DeployOptions::for_env(&f.env);
    // The approval rules of a non-local, non-production env.
    options.approval = ApprovalPolicy::Broadening;
    let (progress, lines) = Progress::capture();
    let artifacts = f.artifacts(Pattern::StepFunctions);
    let error = deploy_pattern(
        &f.session,
        f.target(Pattern::StepFunctions),
        &artifacts,
        &options,
        &NoTerminal,
        &progress,
    )
    .await
    .expect_err("new IAM roles need approval");
    assert!(
        matches!(error.refusal(), Some(Refusal::NeedsConfirmation { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("--yes"));
    assert!(lines.text().contains("new permissions"), "{}", lines.text());
    assert!(
        stack::describe(&f.session, "sagaform-stepfunctions-local")
            .await
            .unwrap()
            .is_none()
    );

    let error = deploy_pattern(
        &f.session,
        f.target(Pattern::StepFunctions),
        &artifacts,
        &options,
        &AlwaysNo,
        &progress,
    )
    .await
    .expect_err("declined");
    assert!(
        matches!(error.refusal(), Some(Refusal::NotConfirmed { .. })),
        "{error}"
    );

    // Production asks even for changes that grant nothing new.
    options.approval = ApprovalPolicy::AnyChange;
    let error = deploy_pattern(
        &f.session,
        f.target(Pattern::StepFunctions),
        &artifacts,
        &options,
        &NoTerminal,
        &progress,
    )
    .await
    .expect_err("production changes need approval");
    assert!(error.to_string().contains("production"), "{error}");
}

#[tokio::test]
async fn no_execute_leaves_the_change_set_for_review() {
    let f = Fixture::new("no-execute").await;
    let mut options = DeployOptions::for_env(&f.env);
    options.execute = false;
    let (progress, lines) = Progress::capture();
    let artifacts: Vec<Artifact> = f.artifacts(Pattern::Orchestrator);
    let outcome = deploy_pattern(
        &f.session,
        f.target(Pattern::Orchestrator),
        &artifacts,
        &options,
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, DeployResult::ChangeSetCreated);
    let name = outcome.change_set.clone().unwrap();
    assert!(
        lines
            .text()
            .contains("aws cloudformation execute-change-set"),
        "{}",
        lines.text()
    );
    let described = f
        .session
        .cloudformation
        .describe_change_set()
        .stack_name("sagaform-orchestrator-local")
        .change_set_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.execution_status().map(|s| s.as_str()),
        Some("AVAILABLE")
    );

    // The next real deploy replaces the never-created stack.
    options.execute = true;
    let deployed = deploy_pattern(
        &f.session,
        f.target(Pattern::Orchestrator),
        &artifacts,
        &options,
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(deployed.result, DeployResult::Created);
    assert!(deployed.recreated);
}

/// A stack holding data with a Retain policy, deployed under the sqs stack's name.
const WITH_RETAINED_TABLE: &str = r#"
Resources:
  KeptTable:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      TableName: sagaform-kept-table
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  Topic:
    Type: AWS::SNS::Topic
"#;

#[tokio::test]
async fn destroy_lists_the_data_kept_by_retain_policies() {
    let f = Fixture::new("retained").await;
    let (progress, lines) = Progress::capture();
    let deployment = StackDeployment {
        stack_name: stack_name(Pattern::Sqs, "local"),
        template_file: "retained.yaml".to_owned(),
        template_body: WITH_RETAINED_TABLE.to_owned(),
        artifacts: Vec::new(),
        tags: Vec::new(),
        termination_protection: false,
        outputs_path: None,
        labels: Default::default(),
    };
    deploy_template(
        &f.session,
        &f.workspace,
        &deployment,
        &DeployOptions::for_env(&f.env),
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap();
    let outcome = destroy_pattern(
        &f.session,
        f.target(Pattern::Sqs),
        &DestroyOptions::default(),
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, DestroyResult::Destroyed);
    assert_eq!(outcome.retained.len(), 1, "{:?}", outcome.retained);
    let kept = &outcome.retained[0];
    assert_eq!(kept.logical_id, "KeptTable");
    assert_eq!(kept.resource_type, "AWS::DynamoDB::Table");
    assert_eq!(kept.policy, "Retain");
    assert_eq!(kept.physical_id.as_deref(), Some("sagaform-kept-table"));
    assert!(lines.text().contains("KEPT"), "{}", lines.text());
}

#[tokio::test]
async fn production_stacks_need_force_prod_and_a_typed_confirmation() {
    let mut f = Fixture::new("prod-guard").await;
    let artifacts = f.artifacts(Pattern::Sqs);
    let (progress, _lines) = Progress::capture();
    deploy_pattern(
        &f.session,
        f.target(Pattern::Sqs),
        &artifacts,
        &DeployOptions::for_env(&f.env),
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap();
    // The same stack, seen through an env marked as production.
    f.env.production = true;
    let error = destroy_pattern(
        &f.session,
        f.target(Pattern::Sqs),
        &DestroyOptions::default(),
        &AssumeYes,
        &progress,
    )
    .await
    .expect_err("prod needs --force-prod");
    assert!(
        matches!(error.refusal(), Some(Refusal::ProductionProtected { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("--force-prod"));

    let forced = DestroyOptions {
        force_prod: true,
        ..DestroyOptions::default()
    };
    let error = destroy_pattern(
        &f.session,
        f.target(Pattern::Sqs),
        &forced,
        &NoTerminal,
        &progress,
    )
    .await
    .expect_err("without a terminal the stack name cannot be typed");
    assert!(
        matches!(error.refusal(), Some(Refusal::NeedsConfirmation { .. })),
        "{error}"
    );
    let error = destroy_pattern(
        &f.session,
        f.target(Pattern::Sqs),
        &forced,
        &AlwaysNo,
        &progress,
    )
    .await
    .expect_err("a wrong name is a no");
    assert!(
        matches!(error.refusal(), Some(Refusal::NotConfirmed { .. })),
        "{error}"
    );
    assert!(
        stack::describe(&f.session, "sagaform-sqs-local")
            .await
            .unwrap()
            .is_some()
    );

    let outcome = destroy_pattern(
        &f.session,
        f.target(Pattern::Sqs),
        &forced,
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, DestroyResult::Destroyed);
}
