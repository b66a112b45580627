//! Connecting to the environment's AWS: the local emulator (fixed test credentials, fixed
//! account 123456789012) or a real account through the standard credential chain
//! (`AWS_PROFILE`, environment variables, SSO, instance roles), in the env's region.
//! `--endpoint-url` points any env at another emulator.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::config::Credentials;
use sagaform_stacks::config::{EnvConfig, Target};

use crate::error::aws_error;
use crate::{DeployError, Refusal};

/// The account id of the local emulator (moto's default account).
pub const LOCAL_ACCOUNT_ID: &str = "123456789012";

/// How to reach an environment's AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// An emulator endpoint (`http://127.0.0.1:4566`); required for the local env, optional for
    /// the others.
    pub endpoint_url: Option<String>,
}

/// AWS clients bound to one environment, after the account check.
#[derive(Debug, Clone)]
pub struct Session {
    /// CloudFormation client.
    pub cloudformation: aws_sdk_cloudformation::Client,
    /// S3 client (path-style addressing on emulators).
    pub s3: aws_sdk_s3::Client,
    /// The env's name.
    pub env_name: String,
    /// The region deployed to.
    pub region: String,
    /// The caller's account id (checked against the env's).
    pub account_id: String,
    /// Whether the endpoint is an emulator (local env or `--endpoint-url`): enables the
    /// workarounds for the emulator's behaviour.
    pub emulator: bool,
    /// The endpoint URL, when not AWS's own.
    pub endpoint_url: Option<String>,
    /// Whether the env is production.
    pub production: bool,
    /// The AWS configuration the clients were made from (same endpoint, region and
    /// credentials), for clients of other services.
    pub aws: SdkConfig,
}

impl Session {
    /// Connects to the env's AWS and refuses when the caller's account is not the env's.
    pub async fn connect(
        env: &EnvConfig,
        options: &ConnectOptions,
    ) -> Result<Session, DeployError> {
        let expected_account = match &env.target {
            Target::Local if options.endpoint_url.is_none() => {
                return Err(DeployError::Emulator(format!(
                    "env {} deploys to the local emulator but no endpoint was given",
                    env.name
                )));
            }
            Target::Local => LOCAL_ACCOUNT_ID.to_owned(),
            Target::Aws { account_id, .. } => account_id.clone(),
        };
        let aws = sdk_config(env, options.endpoint_url.as_deref()).await;
        check_credentials(env, &aws).await?;
        let s3_config = aws_sdk_s3::config::Builder::from(&aws)
            .force_path_style(options.endpoint_url.is_some())
            .build();
        let sts = aws_sdk_sts::Client::new(&aws);
        let identity = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(aws_error("STS.GetCallerIdentity"))?;
        let account_id = identity.account().unwrap_or_default().to_owned();
        check_account(&env.name, &expected_account, &account_id)?;
        Ok(Session {
            cloudformation: aws_sdk_cloudformation::Client::new(&aws),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            env_name: env.name.clone(),
            region: env.region().to_owned(),
            account_id,
            emulator: env.is_local() || options.endpoint_url.is_some(),
            endpoint_url: options.endpoint_url.clone(),
            production: env.production,
            aws,
        })
    }
}

/// AWS configuration for the env in its region, bound to `endpoint_url` when given: for the
/// local env fixed credentials (the emulator accepts any; fixed ones keep a developer's real
/// credentials away from it and make the account id predictable), the standard chain otherwise.
pub async fn sdk_config(env: &EnvConfig, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(env.region().to_owned()));
    if env.is_local() {
        loader = loader.credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "sagaform-local",
        ));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Loads the credentials of an AWS env before its first call, so that a machine without any
/// gets one line naming what was looked for and the login to run, instead of the credential
/// chain's error of whichever provider came last (on a laptop: "failed to load IMDS session
/// token", after waiting on the instance metadata service). The local env's fixed credentials
/// always load.
pub async fn check_credentials(env: &EnvConfig, aws: &SdkConfig) -> Result<(), DeployError> {
    use aws_sdk_sts::config::ProvideCredentials;
    let Some(provider) = aws.credentials_provider() else {
        return Err(no_credentials(env, None));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(error) => Err(no_credentials(env, Some(&error))),
    }
}

/// The one-line error of [`check_credentials`]: what the chain looked for and what to run. The
/// chain's own error is kept only when `AWS_PROFILE` names a profile, where it says what is
/// wrong with that profile (missing, SSO session expired).
fn no_credentials(env: &EnvConfig, error: Option<&dyn std::error::Error>) -> DeployError {
    let profile = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty());
    let message = match profile {
        Some(profile) => format!(
            "no AWS credentials for env {} from AWS_PROFILE={profile} ({}): run `aws sso login --profile {profile}` (or fix that profile in ~/.aws/config)",
            env.name,
            profile_problem(error)
        ),
        None => format!(
            "no AWS credentials for env {}: looked for AWS_PROFILE (not set), the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables, the default profile and SSO session in ~/.aws, and a container or instance role: run `aws sso login --profile <profile>` and `export AWS_PROFILE=<profile>`, or export AWS_* credentials",
            env.name
        ),
    };
    DeployError::NoCredentials(message)
}

/// What went wrong with the profile: the provider's own reason (an expired SSO session, a
/// missing key), or, when the chain only lists the providers it tried (the profile gave
/// nothing), that the profile is missing or not logged in.
fn profile_problem(error: Option<&dyn std::error::Error>) -> String {
    match error.map(|e| one_line(&crate::error::source_chain(e))) {
        Some(reason) if !reason.contains("no credentials found in chain") => reason,
        _ => "the profile is not in ~/.aws/config, or its SSO session is not logged in".to_owned(),
    }
}

/// Text on one line: line breaks and runs of spaces become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Refuses to act on an env with credentials of another account.
pub fn check_account(env: &str, expected: &str, actual: &str) -> Result<(), Refusal> {
    if expected == actual {
        return Ok(());
    }
    Err(Refusal::AccountMismatch {
        env: env.to_owned(),
        expected: expected.to_owned(),
        actual: actual.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_of_another_account_are_refused() {
        assert!(check_account("prod", "444455556666", "444455556666").is_ok());
        let refusal = check_account("prod", "444455556666", "111122223333").unwrap_err();
        let message = refusal.to_string();
        assert!(message.contains("account 111122223333"), "{message}");
        assert!(
            message.contains("env prod deploys to account 444455556666"),
            "{message}"
        );
        assert_eq!(
            crate::DeployError::from(refusal).exit_code(),
            crate::EXIT_REFUSED
        );
    }
}
