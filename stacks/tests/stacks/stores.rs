//! The DynamoDB state store and what keeps data resources' data.

use crate::common;

use sagaform_contract::saga_table;
use sagaform_stacks::Pattern;
use sagaform_stacks::cfn::dynamodb::{KeyType, ProjectionType};
use sagaform_stacks::cfn::{DeletionPolicy, Properties};
use sagaform_stacks::fixtures::example_env;

use common::{all_examples, template};

#[test]
fn dynamodb_tables_follow_the_contract() {
    let template = template(Pattern::Sqs, &example_env("staging"));
    let yaml = template.to_yaml().unwrap();
    let Properties::Table(saga) = &template.resources["SagaTable"].properties else {
        panic!()
    };
    assert_eq!(saga.key_schema[0].attribute_name, "transaction_id");
    assert_eq!(saga.time_to_live_specification.attribute_name, "expires_at");
    // The index of open sagas: written by the store under the contract's names, sharded by
    // status (its partition key), sorted by creation time (which never changes), keys only.
    let index = &saga.global_secondary_indexes[0];
    assert_eq!(index.index_name, saga_table::OPEN_STATUS_INDEX);
    let keys: Vec<(&str, KeyType)> = index
        .key_schema
        .iter()
        .map(|k| (k.attribute_name.as_str(), k.key_type))
        .collect();
    assert_eq!(
        keys,
        [
            (saga_table::OPEN_STATUS_ATTRIBUTE, KeyType::Hash),
            (saga_table::CREATED_AT_ATTRIBUTE, KeyType::Range)
        ]
    );
    assert_eq!(index.projection.projection_type, ProjectionType::KeysOnly);
    assert!(
        saga.point_in_time_recovery_specification
            .point_in_time_recovery_enabled
            && saga.sse_specification.sse_enabled
    );
    let Properties::Table(idempotency) = &template.resources["IdempotencyTable"].properties else {
        panic!()
    };
    assert_eq!(idempotency.key_schema[0].attribute_name, "id");
    assert_eq!(
        idempotency.time_to_live_specification.attribute_name,
        "expiration"
    );
    assert!(yaml.contains("BillingMode: PAY_PER_REQUEST"));
}

#[test]
fn data_resources_keep_their_data_outside_local_only() {
    for (pattern, env) in all_examples() {
        let template = template(pattern, &env);
        for (id, resource) in &template.resources {
            if matches!(
                resource.properties,
                Properties::Table(_) | Properties::DbCluster(_)
            ) {
                let expected = match (env.is_local(), &resource.properties) {
                    (true, _) => DeletionPolicy::Delete,
                    (false, Properties::DbCluster(_)) => DeletionPolicy::Snapshot,
                    (false, _) => DeletionPolicy::Retain,
                };
                assert_eq!(
                    resource.deletion_policy,
                    Some(expected),
                    "{pattern} {} {id}",
                    env.name
                );
                assert_eq!(
                    resource.update_replace_policy,
                    Some(expected),
                    "{pattern} {} {id}",
                    env.name
                );
            }
        }
    }
}
