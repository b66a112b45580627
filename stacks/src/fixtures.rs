//! Example environments for tests and examples that must not depend on the committed env files:
//! `local` (the emulator, DynamoDB and the local PostgreSQL), `staging` (an AWS account, IAM auth,
//! Aurora for the orchestrator) and `prod` (production, JWT auth, FIFO queue, existing VPC, alarm
//! emails, reserved concurrency, x86_64).
//!
//! They are TOML text (`fixtures/*.toml`) loaded through the same merge and validation as
//! `env/`, so an example is always a config the loader accepts; a test that needs a variation
//! adds a layer of TOML over one of them.

use crate::config::{self, ConfigError, EnvConfig, Source};

const DEFAULTS: &str = include_str!("fixtures/defaults.toml");
const LOCAL: &str = include_str!("fixtures/local.toml");
const STAGING: &str = include_str!("fixtures/staging.toml");
const PROD: &str = include_str!("fixtures/prod.toml");

/// An example environment named `local`, `staging` or `prod` (any other name is built like
/// `staging`).
pub fn example_env(name: &str) -> EnvConfig {
    example_env_with(name, "")
        .unwrap_or_else(|error| panic!("example env {name} is invalid: {error}"))
}

/// The example environment `name` with `overrides` (TOML) merged over it per key, validated as
/// `env/<name>.toml` would be: the error a loader gives for the change, or the changed env.
pub fn example_env_with(name: &str, overrides: &str) -> Result<EnvConfig, ConfigError> {
    let env = match name {
        "local" => LOCAL,
        "prod" => PROD,
        _ => STAGING,
    };
    let env_file = format!("{}/{name}.toml", config::ENV_DIR);
    let defaults_file = format!("{}/{}.toml", config::ENV_DIR, config::DEFAULTS);
    config::load_from_layers(
        name,
        &[
            Source {
                file: &defaults_file,
                text: DEFAULTS,
            },
            Source {
                file: &env_file,
                text: env,
            },
            Source {
                file: &env_file,
                text: overrides,
            },
        ],
    )
}
