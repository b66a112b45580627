//! Turning the merged env tables into a typed [`EnvConfig`]: every key is read with its type and
//! range checked, unknown keys are rejected, and the rules that tie keys together (queue
//! visibility against the worker timeout, Lambda timeouts against the saga's worst case, SaaS
//! timeouts against the step timeouts, FIFO limits, a VPC block the builders can split and two
//! subnets for an existing network) are checked here, once, so the pattern builders can trust
//! every value. What the builders derive from a value (the prefix of the VPC block) is parsed
//! here too and carried in the typed config.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sagaform_saga::{PURCHASE, Saga};

use super::error::Listed;
use super::merge::Merged;
use super::read::Node;
use super::{
    AlarmConfig, ApiAuth, ApiConfig, Architecture, AuroraConfig, ConfigError, DynamoDbConfig,
    EnvConfig, FunctionRole, FunctionSettings, FunctionsConfig, NatGateways, Network, Placeholder,
    QueueConfig, SaasEndpoint, StoreKind, TagsConfig, Target, Validated, VpcCidr,
};
use crate::Pattern;

/// Retention periods CloudWatch Logs accepts, in days (never-expire is deliberately not offered).
pub const LOG_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Tag keys the builders set themselves.
const RESERVED_TAGS: [&str; 3] = ["env", "pattern", "cost-centre"];

const TOP_LEVEL_KEYS: [&str; 14] = [
    "target",
    "account_id",
    "region",
    "production",
    "log_retention_days",
    "stores",
    "functions",
    "queue",
    "api",
    "dynamodb",
    "aurora",
    "alarms",
    "saas",
    "tags",
];

/// Validates the merged tables of environment `name` against the saga `saga`.
pub(crate) fn validate(name: &str, merged: &Merged, saga: &Saga) -> Result<EnvConfig, ConfigError> {
    let root = Node::root(merged);
    root.only_keys(&TOP_LEVEL_KEYS)?;

    let target = target(root)?;
    let production = root.bool("production")?;
    if production && target == Target::Local {
        return Err(root.error(
            "production",
            "a local env cannot be production (set target = \"aws\")",
        ));
    }
    let log_retention_days = root.int("log_retention_days", 1..=3653, "cloudwatch logs")?;
    if !LOG_RETENTION_DAYS.contains(&log_retention_days) {
        return Err(root.error(
            "log_retention_days",
            format!(
                "{log_retention_days} is not a retention cloudwatch logs accepts, expected one of {}",
                Listed(&LOG_RETENTION_DAYS)
            ),
        ));
    }

    let functions = functions(root, saga)?;
    let queue = queue(root, &functions)?;
    let is_local = target == Target::Local;
    let alarms = alarms(root, production)?;

    Ok(EnvConfig {
        name: name.to_owned(),
        source: merged.env_file().into(),
        target,
        production,
        stores: stores(root)?,
        functions,
        queue,
        api: api(root)?,
        dynamodb: dynamodb(root)?,
        aurora: aurora(root)?,
        alarms,
        saas: saas(root, saga, is_local)?,
        tags: tags(root)?,
        log_retention_days,
        placeholders: placeholders(root)?,
        validated: Validated,
    })
}

/// The saga every environment is validated against.
pub(crate) fn default_saga() -> &'static Saga {
    &PURCHASE
}

fn target(root: Node<'_>) -> Result<Target, ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Local,
        Aws,
    }
    match root.choice("target", &[("local", Kind::Local), ("aws", Kind::Aws)])? {
        Kind::Local => {
            for key in ["account_id", "region"] {
                if root.has(key) {
                    return Err(root.error(
                        key,
                        "not allowed when target is local (the emulator has no account or region)",
                    ));
                }
            }
            Ok(Target::Local)
        }
        Kind::Aws => {
            let account_id = required_for_aws(root, "account_id")?;
            if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(root.error(
                    "account_id",
                    format!("`{account_id}` is not a 12-digit aws account id"),
                ));
            }
            let region = required_for_aws(root, "region")?;
            if !is_region(region) {
                return Err(root.error(
                    "region",
                    format!("`{region}` is not an aws region code such as ap-northeast-1"),
                ));
            }
            Ok(Target::Aws {
                account_id: account_id.to_owned(),
                region: region.to_owned(),
            })
        }
    }
}

fn required_for_aws<'a>(root: Node<'a>, key: &str) -> Result<&'a str, ConfigError> {
    if !root.has(key) {
        // No file set the key, so the error falls back to the environment's own file.
        return Err(root.error(key, "missing, required when target is aws"));
    }
    root.string(key)
}

/// `xx-name-N` or `xx-partition-name-N`, e.g. `eu-central-1`, `us-gov-west-1`.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    (3..=4).contains(&parts.len())
        && parts[0].len() == 2
        && lower(parts[0])
        && parts[1..parts.len() - 1].iter().all(|p| lower(p))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

fn stores(root: Node<'_>) -> Result<BTreeMap<Pattern, StoreKind>, ConfigError> {
    let names: Vec<&str> = Pattern::ALL.iter().map(|p| p.name()).collect();
    let table = root.table("stores", &names)?;
    let node = table.node();
    Pattern::ALL
        .into_iter()
        .map(|pattern| {
            let kind = node.choice(
                pattern.name(),
                &[
                    ("dynamodb", StoreKind::DynamoDb),
                    ("aurora", StoreKind::Aurora),
                ],
            )?;
            Ok((pattern, kind))
        })
        .collect()
}

fn functions(root: Node<'_>, saga: &Saga) -> Result<FunctionsConfig, ConfigError> {
    let table = root.table(
        "functions",
        &[
            "architecture",
            "log_level",
            "api",
            "worker",
            "step",
            "migrate",
        ],
    )?;
    let node = table.node();
    let architecture = node.choice(
        "architecture",
        &[
            ("arm64", Architecture::Arm64),
            ("x86_64", Architecture::X86_64),
        ],
    )?;
    let log_level = node.string("log_level")?;
    if let Err(reason) = check_log_filter(log_level) {
        return Err(node.error("log_level", reason));
    }
    let by_role = function_settings(node)?;
    check_timeouts_fit_saga(node, &by_role, saga)?;
    Ok(FunctionsConfig {
        architecture,
        by_role,
        log_level: log_level.to_owned(),
    })
}

/// The memory, timeout and reserved concurrency of each function, from its table.
fn function_settings(
    node: Node<'_>,
) -> Result<BTreeMap<FunctionRole, FunctionSettings>, ConfigError> {
    let mut by_role = BTreeMap::new();
    for role in FunctionRole::ALL {
        let settings = node.table(
            role.name(),
            &["memory_mb", "timeout_seconds", "reserved_concurrency"],
        )?;
        let settings = settings.node();
        let memory_mb = settings.int("memory_mb", 128..=10240, "lambda memory in mb")?;
        let timeout_seconds =
            settings.int("timeout_seconds", 1..=900, "lambda timeout in seconds")?;
        let reserved_concurrency = settings.opt_int(
            "reserved_concurrency",
            1..=1000,
            "0 would stop the function; 1000 is the default account limit",
        )?;
        by_role.insert(
            role,
            FunctionSettings {
                memory_mb,
                timeout: Duration::from_secs(timeout_seconds.into()),
                reserved_concurrency,
            },
        );
    }
    Ok(by_role)
}

/// Checks that each function's timeout covers what it runs of `saga`.
fn check_timeouts_fit_saga(
    node: Node<'_>,
    by_role: &BTreeMap<FunctionRole, FunctionSettings>,
    saga: &Saga,
) -> Result<(), ConfigError> {
    // The orchestrator runs the whole saga inside one API invocation and a worker one whole saga
    // per message: either must outlive every step and compensation with all their retries, or
    // a slow downstream leaves sagas half done until a human looks.
    let worst_case = saga.worst_case_duration();
    for (role, runs) in [
        (
            FunctionRole::Api,
            "the orchestrator runs the whole saga in one invocation",
        ),
        (
            FunctionRole::Worker,
            "a worker runs the whole saga for one message",
        ),
    ] {
        let timeout = by_role[&role].timeout;
        if timeout < worst_case {
            let role_node = node.table(role.name(), &[])?;
            return Err(role_node.node().error(
                "timeout_seconds",
                format!(
                    "{} is shorter than the saga's worst case of {} s (every step and compensation with all retries); {runs}",
                    timeout.as_secs(),
                    ceil_secs(worst_case)
                ),
            ));
        }
    }
    // The step function runs one attempt of one action; Step Functions does the retries.
    if let Some(longest) = saga.steps.iter().max_by_key(|s| s.timeout) {
        let timeout = by_role[&FunctionRole::Step].timeout;
        if timeout < longest.timeout {
            let step_node = node.table("step", &[])?;
            return Err(step_node.node().error(
                "timeout_seconds",
                format!(
                    "{} is shorter than the longest step attempt ({} s, step {})",
                    timeout.as_secs(),
                    ceil_secs(longest.timeout),
                    longest.name
                ),
            ));
        }
    }
    Ok(())
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Accepts `RUST_LOG` filters made of `level` and `target=level` directives.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if filter.trim().is_empty() {
        return Err("empty log filter, expected a level such as info".to_owned());
    }
    for directive in filter.split(',') {
        let level = directive.rsplit('=').next().unwrap_or_default().trim();
        let target_ok = match directive.split_once('=') {
            Some((target, _)) => {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
            }
            None => true,
        };
        if !target_ok || !LEVELS.contains(&level) {
            return Err(format!(
                "`{directive}` is not a log directive, expected a level ({}) or target=level",
                Listed(&LEVELS)
            ));
        }
    }
    Ok(())
}

fn queue(root: Node<'_>, functions: &FunctionsConfig) -> Result<QueueConfig, ConfigError> {
    let table = root.table(
        "queue",
        &[
            "fifo",
            "max_receive_count",
            "batch_size",
            "batching_window_seconds",
            "maximum_concurrency",
            "visibility_timeout_seconds",
            "message_retention_seconds",
        ],
    )?;
    let node = table.node();
    let fifo = node.bool("fifo")?;
    let max_receive_count = node.int("max_receive_count", 1..=1000, "sqs redrive policy")?;
    let batch_size = node.int("batch_size", 1..=10000, "sqs event source mapping")?;
    let batching_window_seconds = node.int(
        "batching_window_seconds",
        0..=300,
        "sqs event source mapping",
    )?;
    check_batching(node, fifo, batch_size, batching_window_seconds)?;
    let maximum_concurrency =
        node.int("maximum_concurrency", 2..=1000, "sqs event source mapping")?;
    check_concurrency_fits_worker(node, maximum_concurrency, functions)?;
    let visibility_timeout_seconds = node.int(
        "visibility_timeout_seconds",
        0..=43200,
        "sqs visibility timeout",
    )?;
    check_visibility_covers_worker(
        node,
        visibility_timeout_seconds,
        batching_window_seconds,
        functions,
    )?;
    let message_retention_seconds = node.int(
        "message_retention_seconds",
        60..=1_209_600,
        "sqs message retention",
    )?;
    Ok(QueueConfig {
        fifo,
        max_receive_count,
        batch_size,
        batching_window: Duration::from_secs(batching_window_seconds.into()),
        maximum_concurrency,
        visibility_timeout: Duration::from_secs(visibility_timeout_seconds.into()),
        message_retention: Duration::from_secs(message_retention_seconds.into()),
    })
}

/// Checks the batch size and batching window against each other and the limits of a FIFO
/// queue.
fn check_batching(
    node: Node<'_>,
    fifo: bool,
    batch_size: u32,
    batching_window_seconds: u32,
) -> Result<(), ConfigError> {
    if fifo && batch_size > 10 {
        return Err(node.error(
            "batch_size",
            format!("{batch_size} is over 10, the largest batch of a fifo queue"),
        ));
    }
    if fifo && batching_window_seconds > 0 {
        return Err(node.error(
            "batching_window_seconds",
            format!("{batching_window_seconds} is not supported with a fifo queue, set it to 0"),
        ));
    }
    if batch_size > 10 && batching_window_seconds == 0 {
        return Err(node.error(
            "batching_window_seconds",
            format!("must be at least 1 when batch_size ({batch_size}) is over 10"),
        ));
    }
    Ok(())
}

/// Checks that the event source mapping does not start more workers than may run.
fn check_concurrency_fits_worker(
    node: Node<'_>,
    maximum_concurrency: u32,
    functions: &FunctionsConfig,
) -> Result<(), ConfigError> {
    if let Some(reserved) = functions.by_role[&FunctionRole::Worker].reserved_concurrency
        && maximum_concurrency > reserved
    {
        return Err(node.error(
            "maximum_concurrency",
            format!(
                "{maximum_concurrency} exceeds the worker's reserved concurrency ({reserved}); the extra invocations would only be throttled"
            ),
        ));
    }
    Ok(())
}

/// Checks that a message stays invisible while workers may still be on it: six worker
/// timeouts (the margin AWS recommends for Lambda consumers) plus the batching window.
fn check_visibility_covers_worker(
    node: Node<'_>,
    visibility_timeout_seconds: u32,
    batching_window_seconds: u32,
    functions: &FunctionsConfig,
) -> Result<(), ConfigError> {
    let worker_timeout = functions.by_role[&FunctionRole::Worker].timeout.as_secs();
    let needed = 6 * worker_timeout + u64::from(batching_window_seconds);
    if u64::from(visibility_timeout_seconds) < needed {
        return Err(node.error(
            "visibility_timeout_seconds",
            format!(
                "{visibility_timeout_seconds} is shorter than 6 x worker timeout ({worker_timeout} s) + batching window ({batching_window_seconds} s) = {needed} s"
            ),
        ));
    }
    Ok(())
}

fn api(root: Node<'_>) -> Result<ApiConfig, ConfigError> {
    let table = root.table(
        "api",
        &["auth", "throttle_rate_limit", "throttle_burst_limit", "jwt"],
    )?;
    let node = table.node();
    #[derive(Clone, Copy)]
    enum Kind {
        Iam,
        Jwt,
    }
    let auth = match node.choice("auth", &[("iam", Kind::Iam), ("jwt", Kind::Jwt)])? {
        Kind::Iam => {
            if node.has("jwt") {
                return Err(node.error("jwt", "only allowed when api.auth is jwt"));
            }
            ApiAuth::Iam
        }
        Kind::Jwt => {
            let Some(jwt) = node.opt_table("jwt", &["issuer", "audience"])? else {
                return Err(node.error("jwt", "missing table, required when api.auth is jwt"));
            };
            let jwt = jwt.node();
            let issuer = jwt.string("issuer")?;
            if !issuer.starts_with("https://") || issuer.len() <= "https://".len() {
                return Err(jwt.error("issuer", format!("`{issuer}` is not an https url")));
            }
            let audience = jwt.strings("audience")?;
            if audience.is_empty() || audience.iter().any(|a| a.trim().is_empty()) {
                return Err(jwt.error("audience", "needs at least one non-empty audience"));
            }
            ApiAuth::Jwt {
                issuer: issuer.to_owned(),
                audience: audience.into_iter().map(str::to_owned).collect(),
            }
        }
    };
    let throttle_rate_limit = node.number("throttle_rate_limit")?;
    if throttle_rate_limit <= 0.0 {
        return Err(node.error(
            "throttle_rate_limit",
            format!("{throttle_rate_limit} must be above 0 requests per second"),
        ));
    }
    let throttle_burst_limit = node.int("throttle_burst_limit", 1..=5000, "api gateway burst")?;
    Ok(ApiConfig {
        auth,
        throttle_rate_limit,
        throttle_burst_limit,
    })
}

fn dynamodb(root: Node<'_>) -> Result<DynamoDbConfig, ConfigError> {
    let table = root.table("dynamodb", &["ttl_days"])?;
    let ttl_days = table
        .node()
        .int("ttl_days", 1..=3650, "days finished sagas are kept")?;
    Ok(DynamoDbConfig {
        ttl: Duration::from_secs(u64::from(ttl_days) * 86_400),
    })
}

fn aurora(root: Node<'_>) -> Result<AuroraConfig, ConfigError> {
    let table = root.table(
        "aurora",
        &[
            "min_capacity",
            "max_capacity",
            "engine_version",
            "database_name",
            "backup_retention_days",
            "readers",
            "network",
        ],
    )?;
    let node = table.node();
    let capacity = |key: &str, lowest: f64| -> Result<f64, ConfigError> {
        let acu = node.number(key)?;
        if !(lowest..=256.0).contains(&acu) || (acu * 2.0).fract() != 0.0 {
            return Err(node.error(
                key,
                format!("{acu} is not a serverless v2 capacity ({lowest}..=256 in steps of 0.5)"),
            ));
        }
        Ok(acu)
    };
    let min_capacity = capacity("min_capacity", 0.0)?;
    let max_capacity = capacity("max_capacity", 1.0)?;
    if max_capacity < min_capacity {
        return Err(node.error(
            "max_capacity",
            format!("{max_capacity} is below min_capacity ({min_capacity})"),
        ));
    }
    let engine_version = node.string("engine_version")?;
    let version_ok = engine_version.split('.').count() == 2
        && engine_version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !version_ok {
        return Err(node.error(
            "engine_version",
            format!("`{engine_version}` is not an aurora postgresql version such as 16.8"),
        ));
    }
    let database_name = node.string("database_name")?;
    let name_ok = database_name.len() <= 63
        && database_name.starts_with(|c: char| c.is_ascii_lowercase())
        && database_name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !["postgres", "template0", "template1", "rdsadmin"].contains(&database_name);
    if !name_ok {
        return Err(node.error(
            "database_name",
            format!(
                "`{database_name}` is not a usable database name (lowercase letter first, then lowercase letters, digits or _, at most 63, not a system database)"
            ),
        ));
    }
    let backup_retention_days = node.int("backup_retention_days", 1..=35, "aurora backups")?;
    let readers = node.int("readers", 0..=15, "aurora replicas per cluster")?;
    Ok(AuroraConfig {
        min_capacity,
        max_capacity,
        engine_version: engine_version.to_owned(),
        database_name: database_name.to_owned(),
        network: network(node)?,
        backup_retention_days,
        readers,
    })
}

fn network(aurora: Node<'_>) -> Result<Network, ConfigError> {
    let table = aurora.table(
        "network",
        &["mode", "vpc_cidr", "nat_gateways", "vpc_id", "subnet_ids"],
    )?;
    let node = table.node();
    #[derive(Clone, Copy)]
    enum Mode {
        Create,
        Existing,
    }
    let (mode, own, other): (Mode, &[&str], &[&str]) = match node.choice(
        "mode",
        &[("create", Mode::Create), ("existing", Mode::Existing)],
    )? {
        Mode::Create => (
            Mode::Create,
            &["vpc_cidr", "nat_gateways"],
            &["vpc_id", "subnet_ids"],
        ),
        Mode::Existing => (
            Mode::Existing,
            &["vpc_id", "subnet_ids"],
            &["vpc_cidr", "nat_gateways"],
        ),
    };
    let mode_name = node.string("mode")?;
    if let Some(stray) = other.iter().find(|key| node.has(key)) {
        return Err(node.error(
            stray,
            format!(
                "not used when aurora.network.mode is `{mode_name}` (that mode takes {})",
                Listed(own)
            ),
        ));
    }
    match mode {
        Mode::Create => {
            let cidr = node.string("vpc_cidr")?;
            let Some(vpc_cidr) = vpc_cidr(cidr) else {
                return Err(node.error(
                    "vpc_cidr",
                    format!("`{cidr}` is not an ipv4 cidr with a prefix of /16 to /24"),
                ));
            };
            // Optional, so that an env can leave it out: a created network has one NAT gateway
            // unless the env asks for one per availability zone.
            let nat_gateways = if node.has("nat_gateways") {
                node.choice(
                    "nat_gateways",
                    &[
                        ("single", NatGateways::Single),
                        ("per_az", NatGateways::PerAz),
                    ],
                )?
            } else {
                NatGateways::Single
            };
            Ok(Network::Create {
                vpc_cidr,
                nat_gateways,
            })
        }
        Mode::Existing => {
            let vpc_id = node.string("vpc_id")?;
            if !is_aws_id(vpc_id, "vpc-") {
                return Err(node.error("vpc_id", format!("`{vpc_id}` is not a vpc id")));
            }
            let subnet_ids = node.strings("subnet_ids")?;
            if let Some(bad) = subnet_ids.iter().find(|s| !is_aws_id(s, "subnet-")) {
                return Err(node.error("subnet_ids", format!("`{bad}` is not a subnet id")));
            }
            let distinct: BTreeSet<&&str> = subnet_ids.iter().collect();
            if distinct.len() < 2 || distinct.len() != subnet_ids.len() {
                return Err(node.error(
                    "subnet_ids",
                    "needs at least two distinct private subnets (aurora spans two availability zones)",
                ));
            }
            Ok(Network::Existing {
                vpc_id: vpc_id.to_owned(),
                subnet_ids: subnet_ids.into_iter().map(str::to_owned).collect(),
            })
        }
    }
}

fn is_aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Parses a VPC block: an IPv4 network address with a prefix the builders can split in four.
fn vpc_cidr(cidr: &str) -> Option<VpcCidr> {
    let (address, prefix) = cidr.split_once('/')?;
    let address = address.parse::<std::net::Ipv4Addr>().ok()?;
    let prefix = prefix.parse::<u32>().ok()?;
    // The address must be the network address: no host bits set.
    let is_network =
        (16..=24).contains(&prefix) && u32::from(address) & ((1u32 << (32 - prefix)) - 1) == 0;
    is_network.then(|| VpcCidr {
        block: cidr.to_owned(),
        prefix,
    })
}

fn alarms(root: Node<'_>, production: bool) -> Result<AlarmConfig, ConfigError> {
    let table = root.table(
        "alarms",
        &[
            "emails",
            "period_seconds",
            "evaluation_periods",
            "oldest_message_age_seconds",
            "lambda_errors",
            "lambda_throttles",
            "api_5xx",
            "dynamodb_throttles",
            "aurora_capacity_percent",
            "aurora_connections",
            "runbook_base_url",
        ],
    )?;
    let node = table.node();
    let runbook_base_url = if node.has("runbook_base_url") {
        let url = node.string("runbook_base_url")?;
        if let Err(reason) = check_base_url(url) {
            return Err(node.error("runbook_base_url", reason));
        }
        Some(url.to_owned())
    } else {
        None
    };
    let emails = node.strings("emails")?;
    if let Some(bad) = emails.iter().find(|e| !is_email(e)) {
        return Err(node.error("emails", format!("`{bad}` is not an email address")));
    }
    if emails.iter().collect::<BTreeSet<_>>().len() != emails.len() {
        return Err(node.error("emails", "lists an address twice"));
    }
    if production && emails.is_empty() {
        return Err(node.error_in_env_file(
            "emails",
            "a production env needs at least one address, or alarms reach nobody",
        ));
    }
    let period_seconds = node.int("period_seconds", 60..=86_400, "cloudwatch alarm period")?;
    if period_seconds % 60 != 0 {
        return Err(node.error(
            "period_seconds",
            format!("{period_seconds} is not a multiple of 60 (standard-resolution metrics)"),
        ));
    }
    let evaluation_periods = node.int("evaluation_periods", 1..=1440, "cloudwatch alarms")?;
    if u64::from(period_seconds) * u64::from(evaluation_periods) > 86_400 {
        return Err(node.error(
            "evaluation_periods",
            format!(
                "{evaluation_periods} x period ({period_seconds} s) exceeds one day, the longest window cloudwatch evaluates"
            ),
        ));
    }
    let count = |key: &str| node.int(key, 1..=1_000_000, "count per alarm period");
    Ok(AlarmConfig {
        period: Duration::from_secs(period_seconds.into()),
        evaluation_periods,
        oldest_message_age: Duration::from_secs(
            node.int(
                "oldest_message_age_seconds",
                60..=1_209_600,
                "sqs message age",
            )?
            .into(),
        ),
        lambda_errors: count("lambda_errors")?,
        lambda_throttles: count("lambda_throttles")?,
        api_5xx: count("api_5xx")?,
        dynamodb_throttles: count("dynamodb_throttles")?,
        aurora_capacity_percent: node.int("aurora_capacity_percent", 1..=100, "percent")?,
        aurora_connections: count("aurora_connections")?,
        emails: emails.into_iter().map(str::to_owned).collect(),
        runbook_base_url,
    })
}

/// A base URL links are built on: `https://host[/path]`, no query, fragment, credentials or
/// trailing slash (the path appended starts with one).
fn check_base_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!("`{url}` is not an https url"));
    };
    check_url_after_scheme(url, rest, "the runbook path is appended after one")
}

/// The documentation domains of RFC 2606, which the shipped env files use as placeholders.
const PLACEHOLDER_DOMAINS: [&str; 3] = ["example.com", "example.net", "example.org"];

/// Whether `host` is a documentation domain or one of its subdomains.
fn is_placeholder_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    PLACEHOLDER_DOMAINS
        .iter()
        .any(|domain| host == *domain || host.ends_with(&format!(".{domain}")))
}

/// The host of an `http(s)` URL.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', ':', '?', '#']).next().unwrap_or_default()
}

/// The values still at a shipped placeholder: the JWT issuer, alarm emails and SaaS URLs whose
/// host is a documentation domain. Only read here (the keys were validated already); a
/// production deploy refuses them, synthesis does not, so the shipped files keep generating.
fn placeholders(root: Node<'_>) -> Result<Vec<Placeholder>, ConfigError> {
    let mut found = Vec::new();
    let mut record = |node: Node<'_>, key: &str, value: &str| {
        if let ConfigError::Invalid { file, key, .. } = node.error(key, String::new()) {
            found.push(Placeholder {
                file,
                key,
                value: value.to_owned(),
            });
        }
    };
    let api = root.table("api", &[])?;
    if let Some(jwt) = api.node().opt_table("jwt", &[])? {
        let issuer = jwt.node().string("issuer")?;
        if is_placeholder_host(url_host(issuer)) {
            record(jwt.node(), "issuer", issuer);
        }
    }
    let alarms = root.table("alarms", &[])?;
    for email in alarms.node().strings("emails")? {
        let domain = email.rsplit('@').next().unwrap_or_default();
        if is_placeholder_host(domain) {
            record(alarms.node(), "emails", email);
        }
    }
    let saas = root.table("saas", &[])?;
    let services: Vec<&String> = saas.node().keys().collect();
    for service in services {
        let endpoint = saas.node().table(service, &[])?;
        let url = endpoint.node().string("url")?;
        if is_placeholder_host(url_host(url)) {
            record(endpoint.node(), "url", url);
        }
    }
    Ok(found)
}

fn is_email(address: &str) -> bool {
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !address.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

fn saas(
    root: Node<'_>,
    saga: &Saga,
    is_local: bool,
) -> Result<BTreeMap<String, SaasEndpoint>, ConfigError> {
    let services = saga.services();
    let table = root.table("saas", &services)?;
    let node = table.node();
    let mut endpoints = BTreeMap::new();
    for service in services {
        let endpoint = node.table(
            service,
            &[
                "url",
                "connect_timeout_ms",
                "request_timeout_ms",
                "idempotency_window_hours",
            ],
        )?;
        let endpoint = endpoint.node();
        let url = endpoint.string("url")?;
        if let Err(reason) = check_url(url, is_local) {
            return Err(endpoint.error("url", reason));
        }
        let connect_timeout_ms = endpoint.int("connect_timeout_ms", 1..=60_000, "milliseconds")?;
        let request_timeout_ms = endpoint.int("request_timeout_ms", 1..=900_000, "milliseconds")?;
        if connect_timeout_ms > request_timeout_ms {
            return Err(endpoint.error(
                "connect_timeout_ms",
                format!(
                    "{connect_timeout_ms} is longer than request_timeout_ms ({request_timeout_ms})"
                ),
            ));
        }
        // A request may not outlast the attempt it belongs to, or the saga's timeouts (and the
        // Step Functions task timeouts derived from them) would cut it off mid-call.
        for step in saga.steps.iter().filter(|s| s.service == service) {
            let step_ms = step.timeout.as_millis();
            if u128::from(request_timeout_ms) > step_ms {
                return Err(endpoint.error(
                    "request_timeout_ms",
                    format!(
                        "{request_timeout_ms} is longer than the timeout of step {} ({step_ms} ms)",
                        step.name
                    ),
                ));
            }
        }
        let idempotency_window_hours = endpoint.int(
            "idempotency_window_hours",
            1..=8760,
            "hours the provider keeps an idempotency key, at most a year",
        )?;
        endpoints.insert(
            service.to_owned(),
            SaasEndpoint {
                url: url.to_owned(),
                connect_timeout: Duration::from_millis(connect_timeout_ms.into()),
                request_timeout: Duration::from_millis(request_timeout_ms.into()),
                idempotency_window: Duration::from_secs(u64::from(idempotency_window_hours) * 3600),
            },
        );
    }
    Ok(endpoints)
}

/// A base URL: `https://host[:port][/path]` (plain `http` only on the local emulator), no query,
/// fragment, credentials or trailing slash (the runtime appends `/{action}`).
fn check_url(url: &str, is_local: bool) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !is_local {
            return Err(format!(
                "`{url}` uses http, only allowed in a local env; use https"
            ));
        }
        rest
    } else {
        return Err(format!("`{url}` is not an http(s) url"));
    };
    check_url_after_scheme(url, rest, "the runtime appends /<action> itself")
}

/// The part of a base URL after its scheme (`rest`): a host, no query, fragment or credentials,
/// and no trailing slash, for the reason `why_no_slash`.
fn check_url_after_scheme(url: &str, rest: &str, why_no_slash: &str) -> Result<(), String> {
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if rest.contains(['?', '#', '@', ' ']) {
        return Err(format!(
            "`{url}` must be a base url without query, fragment or credentials"
        ));
    }
    if url.ends_with('/') {
        return Err(format!("`{url}` ends with /, {why_no_slash}"));
    }
    Ok(())
}

fn tags(root: Node<'_>) -> Result<TagsConfig, ConfigError> {
    let table = root.table("tags", &["cost_centre", "extra"])?;
    let node = table.node();
    let cost_centre = node.string("cost_centre")?;
    if let Err(reason) = check_tag_value(cost_centre) {
        return Err(node.error("cost_centre", reason));
    }
    let mut extra = BTreeMap::new();
    if let Some(extra_table) = node.opt_table("extra", &[])? {
        let extra_node = extra_table.node();
        for key in extra_node.keys() {
            let reserved = RESERVED_TAGS.contains(&key.as_str());
            let key_ok = (1..=128).contains(&key.chars().count())
                && !key.to_ascii_lowercase().starts_with("aws:")
                && key
                    .chars()
                    .all(|c| c.is_alphanumeric() || " _.:/=+-@".contains(c));
            if reserved {
                return Err(extra_node.error(
                    key,
                    format!("is set by sagaform itself ({})", Listed(&RESERVED_TAGS)),
                ));
            }
            if !key_ok {
                return Err(extra_node.error(
                    key,
                    "is not a tag key (1 to 128 letters, digits, spaces or _.:/=+-@, not aws:)",
                ));
            }
            let value = extra_node.string(key)?;
            if let Err(reason) = check_tag_value(value) {
                return Err(extra_node.error(key, reason));
            }
            extra.insert(key.clone(), value.to_owned());
        }
    }
    Ok(TagsConfig {
        cost_centre: cost_centre.to_owned(),
        extra,
    })
}

fn check_tag_value(value: &str) -> Result<(), String> {
    let ok = (1..=256).contains(&value.chars().count())
        && value
            .chars()
            .all(|c| c.is_alphanumeric() || " _.:/=+-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a tag value (1 to 256 letters, digits, spaces or _.:/=+-@)"
        ))
    }
}
