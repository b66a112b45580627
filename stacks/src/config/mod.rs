//! Per-environment configuration: `env/defaults.toml` merged per key with `env/<name>.toml` into
//! one raw TOML tree that remembers which file set each key (`merge`, read through `read`), then
//! validated into the typed [`EnvConfig`] that the stack builders use (`validate`). Nothing
//! downstream ever sees an unvalidated value: an [`EnvConfig`] has a private field, so the
//! loaders of this module are the only way to get one, and every rule (ranges, keys that depend
//! on each other, the saga's timeouts, the network) is checked there, once.
//!
//! The types in this file are the contract between config loading and the pattern builders.

mod error;
mod load;
mod merge;
mod read;
mod validate;

pub use error::ConfigError;
pub(crate) use load::load_from_layers;
pub use load::{DEFAULTS, ENV_DIR, env_names, load_all, load_env, load_from_sources};
pub use merge::Source;
pub use validate::LOG_RETENTION_DAYS;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::Pattern;

/// A validated environment. Only the loaders of this module make one, so a copy changed past
/// validation cannot be built either:
///
/// ```compile_fail,E0451
/// use sagaform_stacks::config::EnvConfig;
/// use sagaform_stacks::fixtures::example_env;
///
/// let local = example_env("local");
/// let _ = EnvConfig {
///     production: true,
///     ..local
/// };
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    /// Environment name (`local`, `staging`, `prod`, ...): the file stem of `env/<name>.toml`.
    pub name: String,
    /// The file the environment came from, for messages.
    pub source: PathBuf,
    /// Where it deploys: the local emulator or a real AWS account.
    pub target: Target,
    /// Extra safety for production: termination protection, deletion protection, confirmations.
    pub production: bool,
    /// Which state store each pattern uses in this environment.
    pub stores: BTreeMap<Pattern, StoreKind>,
    /// Settings of every Lambda function, by role.
    pub functions: FunctionsConfig,
    /// Work queue and DLQ settings (pattern `sqs`).
    pub queue: QueueConfig,
    /// HTTP API settings.
    pub api: ApiConfig,
    /// DynamoDB settings (when a pattern uses `dynamodb`).
    pub dynamodb: DynamoDbConfig,
    /// Aurora settings (when a pattern uses `aurora`).
    pub aurora: AuroraConfig,
    /// Alarm thresholds and where alarms go.
    pub alarms: AlarmConfig,
    /// Base URL and timeouts of every downstream SaaS, keyed by the saga's service name; exactly
    /// the services of the saga definition.
    pub saas: BTreeMap<String, SaasEndpoint>,
    /// Tags on every resource; `env` and `pattern` are added by the builders.
    pub tags: TagsConfig,
    /// Days log groups keep their events (a value CloudWatch Logs accepts).
    pub log_retention_days: u32,
    /// Values that are still the shipped placeholders (an `example.com` address or URL). They
    /// synthesize, so the shipped repository keeps generating its templates, but a production
    /// deploy refuses them (`sagaform-deploy`'s preflight), naming each file and key.
    pub placeholders: Vec<Placeholder>,
    /// Private, so that only validation (in this module) can build an `EnvConfig`.
    validated: Validated,
}

/// The mark of a value built by validation; only this module and its children can make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Validated;

impl EnvConfig {
    /// Whether this environment deploys to the local emulator.
    pub fn is_local(&self) -> bool {
        matches!(self.target, Target::Local)
    }

    /// The state store of a pattern in this environment.
    pub fn store(&self, pattern: Pattern) -> StoreKind {
        self.stores[&pattern]
    }

    /// Whether data resources must survive stack deletion and replacement.
    pub fn retain_data(&self) -> bool {
        !self.is_local()
    }

    /// The region deployed to (`us-east-1` for the local emulator).
    pub fn region(&self) -> &str {
        match &self.target {
            Target::Local => "us-east-1",
            Target::Aws { region, .. } => region,
        }
    }
}

/// A value left at a shipped placeholder: a documentation domain (`example.com`, `.net`,
/// `.org`, RFC 2606) in an address or URL that must reach something real in production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The file that set the key.
    pub file: String,
    /// Dotted key, e.g. `api.jwt.issuer`.
    pub key: String,
    /// The placeholder value.
    pub value: String,
}

impl std::fmt::Display for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: `{}` is a placeholder (example domain)",
            self.file, self.key, self.value
        )
    }
}

/// Where an environment deploys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The local emulator on loopback.
    Local,
    /// A real AWS account.
    Aws {
        /// 12-digit account id; deploy refuses when the caller's account differs.
        account_id: String,
        /// Region code, e.g. `ap-northeast-1`.
        region: String,
    },
}

/// Where saga state lives: the functions read it as `SAGAFORM_STORE`.
pub use sagaform_contract::env::StoreKind;

/// Instruction set of the Lambda functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// Graviton (the default: cheaper per GB-second).
    Arm64,
    /// Intel/AMD.
    X86_64,
}

pub use sagaform_contract::FunctionRole;

/// Settings of all functions.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionsConfig {
    /// Instruction set of every function.
    pub architecture: Architecture,
    /// Per-role settings; every role is present.
    pub by_role: BTreeMap<FunctionRole, FunctionSettings>,
    /// `RUST_LOG`-style level for the functions' JSON logs.
    pub log_level: String,
}

/// Settings of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    /// Memory in MB (128..=10240).
    pub memory_mb: u32,
    /// Timeout (1 s ..= 900 s).
    pub timeout: Duration,
    /// Reserved concurrency, if any.
    pub reserved_concurrency: Option<u32>,
}

/// Work queue and DLQ settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// FIFO queues (batch size then at most 10).
    pub fifo: bool,
    /// Receives before a message moves to the DLQ.
    pub max_receive_count: u32,
    /// Records per worker invocation.
    pub batch_size: u32,
    /// How long the event source mapping gathers a batch.
    pub batching_window: Duration,
    /// Upper bound of concurrent worker invocations (2..=1000).
    pub maximum_concurrency: u32,
    /// Visibility timeout of the work queue; at least 6x the worker timeout plus the batching
    /// window, as AWS recommends.
    pub visibility_timeout: Duration,
    /// Retention of the work queue.
    pub message_retention: Duration,
}

/// HTTP API settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// How callers authenticate.
    pub auth: ApiAuth,
    /// Steady-state requests per second of the default stage.
    pub throttle_rate_limit: f64,
    /// Burst of the default stage.
    pub throttle_burst_limit: u32,
}

/// How callers of the HTTP API authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAuth {
    /// SigV4-signed requests (AWS_IAM authorization).
    Iam,
    /// A JWT authorizer.
    Jwt {
        /// Token issuer URL.
        issuer: String,
        /// Accepted audiences.
        audience: Vec<String>,
    },
}

/// DynamoDB settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoDbConfig {
    /// How long finished sagas stay before TTL deletes them.
    pub ttl: Duration,
}

/// Aurora settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuroraConfig {
    /// Minimum Serverless v2 capacity in ACUs (0..=256, step 0.5).
    pub min_capacity: f64,
    /// Maximum Serverless v2 capacity in ACUs.
    pub max_capacity: f64,
    /// Aurora PostgreSQL engine version.
    pub engine_version: String,
    /// Database name.
    pub database_name: String,
    /// Network the cluster and the functions live in.
    pub network: Network,
    /// Days of automated backups.
    pub backup_retention_days: u32,
    /// Reader instances besides the writer (0..=15): a failover target in another availability
    /// zone, so losing the writer's zone costs a failover instead of a new instance.
    pub readers: u32,
}

/// How many NAT gateways a created network has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatGateways {
    /// One, in the first availability zone: cheaper, but the functions lose the SaaS and AWS
    /// APIs when that zone does.
    Single,
    /// One per availability zone, each private subnet routing to its own zone's gateway.
    PerAz,
}

/// The VPC for Aurora and the functions that reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// sagaform creates a VPC with private subnets (and a NAT gateway for SaaS calls).
    Create {
        /// CIDR of the VPC.
        vpc_cidr: VpcCidr,
        /// NAT gateways: one, or one per availability zone.
        nat_gateways: NatGateways,
    },
    /// An existing VPC; the subnets must be private with a route to the internet for SaaS calls.
    Existing {
        /// VPC id.
        vpc_id: String,
        /// At least two private subnets in different availability zones.
        subnet_ids: Vec<String>,
    },
}

/// The CIDR block of a VPC sagaform creates, parsed once by validation: an IPv4 network address
/// (no host bits set) with a prefix of /16 to /24, small enough to split into four subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcCidr {
    /// The block as the env file writes it, e.g. `10.20.0.0/16`.
    block: String,
    /// Its prefix length (16..=24).
    prefix: u32,
}

impl VpcCidr {
    /// The block as the env file writes it, e.g. `10.20.0.0/16`.
    pub fn block(&self) -> &str {
        &self.block
    }

    /// The prefix length, 16 to 24.
    pub fn prefix(&self) -> u32 {
        self.prefix
    }
}

/// Alarm thresholds and their destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmConfig {
    /// Email addresses subscribed to the stack's alarm topic.
    pub emails: Vec<String>,
    /// Period of every alarm.
    pub period: Duration,
    /// Periods evaluated.
    pub evaluation_periods: u32,
    /// Age of the oldest message on the work queue that raises an alarm.
    pub oldest_message_age: Duration,
    /// Lambda errors per period that raise an alarm.
    pub lambda_errors: u32,
    /// Lambda throttles per period that raise an alarm.
    pub lambda_throttles: u32,
    /// API 5xx responses per period that raise an alarm.
    pub api_5xx: u32,
    /// DynamoDB throttled requests per period that raise an alarm.
    pub dynamodb_throttles: u32,
    /// Aurora: percent of the maximum ACUs in use that raises an alarm.
    pub aurora_capacity_percent: u32,
    /// Aurora: database connections that raise an alarm.
    pub aurora_connections: u32,
    /// Where alarm descriptions link the runbooks: an https base URL such as the repository's
    /// web view (`https://github.com/org/repo/blob/main`), to which the runbook's path in the
    /// repository is appended; `None` cites the repository path alone.
    pub runbook_base_url: Option<String>,
}

/// One downstream SaaS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaasEndpoint {
    /// Base URL (`http` allowed only in `local`).
    pub url: String,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of a whole request.
    pub request_timeout: Duration,
    /// How long the provider remembers an idempotency key: a call repeated later with the same
    /// key may run again, so `dlq redrive` asks before resending sagas older than this.
    pub idempotency_window: Duration,
}

/// Tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsConfig {
    /// Cost centre, tagged as `cost-centre`.
    pub cost_centre: String,
    /// Any other tags.
    pub extra: BTreeMap<String, String>,
}
