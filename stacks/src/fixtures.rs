//! Example environments built in code, for tests and examples that must not depend on the env
//! files or their loader: `local` (the emulator, DynamoDB and the local PostgreSQL), `staging`
//! (an AWS account, IAM auth, Aurora for the orchestrator) and `prod` (production, JWT auth, FIFO
//! queue, existing VPC, alarm emails, reserved concurrency, x86_64).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::Pattern;
use crate::config::{
    AlarmConfig, ApiAuth, ApiConfig, Architecture, AuroraConfig, DynamoDbConfig, EnvConfig,
    FunctionRole, FunctionSettings, FunctionsConfig, Network, QueueConfig, SaasEndpoint,
    StateStoreKind, TagsConfig, Target,
};

/// An example environment named `local`, `staging` or `prod` (any other name is built like
/// `staging`).
pub fn example_env(name: &str) -> EnvConfig {
    let local = name == "local";
    let production = name == "prod";
    let function = |timeout_seconds: u64, reserved_concurrency| FunctionSettings {
        memory_mb: 512,
        timeout: Duration::from_secs(timeout_seconds),
        reserved_concurrency,
    };
    let saas = |service: &str, request_timeout_ms: u64| {
        let url = if local {
            format!("http://127.0.0.1:9320/{service}")
        } else {
            format!("https://{service}.example.com/v1")
        };
        (
            service.to_owned(),
            SaasEndpoint {
                url,
                connect_timeout: Duration::from_millis(1000),
                request_timeout: Duration::from_millis(request_timeout_ms),
            },
        )
    };
    EnvConfig {
        name: name.to_owned(),
        source: PathBuf::from(format!("env/{name}.toml")),
        target: if local {
            Target::Local
        } else {
            Target::Aws {
                account_id: "111122223333".to_owned(),
                region: "ap-northeast-1".to_owned(),
            }
        },
        production,
        stores: BTreeMap::from([
            (Pattern::Orchestrator, StateStoreKind::Aurora),
            (
                Pattern::Sqs,
                if production {
                    StateStoreKind::Aurora
                } else {
                    StateStoreKind::DynamoDb
                },
            ),
            (Pattern::StepFunctions, StateStoreKind::DynamoDb),
        ]),
        functions: FunctionsConfig {
            architecture: if production {
                Architecture::X86_64
            } else {
                Architecture::Arm64
            },
            by_role: BTreeMap::from([
                (FunctionRole::Api, function(150, production.then_some(100))),
                (
                    FunctionRole::Worker,
                    function(150, production.then_some(50)),
                ),
                (FunctionRole::Step, function(30, None)),
            ]),
            log_level: if local { "debug" } else { "info" }.to_owned(),
        },
        queue: QueueConfig {
            fifo: production,
            max_receive_count: 5,
            batch_size: if production { 10 } else { 5 },
            batching_window: Duration::from_secs(if local { 0 } else { 5 }),
            maximum_concurrency: 10,
            visibility_timeout: Duration::from_secs(960),
            message_retention: Duration::from_secs(345_600),
        },
        api: ApiConfig {
            auth: if production {
                ApiAuth::Jwt {
                    issuer: "https://auth.example.com/".to_owned(),
                    audience: vec!["sagaform-purchase".to_owned()],
                }
            } else {
                ApiAuth::Iam
            },
            throttle_rate_limit: 50.0,
            throttle_burst_limit: 100,
        },
        dynamodb: DynamoDbConfig {
            ttl: Duration::from_secs(30 * 86_400),
        },
        aurora: AuroraConfig {
            min_capacity: 0.5,
            max_capacity: 4.0,
            engine_version: "16.6".to_owned(),
            database_name: "sagaform".to_owned(),
            network: if production {
                Network::Existing {
                    vpc_id: "vpc-0123456789abcdef0".to_owned(),
                    subnet_ids: vec![
                        "subnet-0123456789abcdef0".to_owned(),
                        "subnet-0fedcba9876543210".to_owned(),
                    ],
                }
            } else {
                Network::Create {
                    vpc_cidr: "10.20.0.0/16".to_owned(),
                }
            },
            backup_retention_days: 7,
        },
        alarms: AlarmConfig {
            emails: if production {
                vec![
                    "oncall@example.com".to_owned(),
                    "team@example.com".to_owned(),
                ]
            } else {
                Vec::new()
            },
            period: Duration::from_secs(60),
            evaluation_periods: 1,
            oldest_message_age: Duration::from_secs(300),
            lambda_errors: 1,
            lambda_throttles: 1,
            api_5xx: 1,
            dynamodb_throttles: 1,
            aurora_capacity_percent: 80,
            aurora_connections: 200,
        },
        saas: BTreeMap::from([
            saas("inventory", 3000),
            saas("payments", 5000),
            saas("entitlements", 3000),
        ]),
        tags: TagsConfig {
            cost_centre: "game-platform".to_owned(),
            extra: BTreeMap::from([("owner".to_owned(), "saga-team".to_owned())]),
        },
        log_retention_days: if local { 1 } else { 30 },
    }
}
