//! Without AWS credentials, every command that talks to an AWS env stops before its first AWS
//! call with one line saying what was looked for and the login to run, instead of the SDK's
//! credential-chain error ("failed to load IMDS session token"), and without waiting on the
//! instance metadata service.

use std::process::Command;
use std::time::{Duration, Instant};

/// A command stops this quickly when it has nothing to wait on.
const QUICK: Duration = Duration::from_secs(30);

/// Runs `sagaform <args>` as on a machine without AWS credentials: an empty home (no
/// `~/.aws`), no `AWS_*` variables, and the instance metadata service disabled (as CI without a
/// role would be after its connect timeout).
fn run_without_credentials(args: &[&str]) -> (Option<i32>, String) {
    run_with_profile(args, None)
}

/// [`run_without_credentials`], with `AWS_PROFILE` set to `profile` when given.
fn run_with_profile(args: &[&str], profile: Option<&str>) -> (Option<i32>, String) {
    let home = std::env::temp_dir().join(format!("sagaform-cli-no-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sagaform"));
    command
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") && name != "AWS_EC2_METADATA_DISABLED" {
            command.env_remove(name);
        }
    }
    if let Some(profile) = profile {
        command.env("AWS_PROFILE", profile);
    }
    let started = Instant::now();
    let output = command.output().expect("the sagaform binary runs");
    assert!(
        started.elapsed() < QUICK,
        "sagaform {args:?} took {:?}",
        started.elapsed()
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_aws_command_without_credentials_says_what_it_looked_for_in_one_line() {
    let transaction = "0190a0b0-0000-7000-8000-000000000000";
    for args in [
        &["deploy", "--pattern", "sqs", "--env", "staging"][..],
        &["diff", "--pattern", "sqs", "--env", "staging"],
        &["destroy", "--pattern", "sqs", "--env", "staging", "--yes"],
        &[
            "saga",
            "show",
            "--pattern",
            "sqs",
            "--env",
            "staging",
            transaction,
        ],
        &[
            "saga",
            "retry",
            "--pattern",
            "sqs",
            "--env",
            "staging",
            transaction,
        ],
        &["dlq", "list", "--pattern", "sqs", "--env", "staging"],
        &[
            "dlq",
            "redrive",
            "--pattern",
            "orchestrator",
            "--env",
            "prod",
        ],
        &[
            "dlq",
            "purge",
            "--pattern",
            "sqs",
            "--env",
            "prod",
            "--yes",
            "--force-prod",
        ],
    ] {
        let (code, stderr) = run_without_credentials(args);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(code, Some(1), "sagaform {args:?}:\n{stderr}");
        assert_eq!(errors.len(), 1, "sagaform {args:?}:\n{stderr}");
        let env = args[args.iter().position(|a| *a == "--env").unwrap() + 1];
        for expected in [
            &format!("error: no AWS credentials for env {env}: looked for AWS_PROFILE (not set)")[..],
            "AWS_ACCESS_KEY_ID",
            "SSO",
            "`aws sso login --profile <profile>`",
        ] {
            assert!(
                errors[0].contains(expected),
                "sagaform {args:?}: no `{expected}` in:\n{stderr}"
            );
        }
        assert!(!stderr.contains("IMDS"), "sagaform {args:?}:\n{stderr}");
    }
}

#[test]
fn a_profile_without_credentials_names_the_login_of_that_profile() {
    let (code, stderr) = run_with_profile(
        &["dlq", "list", "--pattern", "sqs", "--env", "staging"],
        Some("staging-admin"),
    );
    assert_eq!(code, Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        [
            "error: no AWS credentials for env staging from AWS_PROFILE=staging-admin (the profile is not in ~/.aws/config, or its SSO session is not logged in): run `aws sso login --profile staging-admin` (or fix that profile in ~/.aws/config)"
        ]
    );
}
