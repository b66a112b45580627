//! The environment the generated templates give each function is the one the functions read:
//! for every pattern and every env in `env/`, each function's variables, as synthesized, are
//! parsed by the same code the function runs at init (store, SaaS services, pattern, response
//! budget). A variable renamed or dropped on one side fails here, not at a cold start on AWS.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sagaform_contract::env as vars;
use sagaform_contract::{FunctionRole, Pattern};
use sagaform_runtime::StoreConfig;
use sagaform_runtime::store::config::DatabaseLocation;
use sagaform_saas_client::SaasConfig;
use sagaform_saga::PURCHASE;
use sagaform_stacks::cfn::Properties;
use sagaform_stacks::config::{EnvConfig, StoreKind, load_all};

/// Each function's environment variables as the template sets them. A value CloudFormation
/// resolves at deploy time (a `Ref`, a `GetAtt`, a `Sub`) becomes a placeholder naming it.
fn function_environments(
    pattern: Pattern,
    env: &EnvConfig,
) -> Vec<(FunctionRole, BTreeMap<String, String>)> {
    let synthesized = sagaform_stacks::synthesize(pattern, env).unwrap();
    FunctionRole::ALL
        .into_iter()
        .filter_map(|role| {
            let resource = synthesized.template.resources.get(&role.logical_id())?;
            let Properties::Function(function) = &resource.properties else {
                panic!("{} is not a function", role.logical_id());
            };
            let variables = function
                .environment
                .variables
                .iter()
                .map(|(name, value)| {
                    let text = match value.as_str() {
                        Some(literal) => literal.to_owned(),
                        None => format!(
                            "resolved-at-deploy:{}",
                            serde_json::to_string(value).unwrap()
                        ),
                    };
                    (name.clone(), text)
                })
                .collect();
            Some((role, variables))
        })
        .collect()
}

fn shipped_envs() -> Vec<EnvConfig> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    load_all(&root).unwrap()
}

#[test]
fn every_function_reads_the_store_its_template_configures() {
    for env in shipped_envs() {
        for pattern in Pattern::ALL {
            for (role, variables) in function_environments(pattern, &env) {
                let context = format!("{pattern} {} {}", env.name, role.name());
                let store = StoreConfig::from_lookup(|name| variables.get(name).cloned())
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                match (env.store(pattern), store) {
                    (StoreKind::DynamoDb, StoreConfig::DynamoDb { saga_ttl, .. }) => {
                        assert!(saga_ttl > Duration::ZERO, "{context}");
                    }
                    (StoreKind::Aurora, StoreConfig::Aurora(location)) => {
                        let local = env.name == "local";
                        // The migration step also reads the application role's secret.
                        assert_eq!(
                            variables.contains_key(vars::DB_APP_SECRET_ARN),
                            role == FunctionRole::Migrate,
                            "{context}"
                        );
                        assert_eq!(
                            matches!(location, DatabaseLocation::Url(_)),
                            local,
                            "{context}: a URL locally, the proxy and a secret elsewhere"
                        );
                    }
                    (expected, read) => panic!("{context}: expected {expected}, read {read:?}"),
                }
            }
        }
    }
}

#[test]
fn functions_calling_the_saas_read_every_service_the_env_configures() {
    for env in shipped_envs() {
        for pattern in Pattern::ALL {
            for (role, variables) in function_environments(pattern, &env) {
                let context = format!("{pattern} {} {}", env.name, role.name());
                let runs_steps = match role {
                    FunctionRole::Api => pattern == Pattern::Orchestrator,
                    FunctionRole::Worker | FunctionRole::Step => true,
                    FunctionRole::Migrate => false,
                };
                let read = SaasConfig::from_lookup(&PURCHASE, |name| variables.get(name).cloned());
                if !runs_steps {
                    assert!(
                        read.is_err(),
                        "{context}: gets SaaS settings it does not use"
                    );
                    continue;
                }
                let read = read.unwrap_or_else(|e| panic!("{context}: {e}"));
                for service in PURCHASE.services() {
                    let written = &env.saas[service];
                    let service_config = read.service(service).unwrap();
                    assert_eq!(
                        service_config.base_url(),
                        written.url.trim_end_matches('/'),
                        "{context} {service}"
                    );
                    assert_eq!(service_config.connect_timeout(), written.connect_timeout);
                    assert_eq!(service_config.request_timeout(), written.request_timeout);
                }
            }
        }
    }
}

#[test]
fn the_api_reads_its_pattern_and_what_it_hands_sagas_to() {
    for env in shipped_envs() {
        for pattern in Pattern::ALL {
            let (_, variables) = function_environments(pattern, &env)
                .into_iter()
                .find(|(role, _)| *role == FunctionRole::Api)
                .unwrap();
            let lookup = |name: &str| variables.get(name).cloned();
            let context = format!("{pattern} {}", env.name);
            assert_eq!(
                sagaform_api::config::pattern(&lookup).unwrap(),
                pattern,
                "{context}"
            );
            let settings = sagaform_api::config::settings(&lookup).unwrap();
            let budget = u64::from(sagaform_stacks::patterns::RESPONSE_BUDGET_MILLIS);
            if pattern == Pattern::Orchestrator {
                assert_eq!(settings.response_budget, Duration::from_millis(budget));
            }
            let hands_to = [
                (Pattern::Sqs, vars::QUEUE_URL),
                (Pattern::StepFunctions, vars::STATE_MACHINE_ARN),
            ];
            for (needing, variable) in hands_to {
                assert_eq!(
                    variables.contains_key(variable),
                    needing == pattern,
                    "{context}: {variable}"
                );
            }
        }
    }
}
