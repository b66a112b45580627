//! `deploy --hotswap` on the emulator (moto 5.2.5, started per test): a code-only change updates
//! the function through Lambda UpdateFunctionCode with no change set and leaves the stack's
//! parameter on the old key (the drift the deploy reports), and the local environment's
//! discovery serves the new package; the local deploy command restarts the local functions after
//! a hotswap; anything else changed falls back to a change set, saying why; production refuses.

use crate::support;

use sagaform_deploy::confirm::AssumeYes;
use sagaform_deploy::deploy::{DeployOptions, DeployOutcome, DeployResult, deploy_pattern};
use sagaform_deploy::hotswap::CodeChange;
use sagaform_deploy::workflow::{
    DeployRequest, LocalRuntime, Packages, StackChange, deploy_command,
};
use sagaform_deploy::{Artifact, DeployError, Progress, Refusal, Session, stack, stack_name};
use sagaform_local::discovery;
use sagaform_stacks::Pattern;
use sagaform_stacks::config::EnvConfig;
use support::{Fixture, ScratchDir};

const PATTERN: Pattern = Pattern::Sqs;

/// The fixture's packages with the `api` function's bootstrap replaced by `api_bootstrap`.
fn with_api(f: &Fixture, api_bootstrap: &str) -> Vec<Artifact> {
    f.artifacts(PATTERN)
        .into_iter()
        .map(|a| {
            if a.function() == "api" {
                Artifact::from_bootstrap("api", api_bootstrap.as_bytes()).unwrap()
            } else {
                a
            }
        })
        .collect()
}

fn hotswap_options(f: &Fixture) -> DeployOptions {
    let mut options = DeployOptions::for_env(&f.env);
    options.hotswap = true;
    options
}

async fn deploy(
    f: &Fixture,
    artifacts: &[Artifact],
    options: &DeployOptions,
    progress: &Progress,
) -> DeployOutcome {
    deploy_pattern(
        &f.session,
        f.target(PATTERN),
        artifacts,
        options,
        &AssumeYes,
        progress,
    )
    .await
    .unwrap_or_else(|e| panic!("deploy: {e}"))
}

async fn change_set_count(session: &Session, stack: &str) -> usize {
    session
        .cloudformation
        .list_change_sets()
        .stack_name(stack)
        .send()
        .await
        .unwrap()
        .summaries()
        .len()
}

async fn running_sha(session: &Session, function: &str) -> String {
    aws_sdk_lambda::Client::new(&session.aws)
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .unwrap()
        .code_sha256()
        .unwrap_or_default()
        .to_owned()
}

fn key_of<'a>(artifacts: &'a [Artifact], function: &str) -> &'a Artifact {
    artifacts.iter().find(|a| a.function() == function).unwrap()
}

#[tokio::test]
async fn a_code_only_change_is_hotswapped_without_a_change_set_and_the_drift_reported() {
    let f = Fixture::new("hotswap").await;
    let name = stack_name(PATTERN, "local");
    let (api, worker) = (format!("{name}-api"), format!("{name}-worker"));
    let (progress, lines) = Progress::capture();
    let first = with_api(&f, "#!/bin/sh\n# api v1\n");
    let created = deploy(&f, &first, &DeployOptions::for_env(&f.env), &progress).await;
    assert_eq!(created.result, DeployResult::Created);
    let (api_before, worker_before) = (
        running_sha(&f.session, &api).await,
        running_sha(&f.session, &worker).await,
    );
    let change_sets = change_set_count(&f.session, &name).await;
    let events = f.event_count(&name).await;

    // Only the api's code changed: it is updated directly.
    let second = with_api(&f, "#!/bin/sh\n# api v2\n");
    let (old_key, new_key) = (key_of(&first, "api").key(), key_of(&second, "api").key());
    let swapped = deploy(&f, &second, &hotswap_options(&f), &progress).await;
    let text = lines.text();
    assert_eq!(swapped.result, DeployResult::Hotswapped, "{text}");
    let report = swapped.hotswap.clone().expect("a hotswap report");
    assert_eq!(
        report.updated,
        [CodeChange {
            function: "api".to_owned(),
            parameter: "ApiCodeKey".to_owned(),
            stack_key: Some(old_key.clone()),
            new_key: new_key.clone(),
        }]
    );
    assert_eq!(report.fell_back, None);
    assert_eq!(
        change_set_count(&f.session, &name).await,
        change_sets,
        "a hotswap created a change set:\n{text}"
    );
    assert_eq!(
        f.event_count(&name).await,
        events,
        "a hotswap touched the stack"
    );
    // Lambda runs the new package (moto's CodeSha256 is the zip's digest), the worker is as
    // it was.
    let api_after = running_sha(&f.session, &api).await;
    assert_ne!(api_after, api_before, "the api's code did not change");
    assert_eq!(running_sha(&f.session, &worker).await, worker_before);
    // The stack still names the old key: the drift, said in the report and on the terminal.
    let info = stack::describe(&f.session, &name).await.unwrap().unwrap();
    assert_eq!(info.parameters["ApiCodeKey"], old_key);
    let drift = report.drift.expect("the drift is reported");
    assert!(
        drift.contains(&format!("ApiCodeKey = {old_key}")),
        "{drift}"
    );
    assert!(drift.contains("until the next full deploy"), "{drift}");
    assert!(text.contains(&drift), "{text}");
    assert!(
        text.contains(&format!("{api} now runs {new_key} (no change set)")),
        "{text}"
    );

    // What the local environment's supervisor reads when it restarts: the api's running
    // package, not the one the stack's parameter names, and its bootstrap is the new one.
    let deployed = discovery::discover(&f.session.aws, &name, None)
        .await
        .unwrap();
    let function = deployed
        .functions
        .iter()
        .find(|d| d.name == api)
        .expect("the api function");
    let code = function.code.clone().expect("the api's code location");
    assert_eq!(code.key, new_key);
    let dir = ScratchDir::new("hotswap-bootstrap");
    let bootstrap = discovery::fetch_bootstrap(&f.session.s3, &code, &dir.0)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(bootstrap).unwrap(),
        "#!/bin/sh\n# api v2\n"
    );

    // Again with the same packages: nothing to update, and the stack still drifts.
    let again = deploy(&f, &second, &hotswap_options(&f), &progress).await;
    assert_eq!(again.result, DeployResult::NoChanges);
    let report = again.hotswap.unwrap();
    assert!(report.updated.is_empty(), "{:?}", report.updated);
    assert!(report.drift.is_some());

    // Back to the code the stack names: no parameter changes, yet the api runs other code, so
    // the hotswap puts it back, and nothing drifts any more.
    let back = deploy(&f, &first, &hotswap_options(&f), &progress).await;
    assert_eq!(back.result, DeployResult::Hotswapped);
    let report = back.hotswap.unwrap();
    assert_eq!(report.updated.len(), 1, "{:?}", report.updated);
    assert_eq!(report.drift, None);
    assert_eq!(running_sha(&f.session, &api).await, api_before);

    // A full deploy of the new code reconciles the stack: its parameter names what runs.
    let full = deploy(&f, &second, &DeployOptions::for_env(&f.env), &progress).await;
    assert_eq!(full.result, DeployResult::Updated);
    let info = stack::describe(&f.session, &name).await.unwrap().unwrap();
    assert_eq!(info.parameters["ApiCodeKey"], new_key);
    assert_eq!(running_sha(&f.session, &api).await, api_after);
}

#[tokio::test]
async fn anything_else_changed_falls_back_to_a_change_set_and_says_why() {
    let mut f = Fixture::new("hotswap-fallback").await;
    let name = stack_name(PATTERN, "local");
    let (progress, lines) = Progress::capture();

    // No stack yet: created through a change set.
    let first = with_api(&f, "#!/bin/sh\n# api v1\n");
    let created = deploy(&f, &first, &hotswap_options(&f), &progress).await;
    assert_eq!(created.result, DeployResult::Created);
    let reason = created.hotswap.unwrap().fell_back.expect("a reason");
    assert!(reason.contains("does not exist yet"), "{reason}");

    // A template property and the code change together: the change set deploys both.
    f.edit_local_env("log_retention_days = 1", "log_retention_days = 3");
    f.synth();
    let second = with_api(&f, "#!/bin/sh\n# api v2\n");
    let updated = deploy(&f, &second, &hotswap_options(&f), &progress).await;
    let text = lines.text();
    assert_eq!(updated.result, DeployResult::Updated, "{text}");
    assert!(
        updated
            .changes
            .iter()
            .any(|c| c.resource_type == "AWS::Logs::LogGroup"),
        "{:?}",
        updated.changes
    );
    let report = updated.hotswap.unwrap();
    let reason = report.fell_back.expect("a reason");
    assert!(reason.contains("the template changed"), "{reason}");
    assert!(reason.contains("LogGroup"), "{reason}");
    assert!(report.updated.is_empty());
    assert!(
        text.contains("hotswap not possible: the template changed"),
        "{text}"
    );
    assert!(
        text.contains("deploying through a change set instead"),
        "{text}"
    );
    // Through the change set, the stack's parameter names the new code: no drift.
    let info = stack::describe(&f.session, &name).await.unwrap().unwrap();
    assert_eq!(info.parameters["ApiCodeKey"], key_of(&second, "api").key());
}

#[tokio::test]
async fn production_refuses_hotswap_before_touching_anything() {
    let mut f = Fixture::new("hotswap-prod").await;
    f.env.production = true;
    let (progress, _lines) = Progress::capture();
    let error = deploy_pattern(
        &f.session,
        f.target(PATTERN),
        &f.artifacts(PATTERN),
        &hotswap_options(&f),
        &AssumeYes,
        &progress,
    )
    .await
    .expect_err("production refuses --hotswap");
    assert!(
        matches!(error.refusal(), Some(Refusal::HotswapInProduction { .. })),
        "{error}"
    );
    assert_eq!(error.exit_code(), 3);
    assert!(
        error.to_string().contains("deploy without --hotswap"),
        "{error}"
    );
    assert!(
        stack::describe(&f.session, &stack_name(PATTERN, "local"))
            .await
            .unwrap()
            .is_none()
    );
}

/// A local environment that only records what the deploy asked of it.
#[derive(Default)]
struct RecordingLocal {
    changes: std::sync::Mutex<Vec<StackChange>>,
}

impl LocalRuntime for RecordingLocal {
    fn start_emulator(&self, _progress: &Progress) -> Result<String, DeployError> {
        unreachable!("the test gives the emulator's endpoint")
    }

    fn bring_up(
        &self,
        _env: &EnvConfig,
        _pattern: Pattern,
        _emulator_endpoint: &str,
        change: StackChange,
        _progress: &Progress,
    ) -> Result<String, DeployError> {
        self.changes.lock().unwrap().push(change);
        Ok("http://127.0.0.1:1".to_owned())
    }

    fn tear_down(
        &self,
        _env: &EnvConfig,
        _pattern: Pattern,
        _stack_deleted: bool,
        _progress: &Progress,
    ) -> Result<(), DeployError> {
        Ok(())
    }
}

/// `cargo xtask deploy --hotswap --env local` as the CLI runs it (the last build's packages):
/// the local functions are restarted as after an update, which is what makes them run the new
/// code (they fetch the package Lambda runs, as the test above shows).
#[test]
fn the_local_deploy_command_restarts_the_functions_after_a_hotswap() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let f = runtime.block_on(Fixture::new("hotswap-command"));
    let local = RecordingLocal::default();
    let (progress, lines) = Progress::capture();
    let deploy_with = |api_bootstrap: &str, hotswap: bool| {
        for artifact in with_api(&f, api_bootstrap) {
            let zip = f.workspace.package_zip(artifact.function(), true);
            std::fs::create_dir_all(zip.parent().unwrap()).unwrap();
            std::fs::write(&zip, artifact.zip()).unwrap();
        }
        let mut options = DeployOptions::for_env(&f.env);
        options.hotswap = hotswap;
        let request = DeployRequest {
            packages: Packages::LastBuilt,
            options,
            endpoint_url: f.session.endpoint_url.clone(),
        };
        deploy_command(f.target(PATTERN), &request, &AssumeYes, &local, &progress)
            .unwrap_or_else(|e| panic!("{e}\n{}", lines.text()))
    };
    let created = deploy_with("#!/bin/sh\n# api v1\n", false);
    assert_eq!(created.outcome.result, DeployResult::Created);
    let name = stack_name(PATTERN, "local");
    let change_sets = runtime.block_on(change_set_count(&f.session, &name));
    let swapped = deploy_with("#!/bin/sh\n# api v2\n", true);
    assert_eq!(swapped.outcome.result, DeployResult::Hotswapped);
    assert_eq!(swapped.local_api_url.as_deref(), Some("http://127.0.0.1:1"));
    assert_eq!(
        *local.changes.lock().unwrap(),
        [StackChange::Created, StackChange::Updated]
    );
    assert_eq!(
        runtime.block_on(change_set_count(&f.session, &name)),
        change_sets,
        "the hotswap created a change set"
    );
}
