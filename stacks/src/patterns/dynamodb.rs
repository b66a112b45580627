//! The DynamoDB state store: the saga table (keyed by `transaction_id`, with a `version`
//! attribute for conditional transitions, the index of open sagas to find stuck ones, and TTL)
//! and the idempotency table, both on demand, with PITR, KMS encryption and, outside `local`,
//! kept on stack deletion and replacement. Each table has throttle and system-error alarms.

use sagaform_contract::env as vars;
use sagaform_contract::template::outputs;

use crate::cfn::cloudwatch::{ComparisonOperator, Dimension, Statistic};
use crate::cfn::dynamodb::{
    AttributeDefinition, AttributeType, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, PointInTimeRecoverySpecification, Projection, ProjectionType, SseSpecification,
    SseType, Table, TimeToLiveSpecification,
};
use crate::cfn::iam::{Action, Statement, actions};
use crate::cfn::{CfnError, Expr, Resource};
use crate::config::EnvConfig;

use super::alerting::{AlarmSpec, Watched, add_alarm, dimension};
use super::{StackBuilder, StoreAccess};

/// Logical id of the saga table.
pub const SAGA_TABLE: &str = "SagaTable";
/// Logical id of the idempotency table.
pub const IDEMPOTENCY_TABLE: &str = "IdempotencyTable";
pub use sagaform_contract::saga_table::OPEN_STATUS_INDEX;
use sagaform_contract::saga_table::{CREATED_AT_ATTRIBUTE, OPEN_STATUS_ATTRIBUTE};

/// The operations the functions run on the saga table: granted, and watched for system errors.
const SAGA_TABLE_OPERATIONS: [Action; 4] = [
    actions::DYNAMODB_GET_ITEM,
    actions::DYNAMODB_PUT_ITEM,
    actions::DYNAMODB_UPDATE_ITEM,
    actions::DYNAMODB_QUERY,
];
/// The operation, beyond the granted ones, that the functions run on both tables: a saga is
/// created and its idempotency record completed in one transaction. It needs no grant of its
/// own (IAM checks the Put and Update inside it) but DynamoDB reports its system errors under
/// its own `Operation` dimension.
const TRANSACTION_OPERATION: &str = "TransactWriteItems";
/// The operations the functions run on the idempotency table.
const IDEMPOTENCY_TABLE_OPERATIONS: [Action; 4] = [
    actions::DYNAMODB_GET_ITEM,
    actions::DYNAMODB_PUT_ITEM,
    actions::DYNAMODB_UPDATE_ITEM,
    actions::DYNAMODB_DELETE_ITEM,
];

/// Adds both tables, their alarms and outputs.
pub(super) fn add_tables(stack: &mut StackBuilder<'_>) -> Result<StoreAccess, CfnError> {
    let saga_table = saga_table(stack);
    stack.add(
        SAGA_TABLE,
        Resource::new(saga_table).with_policies(stack.data_policy()),
    )?;
    add_table_alarms(
        stack,
        SAGA_TABLE,
        "saga",
        &SAGA_TABLE_OPERATIONS,
        &[OPEN_STATUS_INDEX],
    )?;
    let idempotency_table = idempotency_table(stack);
    stack.add(
        IDEMPOTENCY_TABLE,
        Resource::new(idempotency_table).with_policies(stack.data_policy()),
    )?;
    add_table_alarms(
        stack,
        IDEMPOTENCY_TABLE,
        "idempotency",
        &IDEMPOTENCY_TABLE_OPERATIONS,
        &[],
    )?;
    add_table_outputs(stack)?;
    Ok(function_access(stack.env))
}

/// A string attribute, the only type the keys use.
fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition {
        attribute_name: name.to_owned(),
        attribute_type: AttributeType::String,
    }
}

/// A key schema element.
fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement {
        attribute_name: name.to_owned(),
        key_type,
    }
}

/// The saga table: keyed by `transaction_id`, with the index of open sagas to find those stuck
/// or waiting for a human, and TTL on `expires_at`. The index is sparse (finished sagas leave
/// it), sharded (`RUNNING#7`: the sagas of one status spread over several partitions instead of
/// all writing to one), sorted by the creation time (which never changes, so a step's write does
/// not touch the index) and keys only (an entry is a few bytes, not a copy of the saga);
/// see [`sagaform_contract::saga_table`].
fn saga_table(stack: &StackBuilder<'_>) -> Table {
    let open_index = GlobalSecondaryIndex {
        index_name: OPEN_STATUS_INDEX.to_owned(),
        key_schema: vec![
            key(OPEN_STATUS_ATTRIBUTE, KeyType::Hash),
            key(CREATED_AT_ATTRIBUTE, KeyType::Range),
        ],
        projection: Projection {
            projection_type: ProjectionType::KeysOnly,
        },
    };
    table(
        stack,
        &[
            "transaction_id",
            OPEN_STATUS_ATTRIBUTE,
            CREATED_AT_ATTRIBUTE,
        ],
        vec![open_index],
        "expires_at",
    )
}

/// The idempotency table: keyed by `id`, with TTL on `expiration`.
fn idempotency_table(stack: &StackBuilder<'_>) -> Table {
    table(stack, &["id"], Vec::new(), "expiration")
}

/// An on-demand table with string `attributes`, keyed by the first of them, expiring items by
/// `ttl_attribute`; both tables are encrypted with KMS, recoverable to a point in time and, in
/// production, protected from deletion.
fn table(
    stack: &StackBuilder<'_>,
    attributes: &[&str],
    global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    ttl_attribute: &str,
) -> Table {
    Table {
        table_name: None,
        billing_mode: BillingMode::PayPerRequest,
        attribute_definitions: attributes.iter().copied().map(string_attribute).collect(),
        key_schema: vec![key(attributes[0], KeyType::Hash)],
        global_secondary_indexes,
        time_to_live_specification: TimeToLiveSpecification {
            attribute_name: ttl_attribute.to_owned(),
            enabled: true,
        },
        point_in_time_recovery_specification: PointInTimeRecoverySpecification {
            point_in_time_recovery_enabled: true,
        },
        sse_specification: SseSpecification {
            sse_enabled: true,
            sse_type: SseType::Kms,
        },
        deletion_protection_enabled: stack.env.production,
        tags: stack.tags.list(),
    }
}

/// The tables' names, for operators and the ops tools.
fn add_table_outputs(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    stack.output(
        outputs::SAGA_TABLE_NAME,
        "DynamoDB table of saga state.",
        Expr::reference(SAGA_TABLE),
    )?;
    stack.output(
        outputs::IDEMPOTENCY_TABLE_NAME,
        "DynamoDB table of idempotency records.",
        Expr::reference(IDEMPOTENCY_TABLE),
    )
}

/// What the functions get: the table names and the saga TTL as variables, and the operations
/// they run on each table (and the status index), nothing more.
fn function_access(env: &EnvConfig) -> StoreAccess {
    StoreAccess {
        variables: vec![
            (vars::SAGA_TABLE.to_owned(), Expr::reference(SAGA_TABLE)),
            (
                vars::IDEMPOTENCY_TABLE.to_owned(),
                Expr::reference(IDEMPOTENCY_TABLE),
            ),
            (
                vars::SAGA_TTL_SECONDS.to_owned(),
                Expr::str(env.dynamodb.ttl.as_secs().to_string()),
            ),
        ],
        statements: vec![
            Statement::allow(
                "ReadWriteSagaTable",
                SAGA_TABLE_OPERATIONS.to_vec(),
                vec![
                    Expr::get_att(SAGA_TABLE, "Arn"),
                    Expr::sub(format!("${{{SAGA_TABLE}.Arn}}/index/{OPEN_STATUS_INDEX}")),
                ],
            ),
            Statement::allow(
                "ReadWriteIdempotencyTable",
                IDEMPOTENCY_TABLE_OPERATIONS.to_vec(),
                vec![Expr::get_att(IDEMPOTENCY_TABLE, "Arn")],
            ),
        ],
        vpc: None,
    }
}

/// The throttles and system-errors alarms of `table` (`short` names it in the runbook), watching
/// its `indexes` too and the `operations` the functions run on it.
fn add_table_alarms(
    stack: &mut StackBuilder<'_>,
    table: &str,
    short: &str,
    operations: &[Action],
    indexes: &[&str],
) -> Result<(), CfnError> {
    add_throttles_alarm(stack, table, short, indexes)?;
    add_system_errors_alarm(stack, table, short, operations)
}

/// The total over the period of DynamoDB `metrics` (name and dimensions), shown as `label`.
fn dynamodb_sum(metrics: Vec<(String, Vec<Dimension>)>, label: String) -> Watched {
    Watched::SumOf {
        namespace: "AWS/DynamoDB".to_owned(),
        metrics,
        statistic: Statistic::Sum,
        label,
    }
}

/// The read and write throttle events of `table` and of each of its `indexes`.
fn throttle_metrics(table: &str, indexes: &[&str]) -> Vec<(String, Vec<Dimension>)> {
    // DynamoDB reports a global secondary index's throttles under the table and the index name,
    // not in the table's own figures; a throttled index also slows writes to its table.
    let mut throttle_metrics = Vec::new();
    for index in std::iter::once(None).chain(indexes.iter().copied().map(Some)) {
        for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
            let mut dimensions = vec![dimension("TableName", Expr::reference(table))];
            if let Some(index) = index {
                dimensions.push(dimension("GlobalSecondaryIndexName", Expr::str(index)));
            }
            throttle_metrics.push((metric.to_owned(), dimensions));
        }
    }
    throttle_metrics
}

/// The alarm on throttled requests to `table` or its indexes: on-demand tables throttle on
/// sudden traffic jumps and hot keys.
fn add_throttles_alarm(
    stack: &mut StackBuilder<'_>,
    table: &str,
    short: &str,
    indexes: &[&str],
) -> Result<(), CfnError> {
    let throttles = stack.env.alarms.dynamodb_throttles;
    let mut look_at = vec![
        format!("The `{table}` table's metrics in CloudWatch (`ConsumedReadCapacityUnits`, `ConsumedWriteCapacityUnits`, throttle events by operation)."),
        "Function logs around the alarm time; retried writes show up as repeated lines with the same `transaction_id`.".to_owned(),
    ];
    for index in indexes {
        look_at.push(format!(
            "The `{index}` index's throttle events: it holds only open sagas, keyed by status and shard (`RUNNING#0` to `RUNNING#{}`), and is written only when a saga's status changes; sustained throttling there means more shards (`STATUS_SHARDS` in the contract crate, a new index name).", sagaform_contract::saga_table::STATUS_SHARDS - 1
        ));
    }
    let index_names = if indexes.is_empty() {
        String::new()
    } else {
        format!(" or its index `{}`", indexes.join("`, `"))
    };
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: format!("{table}ThrottlesAlarm"),
            anchor: format!("{short}-table-throttles"),
            title: format!("{short} table throttles"),
            meaning: format!(
                "Requests to the {short} table{index_names} were throttled (read plus write throttle events reached {throttles} in a period); on-demand tables throttle on sudden traffic jumps or hot keys."
            ),
            watched: dynamodb_sum(
                throttle_metrics(table, indexes),
                format!("{short} table throttle events"),
            ),
            threshold: f64::from(throttles),
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            look_at,
            commands: vec![
                stack.stuck_sagas_command("RUNNING"),
                stack.saga_show_command(),
            ],
        },
    )
}

/// The alarm on HTTP 500 answers of DynamoDB to any of the `operations` on `table`, or to the
/// transactions spanning both tables: an AWS-side problem that delays sagas.
fn add_system_errors_alarm(
    stack: &mut StackBuilder<'_>,
    table: &str,
    short: &str,
    operations: &[Action],
) -> Result<(), CfnError> {
    let metrics = operations
        .iter()
        .map(|action| action.name.as_ref())
        .chain([TRANSACTION_OPERATION])
        .map(|operation| {
            (
                "SystemErrors".to_owned(),
                vec![
                    dimension("TableName", Expr::reference(table)),
                    dimension("Operation", Expr::str(operation)),
                ],
            )
        })
        .collect();
    add_alarm(
        stack,
        AlarmSpec {
            logical_id: format!("{table}SystemErrorsAlarm"),
            anchor: format!("{short}-table-system-errors"),
            title: format!("{short} table system errors"),
            meaning: format!(
                "DynamoDB answered requests to the {short} table with HTTP 500 errors (an AWS-side problem); the functions' SDK retries them, sagas may be delayed."
            ),
            watched: dynamodb_sum(metrics, format!("{short} table system errors")),
            threshold: 0.0,
            comparison: ComparisonOperator::GreaterThanThreshold,
            look_at: vec![
                "The AWS Health Dashboard for DynamoDB in the stack's region.".to_owned(),
                "Sagas left RUNNING or COMPENSATING since the alarm started.".to_owned(),
            ],
            commands: vec![
                stack.stuck_sagas_command("RUNNING"),
                stack.stuck_sagas_command("COMPENSATING"),
                stack.saga_show_command(),
            ],
        },
    )
}
