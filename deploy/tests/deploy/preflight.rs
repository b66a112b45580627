//! The deploy's checks before its change set, on the emulator: the reservations a stack holds
//! are read from its deployed functions (so an update does not count them twice), and an
//! emulator without Lambda GetAccountSettings (moto 5.2.5) deploys with a note instead of
//! failing. The refusals are pure functions over what is fetched, tested directly: moto cannot
//! be made to answer GetAccountSettings with a small limit.

use crate::support;

use sagaform_deploy::confirm::AssumeYes;
use sagaform_deploy::deploy::{DeployOptions, DeployResult, deploy_pattern};
use sagaform_deploy::preflight::{
    self, AccountConcurrency, Reservation, check_concurrency, check_placeholders,
};
use sagaform_deploy::template::Template;
use sagaform_deploy::{Progress, stack_name};
use sagaform_stacks::Pattern;
use sagaform_stacks::fixtures::{example_env, example_env_with};
use support::Fixture;

#[tokio::test]
async fn reservations_held_by_the_deployed_stack_are_read_back_and_the_missing_account_settings_noted()
 {
    let mut f = Fixture::new("preflight").await;
    f.edit_local_env(
        "[functions.api]\nmemory_mb = 256",
        "[functions.api]\nmemory_mb = 256\nreserved_concurrency = 5",
    );
    f.synth();
    let pattern = Pattern::Orchestrator;
    let name = stack_name(pattern, "local");
    let body = std::fs::read_to_string(f.workspace.template_path(pattern, "local")).unwrap();
    let template = Template::parse("orchestrator/local.yaml", &body).unwrap();

    // Before the first deploy nothing is held.
    let before = preflight::reservations(&f.session, &f.env, &name, &template, false)
        .await
        .unwrap();
    assert_eq!(
        before,
        [Reservation {
            role: "api".to_owned(),
            wanted: 5,
            held: 0
        }]
    );
    // moto 5.2.5 has no GetAccountSettings: nothing to check against on the emulator.
    assert_eq!(
        preflight::account_concurrency(&f.session).await.unwrap(),
        None
    );

    let (progress, lines) = Progress::capture();
    let created = deploy_pattern(
        &f.session,
        f.target(pattern),
        &f.artifacts(pattern),
        &DeployOptions::for_env(&f.env),
        &AssumeYes,
        &progress,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lines.text()));
    assert_eq!(created.result, DeployResult::Created);
    assert!(
        lines
            .text()
            .contains("the emulator does not implement Lambda GetAccountSettings"),
        "{}",
        lines.text()
    );

    // Deployed, the stack's function holds its reservation: an update adds nothing.
    let after = preflight::reservations(&f.session, &f.env, &name, &template, true)
        .await
        .unwrap();
    assert_eq!(
        after,
        [Reservation {
            role: "api".to_owned(),
            wanted: 5,
            held: 5
        }]
    );
}

fn reservation(role: &str, wanted: i64, held: i64) -> Reservation {
    Reservation {
        role: role.to_owned(),
        wanted,
        held,
    }
}

const STACK: &str = "sagaform-sqs-prod";

#[test]
fn reservations_leaving_fewer_than_100_unreserved_are_refused_naming_what_to_change() {
    let env = example_env("prod");
    let wanted = [reservation("api", 100, 0), reservation("worker", 50, 0)];
    let roomy = AccountConcurrency {
        limit: 1000,
        unreserved: 1000,
    };
    assert_eq!(check_concurrency(&env, STACK, roomy, &wanted), Ok(()));
    let exactly = AccountConcurrency {
        limit: 1000,
        unreserved: 250,
    };
    assert_eq!(check_concurrency(&env, STACK, exactly, &wanted), Ok(()));
    // A new account's limit of 10 cannot reserve anything.
    let new_account = AccountConcurrency {
        limit: 10,
        unreserved: 10,
    };
    let refusal = check_concurrency(&env, STACK, new_account, &wanted).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "stack sagaform-sqs-prod would reserve 150 more concurrent executions (api 100 (holds 0), worker 50 (holds 0)) but the account has 10 unreserved of its limit of 10, and AWS keeps 100 unreserved: lower functions.<role>.reserved_concurrency in env/prod.toml, or raise the account's Lambda concurrent executions quota (Service Quotas)"
    );
    assert_eq!(
        sagaform_deploy::DeployError::from(refusal).exit_code(),
        sagaform_deploy::EXIT_REFUSED
    );
}

#[test]
fn reservations_the_stack_already_holds_are_not_counted_twice() {
    let env = example_env("prod");
    // The stack holds 100 + 50 already: the account's unreserved 150 excludes them.
    let account = AccountConcurrency {
        limit: 1000,
        unreserved: 150,
    };
    let unchanged = [reservation("api", 100, 100), reservation("worker", 50, 50)];
    assert_eq!(check_concurrency(&env, STACK, account, &unchanged), Ok(()));
    let grown = [reservation("api", 150, 100), reservation("worker", 50, 50)];
    assert_eq!(check_concurrency(&env, STACK, account, &grown), Ok(()));
    let too_much = [reservation("api", 160, 100), reservation("worker", 50, 50)];
    let refusal = check_concurrency(&env, STACK, account, &too_much).unwrap_err();
    assert!(
        refusal
            .to_string()
            .contains("reserve 60 more concurrent executions (api 160 (holds 100))"),
        "{refusal}"
    );
    // A shrinking function frees nothing for the others: CloudFormation may grow first.
    let swapped = [reservation("api", 160, 100), reservation("worker", 0, 50)];
    assert!(check_concurrency(&env, STACK, account, &swapped).is_err());
    // No reservation asks nothing of the account, whatever its state.
    let none = [reservation("api", 0, 0)];
    let empty = AccountConcurrency {
        limit: 10,
        unreserved: 0,
    };
    assert_eq!(check_concurrency(&env, STACK, empty, &none), Ok(()));
}

#[test]
fn a_production_env_with_placeholder_values_is_refused_naming_file_and_key() {
    let prod = example_env("prod");
    let refusal = check_placeholders(&prod).unwrap_err();
    let message = refusal.to_string();
    assert!(
        message.starts_with(
            "env prod is production but still has placeholder values, set the real ones before deploying: env/prod.toml: api.jwt.issuer: `https://auth.example.com/` is a placeholder (example domain); env/prod.toml: alarms.emails: `oncall@example.com`"
        ),
        "{message}"
    );
    assert!(!message.ends_with('.'), "{message}");
    // The same values outside production deploy (staging stands in for the real thing).
    assert_eq!(check_placeholders(&example_env("staging")), Ok(()));
    let real = example_env_with(
        "prod",
        "[api.jwt]\nissuer = \"https://auth.acme.io/\"\n[alarms]\nemails = [\"oncall@acme.io\"]\n[saas.inventory]\nurl = \"https://inventory.acme.io\"\n[saas.payments]\nurl = \"https://payments.acme.io\"\n[saas.entitlements]\nurl = \"https://entitlements.acme.io\"\n",
    )
    .unwrap();
    assert_eq!(check_placeholders(&real), Ok(()));
}
