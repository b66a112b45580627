//! Env config loading: the committed env files load, a later file overrides one key and keeps the
//! rest of its table, and every kind of bad input fails with a message naming the file, the
//! dotted key and the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sagaform_stacks::Pattern;
use sagaform_stacks::config::{
    ApiAuth, Architecture, ConfigError, EnvConfig, FunctionRole, NatGateways, Network, Source,
    StoreKind, Target, env_names, load_all, load_env, load_from_sources,
};
use sagaform_stacks::fixtures::{example_env, example_env_with};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn committed_defaults() -> String {
    std::fs::read_to_string(workspace_root().join("env/defaults.toml")).unwrap()
}

fn committed(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join(format!("env/{name}.toml"))).unwrap()
}

/// A staging-like env file that is valid on top of the committed defaults; tests append or
/// replace lines to make one thing wrong.
const VALID_AWS_ENV: &str = r#"
account_id = "111122223333"
region = "eu-west-1"

[aurora.network]
mode = "create"
vpc_cidr = "10.20.0.0/16"

[saas.inventory]
url = "https://inventory.example.com"

[saas.payments]
url = "https://payments.example.com"

[saas.entitlements]
url = "https://entitlements.example.com"
"#;

fn load_with(defaults: &str, env: &str) -> Result<EnvConfig, ConfigError> {
    load_from_sources(
        "test",
        Source {
            file: "env/defaults.toml",
            text: defaults,
        },
        Source {
            file: "env/test.toml",
            text: env,
        },
    )
}

fn load(env: &str) -> Result<EnvConfig, ConfigError> {
    load_with(&committed_defaults(), env)
}

#[track_caller]
fn assert_error(result: Result<EnvConfig, ConfigError>, file: &str, key: &str, reason: &str) {
    let error = result.expect_err("the config should have been rejected");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{file}: {key}: ")),
        "message `{message}` should start with `{file}: {key}: `"
    );
    assert!(
        message.contains(reason),
        "message `{message}` should contain `{reason}`"
    );
    assert_eq!(error.file(), Some(file));
    assert_eq!(error.key(), Some(key));
    assert_eq!(message, message.trim_end_matches('.'), "no trailing period");
    assert!(!message.contains('\n'), "one line: `{message}`");
}

#[test]
fn committed_envs_load_and_are_listed_without_defaults() {
    let root = workspace_root();
    assert_eq!(env_names(&root).unwrap(), ["local", "prod", "staging"]);
    let envs = load_all(&root).unwrap();
    let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["local", "prod", "staging"]);
    for env in &envs {
        assert_eq!(env.source, Path::new(&format!("env/{}.toml", env.name)));
        assert_eq!(env.saas.keys().map(String::as_str).collect::<Vec<_>>(), {
            let mut services = sagaform_saga::PURCHASE.services();
            services.sort();
            services
        });
        for role in FunctionRole::ALL {
            assert!(env.functions.by_role.contains_key(&role));
        }
        for pattern in Pattern::ALL {
            env.store(pattern);
        }
    }
}

#[test]
fn local_env_targets_the_emulator_and_the_local_fake_saas() {
    let local = load_env(&workspace_root(), "local").unwrap();
    assert_eq!(local.target, Target::Local);
    assert!(local.is_local());
    assert!(!local.production);
    assert!(!local.retain_data());
    assert_eq!(local.region(), "us-east-1");
    for (service, endpoint) in &local.saas {
        assert_eq!(endpoint.url, format!("http://127.0.0.1:9320/{service}"));
    }
}

#[test]
fn prod_env_is_production_in_a_real_account_with_jwt_auth() {
    let prod = load_env(&workspace_root(), "prod").unwrap();
    assert!(prod.production);
    assert!(prod.retain_data());
    assert_eq!(
        prod.target,
        Target::Aws {
            account_id: "444455556666".into(),
            region: "ap-northeast-1".into()
        }
    );
    assert!(matches!(prod.api.auth, ApiAuth::Jwt { .. }));
    assert_eq!(prod.store(Pattern::Orchestrator), StoreKind::Aurora);
    assert_eq!(prod.store(Pattern::Sqs), StoreKind::DynamoDb);
    assert!(!prod.alarms.emails.is_empty());
}

#[test]
fn override_replaces_one_key_and_keeps_the_rest_of_its_table() {
    let defaults = committed_defaults();
    let base = load(VALID_AWS_ENV).unwrap();
    let changed = load(&format!(
        "{VALID_AWS_ENV}\n[queue]\nmax_receive_count = 9\n"
    ))
    .unwrap();
    assert_eq!(changed.queue.max_receive_count, 9);
    assert_ne!(base.queue.max_receive_count, 9);
    // Every other queue key still comes from the defaults.
    assert_eq!(
        changed.queue,
        sagaform_stacks::config::QueueConfig {
            max_receive_count: 9,
            ..base.queue.clone()
        }
    );
    // Nested tables merge per key too: one function's memory, not the whole [functions] table.
    let changed = load(&format!(
        "{VALID_AWS_ENV}\n[functions.step]\nmemory_mb = 1024\n"
    ))
    .unwrap();
    let step = &changed.functions.by_role[&FunctionRole::Step];
    assert_eq!(step.memory_mb, 1024);
    assert_eq!(
        step.timeout,
        base.functions.by_role[&FunctionRole::Step].timeout
    );
    assert_eq!(changed.functions.architecture, Architecture::Arm64);
    assert_eq!(changed.functions.log_level, base.functions.log_level);
    assert!(defaults.contains("[functions.step]"));
}

#[test]
fn error_names_the_file_that_set_the_bad_key() {
    let defaults = committed_defaults().replace("memory_mb = 256", "memory_mb = 64");
    assert_error(
        load_with(&defaults, VALID_AWS_ENV),
        "env/defaults.toml",
        "functions.step.memory_mb",
        "64 is outside 128..=10240",
    );
    // The env file overriding the key takes the blame instead.
    let env = format!("{VALID_AWS_ENV}\n[functions.step]\nmemory_mb = 20000\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "functions.step.memory_mb",
        "20000 is outside",
    );
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let error = load("account_id = \"111122223333\"\nregion = \n").unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("env/test.toml: line 2, column "),
        "{message}"
    );
    assert!(message.contains("invalid toml"), "{message}");
    assert!(matches!(error, ConfigError::Syntax { line: 2, .. }));
}

#[test]
fn unknown_key_is_rejected_with_a_suggestion() {
    let env = format!("{VALID_AWS_ENV}\n[queue]\nbatch_sise = 3\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "queue.batch_sise",
        "unknown key (did you mean `batch_size`?), expected one of fifo, max_receive_count",
    );
    assert_error(
        load(&format!("colour = \"blue\"\n{VALID_AWS_ENV}")),
        "env/test.toml",
        "colour",
        "unknown key",
    );
}

#[test]
fn unknown_table_under_a_known_one_is_rejected() {
    let env = format!("{VALID_AWS_ENV}\n[functions.scheduler]\nmemory_mb = 128\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "functions.scheduler",
        "unknown key",
    );
}

#[test]
fn wrong_type_names_expected_and_found() {
    let env = format!("{VALID_AWS_ENV}\n[queue]\nbatch_size = \"ten\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "queue.batch_size",
        "expected an integer, found string \"ten\"",
    );
}

#[test]
fn unknown_env_lists_the_valid_ones() {
    let error = load_env(&workspace_root(), "qa").unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown env `qa`: expected one of local, prod, staging"
    );
}

#[test]
fn aws_env_needs_a_12_digit_account_and_a_region() {
    let no_account = VALID_AWS_ENV.replace("account_id = \"111122223333\"\n", "");
    assert_error(
        load(&no_account),
        "env/test.toml",
        "account_id",
        "missing, required when target is aws",
    );
    let short = VALID_AWS_ENV.replace("111122223333", "12345");
    assert_error(
        load(&short),
        "env/test.toml",
        "account_id",
        "`12345` is not a 12-digit aws account id",
    );
    let bad_region = VALID_AWS_ENV.replace("eu-west-1", "europe");
    assert_error(
        load(&bad_region),
        "env/test.toml",
        "region",
        "`europe` is not an aws region code",
    );
    for region in ["us-gov-west-1", "ap-northeast-1", "il-central-1"] {
        let env = VALID_AWS_ENV.replace("eu-west-1", region);
        assert_eq!(load(&env).unwrap().region(), region);
    }
}

#[test]
fn local_env_has_no_account_or_region_and_cannot_be_production() {
    let local = committed("local");
    assert_error(
        load(&format!("region = \"eu-west-1\"\n{local}")),
        "env/test.toml",
        "region",
        "not allowed when target is local",
    );
    assert_error(
        load(&format!("production = true\n{local}")),
        "env/test.toml",
        "production",
        "a local env cannot be production",
    );
}

#[test]
fn plain_http_saas_is_only_allowed_locally() {
    let env = VALID_AWS_ENV.replace("https://payments", "http://payments");
    assert_error(
        load(&env),
        "env/test.toml",
        "saas.payments.url",
        "uses http, only allowed in a local env",
    );
    let trailing = VALID_AWS_ENV.replace(
        "https://payments.example.com",
        "https://payments.example.com/",
    );
    assert_error(
        load(&trailing),
        "env/test.toml",
        "saas.payments.url",
        "ends with /",
    );
}

#[test]
fn saas_services_must_be_exactly_those_of_the_saga() {
    let extra =
        format!("{VALID_AWS_ENV}\n[saas.shipping]\nurl = \"https://shipping.example.com\"\n");
    assert_error(
        load(&extra),
        "env/test.toml",
        "saas.shipping",
        "unknown key, expected one of inventory, payments, entitlements",
    );
    let missing = VALID_AWS_ENV.replace(
        "[saas.payments]\nurl = \"https://payments.example.com\"\n",
        "",
    );
    assert_error(
        load(&missing),
        "env/test.toml",
        "saas.payments.url",
        "missing string",
    );
}

#[test]
fn saas_request_may_not_outlast_its_step() {
    let env = format!("{VALID_AWS_ENV}\n[saas.payments]\nrequest_timeout_ms = 6000\n").replace(
        "[saas.payments]\nurl = \"https://payments.example.com\"\n",
        "",
    );
    let env = format!("{env}url = \"https://payments.example.com\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "saas.payments.request_timeout_ms",
        "6000 is longer than the timeout of step payment (5000 ms)",
    );
}

#[test]
fn visibility_timeout_must_cover_six_worker_timeouts_and_the_batching_window() {
    let env = format!(
        "{VALID_AWS_ENV}\n[queue]\nvisibility_timeout_seconds = 60\nbatching_window_seconds = 5\n"
    );
    assert_error(
        load(&env),
        "env/test.toml",
        "queue.visibility_timeout_seconds",
        "60 is shorter than 6 x worker timeout (150 s) + batching window (5 s) = 905 s",
    );
    let exact = format!("{VALID_AWS_ENV}\n[queue]\nvisibility_timeout_seconds = 905\n");
    assert_eq!(
        load(&exact).unwrap().queue.visibility_timeout,
        Duration::from_secs(905)
    );
}

#[test]
fn lambda_timeout_over_900_or_zero_is_rejected() {
    for bad in [0, 901] {
        let env = format!("{VALID_AWS_ENV}\n[functions.step]\ntimeout_seconds = {bad}\n");
        assert_error(
            load(&env),
            "env/test.toml",
            "functions.step.timeout_seconds",
            &format!("{bad} is outside 1..=900"),
        );
    }
}

#[test]
fn orchestrator_timeout_must_cover_the_sagas_worst_case() {
    let worst = sagaform_saga::PURCHASE.worst_case_duration();
    assert!(
        worst > Duration::from_secs(60),
        "the test assumes a long saga"
    );
    let env = format!("{VALID_AWS_ENV}\n[functions.api]\ntimeout_seconds = 60\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "functions.api.timeout_seconds",
        "60 is shorter than the saga's worst case of 130 s",
    );
    let env = format!(
        "{VALID_AWS_ENV}\n[functions.worker]\ntimeout_seconds = 60\n[queue]\nvisibility_timeout_seconds = 900\n"
    );
    assert_error(
        load(&env),
        "env/test.toml",
        "functions.worker.timeout_seconds",
        "a worker runs the whole saga for one message",
    );
}

#[test]
fn step_function_must_fit_the_longest_step_attempt() {
    let env = format!("{VALID_AWS_ENV}\n[functions.step]\ntimeout_seconds = 4\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "functions.step.timeout_seconds",
        "4 is shorter than the longest step attempt (5 s, step payment)",
    );
}

#[test]
fn fifo_batch_over_10_and_fifo_batching_window_are_rejected() {
    let env = format!(
        "{VALID_AWS_ENV}\n[queue]\nfifo = true\nbatch_size = 11\nbatching_window_seconds = 0\n"
    );
    assert_error(
        load(&env),
        "env/test.toml",
        "queue.batch_size",
        "11 is over 10, the largest batch of a fifo queue",
    );
    let env = format!("{VALID_AWS_ENV}\n[queue]\nfifo = true\nbatching_window_seconds = 5\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "queue.batching_window_seconds",
        "not supported with a fifo queue",
    );
    let ok = format!(
        "{VALID_AWS_ENV}\n[queue]\nfifo = true\nbatch_size = 10\nbatching_window_seconds = 0\n"
    );
    assert!(load(&ok).unwrap().queue.fifo);
}

#[test]
fn queue_bounds_are_enforced() {
    let cases = [
        (
            "batch_size = 0",
            "queue.batch_size",
            "0 is outside 1..=10000",
        ),
        (
            "batch_size = 20\nbatching_window_seconds = 0",
            "queue.batching_window_seconds",
            "must be at least 1 when batch_size (20) is over 10",
        ),
        (
            "batching_window_seconds = 301",
            "queue.batching_window_seconds",
            "301 is outside 0..=300",
        ),
        (
            "max_receive_count = 0",
            "queue.max_receive_count",
            "0 is outside 1..=1000",
        ),
        (
            "maximum_concurrency = 1",
            "queue.maximum_concurrency",
            "1 is outside 2..=1000",
        ),
        (
            "maximum_concurrency = 1001",
            "queue.maximum_concurrency",
            "1001 is outside 2..=1000",
        ),
        (
            "message_retention_seconds = 1209601",
            "queue.message_retention_seconds",
            "is outside 60..=1209600",
        ),
    ];
    for (assignment, key, reason) in cases {
        let env = format!("{VALID_AWS_ENV}\n[queue]\n{assignment}\n");
        assert_error(load(&env), "env/test.toml", key, reason);
    }
}

#[test]
fn maximum_concurrency_may_not_exceed_the_workers_reserved_concurrency() {
    let env = format!(
        "{VALID_AWS_ENV}\n[functions.worker]\nreserved_concurrency = 5\n[queue]\nmaximum_concurrency = 10\n"
    );
    assert_error(
        load(&env),
        "env/test.toml",
        "queue.maximum_concurrency",
        "10 exceeds the worker's reserved concurrency (5)",
    );
}

#[test]
fn memory_outside_lambda_limits_is_rejected() {
    for bad in [127, 10241] {
        let env = format!("{VALID_AWS_ENV}\n[functions.api]\nmemory_mb = {bad}\n");
        assert_error(
            load(&env),
            "env/test.toml",
            "functions.api.memory_mb",
            &format!("{bad} is outside 128..=10240"),
        );
    }
}

#[test]
fn fixed_choices_list_the_accepted_values() {
    let env = format!("{VALID_AWS_ENV}\n[functions]\narchitecture = \"arm\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "functions.architecture",
        "`arm` is not one of arm64, x86_64",
    );
    let env = format!("{VALID_AWS_ENV}\n[stores]\nsqs = \"redis\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "stores.sqs",
        "`redis` is not one of dynamodb, aurora",
    );
    let env = format!("{VALID_AWS_ENV}\n[functions]\nlog_level = \"loud\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "functions.log_level",
        "`loud` is not a log directive",
    );
    let env =
        format!("{VALID_AWS_ENV}\n[functions]\nlog_level = \"info,sagaform_runtime=debug\"\n");
    assert_eq!(
        load(&env).unwrap().functions.log_level,
        "info,sagaform_runtime=debug"
    );
}

#[test]
fn log_retention_must_be_a_cloudwatch_value() {
    let env = format!("log_retention_days = 10\n{VALID_AWS_ENV}");
    assert_error(
        load(&env),
        "env/test.toml",
        "log_retention_days",
        "10 is not a retention cloudwatch logs accepts, expected one of 1, 3, 5, 7, 14",
    );
}

#[test]
fn jwt_auth_needs_an_https_issuer_and_an_audience() {
    let env = format!("{VALID_AWS_ENV}\n[api]\nauth = \"jwt\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "api.jwt",
        "missing table, required when api.auth is jwt",
    );
    let env = format!(
        "{VALID_AWS_ENV}\n[api]\nauth = \"jwt\"\n[api.jwt]\nissuer = \"http://auth.example.com\"\naudience = [\"x\"]\n"
    );
    assert_error(
        load(&env),
        "env/test.toml",
        "api.jwt.issuer",
        "is not an https url",
    );
    let env = format!(
        "{VALID_AWS_ENV}\n[api]\nauth = \"jwt\"\n[api.jwt]\nissuer = \"https://auth.example.com\"\naudience = []\n"
    );
    assert_error(
        load(&env),
        "env/test.toml",
        "api.jwt.audience",
        "needs at least one",
    );
    let env = format!(
        "{VALID_AWS_ENV}\n[api.jwt]\nissuer = \"https://auth.example.com\"\naudience = [\"x\"]\n"
    );
    assert_error(
        load(&env),
        "env/test.toml",
        "api.jwt",
        "only allowed when api.auth is jwt",
    );
}

#[test]
fn aurora_settings_are_checked() {
    let cases = [
        (
            "[aurora]\nmin_capacity = 0.3",
            "aurora.min_capacity",
            "is not a serverless v2 capacity",
        ),
        (
            "[aurora]\nmax_capacity = 300",
            "aurora.max_capacity",
            "is not a serverless v2 capacity",
        ),
        (
            "[aurora]\nmin_capacity = 8.0\nmax_capacity = 4.0",
            "aurora.max_capacity",
            "4 is below min_capacity (8)",
        ),
        (
            "[aurora]\nengine_version = \"latest\"",
            "aurora.engine_version",
            "is not an aurora postgresql version",
        ),
        (
            "[aurora]\ndatabase_name = \"postgres\"",
            "aurora.database_name",
            "is not a usable database name",
        ),
        (
            "[aurora]\nbackup_retention_days = 36",
            "aurora.backup_retention_days",
            "36 is outside 1..=35",
        ),
    ];
    for (snippet, key, reason) in cases {
        let env = format!("{VALID_AWS_ENV}\n{snippet}\n");
        assert_error(load(&env), "env/test.toml", key, reason);
    }
    let cidr = VALID_AWS_ENV.replace("10.20.0.0/16", "10.20.0.1/16");
    assert_error(
        load(&cidr),
        "env/test.toml",
        "aurora.network.vpc_cidr",
        "is not an ipv4 cidr",
    );
    let stray = VALID_AWS_ENV.replace(
        "mode = \"create\"",
        "mode = \"create\"\nvpc_id = \"vpc-0123abcd\"",
    );
    assert_error(
        load(&stray),
        "env/test.toml",
        "aurora.network.vpc_id",
        "not used when aurora.network.mode is `create` (that mode takes vpc_cidr, nat_gateways)",
    );
}

#[test]
fn readers_and_nat_gateways_per_zone_are_checked_and_on_in_prod() {
    let prod = load(&committed("prod")).unwrap();
    assert_eq!(prod.aurora.readers, 1);
    assert!(matches!(
        prod.aurora.network,
        Network::Create {
            nat_gateways: NatGateways::PerAz,
            ..
        }
    ));
    let staging = load(&committed("staging")).unwrap();
    assert_eq!(staging.aurora.readers, 0);
    assert!(matches!(
        staging.aurora.network,
        Network::Create {
            nat_gateways: NatGateways::Single,
            ..
        }
    ));
    assert_error(
        load(&format!(
            "{VALID_AWS_ENV}
[aurora]
readers = 16
"
        )),
        "env/test.toml",
        "aurora.readers",
        "16 is outside 0..=15 (aurora replicas per cluster)",
    );
    let unknown = VALID_AWS_ENV.replace(
        "mode = \"create\"",
        "mode = \"create\"\nnat_gateways = \"two\"",
    );
    assert_error(
        load(&unknown),
        "env/test.toml",
        "aurora.network.nat_gateways",
        "`two` is not one of",
    );
    let existing = VALID_AWS_ENV.replace(
        "mode = \"create\"\nvpc_cidr = \"10.20.0.0/16\"",
        "mode = \"existing\"\nvpc_id = \"vpc-0123abcd\"\nsubnet_ids = [\"subnet-0123abcd\", \"subnet-4567ef01\"]\nnat_gateways = \"per_az\"",
    );
    assert_error(
        load(&existing),
        "env/test.toml",
        "aurora.network.nat_gateways",
        "not used when aurora.network.mode is `existing` (that mode takes vpc_id, subnet_ids)",
    );
}

#[test]
fn existing_network_takes_a_vpc_and_two_subnets() {
    let existing = VALID_AWS_ENV.replace(
        "mode = \"create\"\nvpc_cidr = \"10.20.0.0/16\"",
        "mode = \"existing\"\nvpc_id = \"vpc-0123abcd\"\nsubnet_ids = [\"subnet-0123abcd\", \"subnet-4567ef01\"]",
    );
    assert_eq!(
        load(&existing).unwrap().aurora.network,
        Network::Existing {
            vpc_id: "vpc-0123abcd".into(),
            subnet_ids: vec!["subnet-0123abcd".into(), "subnet-4567ef01".into()],
        }
    );
    let one_subnet = existing.replace(", \"subnet-4567ef01\"", "");
    assert_error(
        load(&one_subnet),
        "env/test.toml",
        "aurora.network.subnet_ids",
        "at least two distinct",
    );
}

#[test]
fn created_network_carries_its_block_and_prefix_for_the_builders() {
    let Network::Create { vpc_cidr, .. } = load(VALID_AWS_ENV).unwrap().aurora.network else {
        panic!("VALID_AWS_ENV creates its network")
    };
    assert_eq!(vpc_cidr.block(), "10.20.0.0/16");
    assert_eq!(vpc_cidr.prefix(), 16);
    let small = VALID_AWS_ENV.replace("10.20.0.0/16", "192.168.4.0/24");
    let Network::Create { vpc_cidr, .. } = load(&small).unwrap().aurora.network else {
        panic!("the replaced env still creates its network")
    };
    assert_eq!(
        (vpc_cidr.block(), vpc_cidr.prefix()),
        ("192.168.4.0/24", 24)
    );
    let too_small = VALID_AWS_ENV.replace("10.20.0.0/16", "10.20.0.0/25");
    assert_error(
        load(&too_small),
        "env/test.toml",
        "aurora.network.vpc_cidr",
        "`10.20.0.0/25` is not an ipv4 cidr with a prefix of /16 to /24",
    );
}

#[test]
fn example_env_variations_are_validated_like_env_files() {
    assert_error(
        example_env_with("staging", "[functions.api]\ntimeout_seconds = 60\n"),
        "env/staging.toml",
        "functions.api.timeout_seconds",
        "60 is shorter than the saga's worst case of 130 s",
    );
    assert_error(
        example_env_with("staging", "[functions.step]\ntimeout_seconds = 4\n"),
        "env/staging.toml",
        "functions.step.timeout_seconds",
        "4 is shorter than the longest step attempt (5 s, step payment)",
    );
    let changed = example_env_with("staging", "[queue]\nbatch_size = 7\n").unwrap();
    assert_eq!(changed.queue.batch_size, 7);
    assert_eq!(changed.queue, {
        let mut queue = example_env("staging").queue;
        queue.batch_size = 7;
        queue
    });
}

#[test]
fn alarms_are_checked() {
    let cases = [
        (
            "emails = [\"oncall\"]",
            "alarms.emails",
            "`oncall` is not an email address",
        ),
        (
            "emails = [\"a@example.com\", \"a@example.com\"]",
            "alarms.emails",
            "lists an address twice",
        ),
        (
            "period_seconds = 90",
            "alarms.period_seconds",
            "90 is not a multiple of 60",
        ),
        (
            "period_seconds = 3600\nevaluation_periods = 25",
            "alarms.evaluation_periods",
            "exceeds one day",
        ),
        (
            "lambda_errors = 0",
            "alarms.lambda_errors",
            "0 is outside 1..=1000000",
        ),
        (
            "aurora_capacity_percent = 101",
            "alarms.aurora_capacity_percent",
            "101 is outside 1..=100",
        ),
    ];
    for (assignment, key, reason) in cases {
        let env = format!("{VALID_AWS_ENV}\n[alarms]\n{assignment}\n");
        assert_error(load(&env), "env/test.toml", key, reason);
    }
    let env = format!("production = true\n{VALID_AWS_ENV}");
    assert_error(
        load(&env),
        "env/test.toml",
        "alarms.emails",
        "a production env needs at least one address",
    );
}

#[test]
fn tags_are_checked() {
    let env = format!("{VALID_AWS_ENV}\n[tags.extra]\nenv = \"x\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "tags.extra.env",
        "is set by sagaform itself",
    );
    let env = format!("{VALID_AWS_ENV}\n[tags.extra]\n\"aws:owner\" = \"x\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "tags.extra.\"aws:owner\"",
        "is not a tag key",
    );
    let env = format!("{VALID_AWS_ENV}\n[tags]\ncost_centre = \"\"\n");
    assert_error(
        load(&env),
        "env/test.toml",
        "tags.cost_centre",
        "is not a tag value",
    );
    let env = format!("{VALID_AWS_ENV}\n[tags.extra]\nteam = \"saga\"\n");
    assert_eq!(load(&env).unwrap().tags.extra["team"], "saga");
}

#[test]
fn missing_key_in_both_files_is_blamed_on_the_env_file() {
    let defaults = committed_defaults().replace("ttl_days = 30\n", "");
    assert_error(
        load_with(&defaults, VALID_AWS_ENV),
        "env/test.toml",
        "dynamodb.ttl_days",
        "missing integer",
    );
}

#[test]
fn env_files_are_found_in_a_folder_and_bad_names_rejected() {
    let dir = TempDir::new("env-names");
    std::fs::create_dir_all(dir.path().join("env")).unwrap();
    std::fs::write(dir.path().join("env/defaults.toml"), committed_defaults()).unwrap();
    std::fs::write(dir.path().join("env/qa.toml"), VALID_AWS_ENV).unwrap();
    std::fs::write(dir.path().join("env/notes.md"), "not an env").unwrap();
    assert_eq!(env_names(dir.path()).unwrap(), ["qa"]);
    assert_eq!(load_env(dir.path(), "qa").unwrap().name, "qa");
    std::fs::write(dir.path().join("env/Bad_Name.toml"), VALID_AWS_ENV).unwrap();
    let error = env_names(dir.path()).unwrap_err().to_string();
    assert!(error.starts_with("env/Bad_Name.toml: "), "{error}");
}

/// A folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "sagaform-config-test-{label}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
