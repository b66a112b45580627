//! Runbooks that work as pasted: the production purge carries `--force-prod`, no command needs
//! GNU `date -d` (absent on macOS) and every command parses as POSIX shell, stacks on Aurora say
//! how to reach the database from outside the VPC, alarm descriptions link the runbook as a URL
//! under `[alarms] runbook_base_url` and stay within CloudWatch's 1024 characters. Also the
//! config keys behind them and the placeholder values a production deploy refuses.

use std::path::Path;
use std::process::Command;

use sagaform_stacks::cfn::Properties;
use sagaform_stacks::config::{ConfigError, load_env};
use sagaform_stacks::fixtures::{example_env, example_env_with};
use sagaform_stacks::{Pattern, synthesize};

use crate::common::{all_examples, assert_runbook_section_contains};

/// CloudWatch's limit on `AlarmDescription`.
const ALARM_DESCRIPTION_LIMIT: usize = 1024;

const BASE_URL: &str = "https://github.com/acme/sagaform/blob/main";

/// The command lines of a runbook's `sh` blocks, comments left out.
fn commands(markdown: &str) -> Vec<&str> {
    let mut in_block = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if in_block && !line.starts_with('#') {
            lines.push(line);
        }
    }
    lines
}

/// Every alarm description of a template.
fn descriptions(template: &sagaform_stacks::cfn::Template) -> Vec<(String, String)> {
    template
        .resources
        .iter()
        .filter_map(|(id, resource)| match &resource.properties {
            Properties::Alarm(alarm) => Some((id.clone(), alarm.alarm_description.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_production_dlq_purge_command_carries_force_prod() {
    let prod = synthesize(Pattern::Sqs, &example_env("prod")).unwrap();
    assert_runbook_section_contains(
        &prod.runbook_markdown,
        "DLQ not empty",
        &["cargo xtask dlq purge --pattern sqs --env prod --force-prod"],
    );
    let staging = synthesize(Pattern::Sqs, &example_env("staging")).unwrap();
    assert!(
        commands(&staging.runbook_markdown)
            .contains(&"cargo xtask dlq purge --pattern sqs --env staging"),
        "{}",
        staging.runbook_markdown
    );
}

#[test]
fn no_runbook_command_or_alarm_description_needs_gnu_date_and_all_parse_as_posix_shell() {
    for (pattern, env) in all_examples() {
        let synthesized = synthesize(pattern, &env).unwrap();
        let at = format!("{pattern} {}", env.name);
        assert!(
            !synthesized.runbook_markdown.contains("date -d")
                && !synthesized.runbook_markdown.contains("date -u -d"),
            "{at}: GNU-only date in the runbook"
        );
        for (id, description) in descriptions(&synthesized.template) {
            assert!(!description.contains("date -"), "{at}: {id}: {description}");
        }
        // `sh -n` parses without running: the placeholders become words first, since
        // `<transaction_id>` would otherwise read as redirections.
        let script: String = commands(&synthesized.runbook_markdown)
            .iter()
            .map(|line| {
                line.replace("<transaction_id>", "T")
                    .replace("<instance_id>", "I")
            })
            .map(|line| line + "\n")
            .collect();
        let status = Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .expect("sh runs");
        assert!(status.success(), "{at}: not POSIX shell:\n{script}");
    }
}

#[test]
fn runbooks_of_aurora_stacks_say_how_to_reach_the_database_from_outside_the_vpc() {
    let staging = synthesize(Pattern::Orchestrator, &example_env("staging")).unwrap();
    let markdown = &staging.runbook_markdown;
    for expected in [
        "### Reaching the database",
        "aws ssm start-session --region ap-northeast-1 --target <instance_id> --document-name AWS-StartPortForwardingSessionToRemoteHost --parameters \"host=$(aws cloudformation describe-stacks --region ap-northeast-1 --stack-name sagaform-orchestrator-staging --query \"Stacks[0].Outputs[?OutputKey=='DatabaseProxyEndpoint'].OutputValue\" --output text),portNumber=5432,localPortNumber=15432\"",
        "--logical-resource-id FunctionSecurityGroup",
        "export PGPASSWORD=\"$(aws secretsmanager get-secret-value --region ap-northeast-1",
        "cargo xtask saga show --pattern orchestrator --env staging --database-url \"postgres://sagaform_admin:",
        "@127.0.0.1:15432/sagaform?sslmode=require\" <transaction_id>",
    ] {
        assert!(
            markdown.contains(expected),
            "no `{expected}` in:\n{markdown}"
        );
    }
    // psql goes through the same tunnel, not to the proxy's address, which resolves only
    // inside the VPC.
    for line in commands(markdown).iter().filter(|l| l.contains("psql")) {
        assert!(line.contains("host=127.0.0.1 port=15432"), "{line}");
    }
    for (pattern, env) in [(Pattern::Sqs, "staging"), (Pattern::Orchestrator, "local")] {
        let other = synthesize(pattern, &example_env(env)).unwrap();
        assert!(
            !other.runbook_markdown.contains("Reaching the database"),
            "{pattern} {env} has no database to tunnel to"
        );
    }
}

#[test]
fn alarm_descriptions_link_the_runbook_as_a_url_under_runbook_base_url_and_fit_cloudwatch() {
    let overrides = format!("[alarms]\nrunbook_base_url = \"{BASE_URL}\"\n");
    for name in ["staging", "prod"] {
        let env = example_env_with(name, &overrides).unwrap();
        for pattern in Pattern::ALL {
            let synthesized = synthesize(pattern, &env).unwrap();
            for (id, description) in descriptions(&synthesized.template) {
                let (_, link) = description.split_once("Runbook: ").unwrap();
                assert!(
                    link.starts_with(&format!("{BASE_URL}/templates/{pattern}/{name}.md#")),
                    "{id}: {description}"
                );
                assert!(
                    description.len() <= ALARM_DESCRIPTION_LIMIT,
                    "{pattern} {name} {id}: {} characters",
                    description.len()
                );
            }
        }
    }
    // Without the key, the repository path as before.
    for (pattern, env) in all_examples() {
        for (id, description) in descriptions(&synthesize(pattern, &env).unwrap().template) {
            assert!(
                description.contains(&format!(
                    "Runbook: templates/{}/{}.md#",
                    pattern.name(),
                    env.name
                )),
                "{id}: {description}"
            );
            assert!(description.len() <= ALARM_DESCRIPTION_LIMIT, "{id}");
        }
    }
}

fn invalid(overrides: &str) -> String {
    match example_env_with("staging", overrides) {
        Err(error @ ConfigError::Invalid { .. }) => error.to_string(),
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

#[test]
fn runbook_base_url_must_be_an_https_base_url() {
    assert_eq!(
        invalid("[alarms]\nrunbook_base_url = \"http://github.com/acme\"\n"),
        "env/staging.toml: alarms.runbook_base_url: `http://github.com/acme` is not an https url"
    );
    assert_eq!(
        invalid("[alarms]\nrunbook_base_url = \"https://github.com/acme/\"\n"),
        "env/staging.toml: alarms.runbook_base_url: `https://github.com/acme/` ends with /, the runbook path is appended after one"
    );
}

#[test]
fn idempotency_windows_are_read_per_service_and_must_be_positive() {
    let env =
        example_env_with("staging", "[saas.payments]\nidempotency_window_hours = 2\n").unwrap();
    assert_eq!(
        env.saas["payments"].idempotency_window,
        std::time::Duration::from_secs(2 * 3600)
    );
    assert_eq!(
        env.saas["inventory"].idempotency_window,
        std::time::Duration::from_secs(24 * 3600),
        "the default"
    );
    let error = invalid("[saas.payments]\nidempotency_window_hours = 0\n");
    assert!(
        error.starts_with(
            "env/staging.toml: saas.payments.idempotency_window_hours: 0 is outside 1..=8760"
        ),
        "{error}"
    );
}

#[test]
fn placeholder_values_of_the_shipped_prod_env_are_named_by_file_and_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let prod = load_env(&root, "prod").unwrap();
    let keys: Vec<(&str, &str)> = prod
        .placeholders
        .iter()
        .map(|p| (p.file.as_str(), p.key.as_str()))
        .collect();
    for key in [
        "api.jwt.issuer",
        "alarms.emails",
        "saas.inventory.url",
        "saas.payments.url",
        "saas.entitlements.url",
    ] {
        assert!(keys.contains(&("env/prod.toml", key)), "{key} in {keys:?}");
    }
    assert_eq!(
        prod.placeholders[0].to_string(),
        "env/prod.toml: api.jwt.issuer: `https://auth.example.com/` is a placeholder (example domain)"
    );
    // Real values are not placeholders, a look-alike domain neither.
    let real = example_env_with(
        "prod",
        "[api.jwt]\nissuer = \"https://auth.notexample.com/\"\n[alarms]\nemails = [\"oncall@acme.test.io\"]\n[saas.inventory]\nurl = \"https://inventory.acme.io\"\n[saas.payments]\nurl = \"https://payments.acme.io\"\n[saas.entitlements]\nurl = \"https://entitlements.acme.io\"\n",
    )
    .unwrap();
    assert_eq!(real.placeholders, []);
}
