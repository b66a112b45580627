//! The Lambda functions: runtime, code and settings from env config, and the environment
//! variables the runtime reads.

use crate::common;

use sagaform_stacks::Pattern;
use sagaform_stacks::cfn::{Expr, Properties};
use sagaform_stacks::config::FunctionRole;
use sagaform_stacks::fixtures::example_env;

use common::{all_examples, env_var, template};

#[test]
fn functions_run_provided_al2023_from_the_artifact_bucket_with_config_settings() {
    for env_name in ["staging", "prod"] {
        let env = example_env(env_name);
        let template = template(Pattern::Sqs, &env);
        let Properties::Function(worker) = &template.resources["WorkerFunction"].properties else {
            panic!()
        };
        let settings = &env.functions.by_role[&FunctionRole::Worker];
        assert_eq!(
            serde_json::to_value(worker.runtime).unwrap(),
            "provided.al2023"
        );
        let architecture = serde_json::to_value(&worker.architectures).unwrap();
        assert_eq!(
            architecture,
            serde_json::json!([if env_name == "prod" {
                "x86_64"
            } else {
                "arm64"
            }])
        );
        assert!(worker.code.s3_bucket.is_ref_to("ArtifactBucket"));
        assert!(worker.code.s3_key.is_ref_to("WorkerCodeKey"));
        assert_eq!(worker.memory_size, settings.memory_mb);
        assert_eq!(u64::from(worker.timeout), settings.timeout.as_secs());
        assert_eq!(
            worker.reserved_concurrent_executions,
            settings.reserved_concurrency
        );
        assert_eq!(
            serde_json::to_value(worker.logging_config.log_format).unwrap(),
            "JSON"
        );
        assert!(
            template.parameters.contains_key("ApiCodeKey")
                && !template.parameters.contains_key("StepCodeKey")
        );
    }
}

#[test]
fn environment_variables_hold_only_non_secret_config() {
    for (pattern, env) in all_examples() {
        let template = template(pattern, &env);
        for (id, resource) in &template.resources {
            let Properties::Function(function) = &resource.properties else {
                continue;
            };
            for (name, value) in &function.environment.variables {
                assert!(
                    !name.contains("PASSWORD") && !name.ends_with("_SECRET"),
                    "{id}: {name}"
                );
                if let Some(text) = value.as_str() {
                    assert!(!text.to_lowercase().contains("password"), "{id}: {name}");
                }
            }
            assert_eq!(
                env_var(&template, id, "SAGAFORM_PATTERN"),
                Some(&Expr::str(pattern.name()))
            );
        }
    }
}

#[test]
fn store_variables_follow_the_contract() {
    let staging = example_env("staging");
    let sqs = template(Pattern::Sqs, &staging);
    assert!(
        env_var(&sqs, "WorkerFunction", "SAGAFORM_SAGA_TABLE")
            .unwrap()
            .is_ref_to("SagaTable")
    );
    assert!(
        env_var(&sqs, "WorkerFunction", "SAGAFORM_IDEMPOTENCY_TABLE")
            .unwrap()
            .is_ref_to("IdempotencyTable")
    );
    assert_eq!(
        env_var(&sqs, "WorkerFunction", "SAGAFORM_SAGA_TTL_SECONDS"),
        Some(&Expr::str("2592000"))
    );
    assert_eq!(
        env_var(
            &sqs,
            "WorkerFunction",
            "SAGAFORM_SAAS_PAYMENTS_REQUEST_TIMEOUT_MS"
        ),
        Some(&Expr::str("5000"))
    );
    assert!(
        env_var(&sqs, "ApiFunction", "SAGAFORM_QUEUE_URL")
            .unwrap()
            .is_ref_to("WorkQueue")
    );

    let orchestrator = template(Pattern::Orchestrator, &staging);
    assert!(
        env_var(&orchestrator, "ApiFunction", "SAGAFORM_DB_HOST")
            .unwrap()
            .is_get_att_of("DatabaseProxy", "Endpoint")
    );
    // The functions log in as the application role; only the migration step uses the owner.
    assert!(
        env_var(&orchestrator, "ApiFunction", "SAGAFORM_DB_SECRET_ARN")
            .unwrap()
            .is_ref_to("DatabaseAppSecret")
    );
    assert!(
        env_var(&orchestrator, "MigrateFunction", "SAGAFORM_DB_SECRET_ARN")
            .unwrap()
            .is_get_att_of("DatabaseCluster", "MasterUserSecret.SecretArn")
    );
    assert!(
        env_var(
            &orchestrator,
            "MigrateFunction",
            "SAGAFORM_DB_APP_SECRET_ARN"
        )
        .unwrap()
        .is_ref_to("DatabaseAppSecret")
    );
    assert_eq!(
        env_var(&orchestrator, "ApiFunction", "SAGAFORM_STORE"),
        Some(&Expr::str("aurora"))
    );

    let steps = template(Pattern::StepFunctions, &staging);
    assert!(
        env_var(&steps, "ApiFunction", "SAGAFORM_STATE_MACHINE_ARN")
            .unwrap()
            .is_ref_to("StateMachine")
    );
}
