//! `saga show` against real backends: saga records in DynamoDB (moto) and PostgreSQL (the local
//! server), and a Step Functions execution named by the transaction id (moto runs a Pass state).

use std::collections::BTreeMap;
use std::time::Duration;

use sagaform_ops::saga::{self, ShowOptions};
use sagaform_ops::{Deployed, OpsError};
use sagaform_runtime::store::{DynamoStore, PostgresSettings, PostgresStore};
use sagaform_runtime::{SagaRecord, SagaStatus, SagaStore, StepStatus};
use sagaform_saga::PURCHASE;
use sagaform_stacks::Pattern;
use sagaform_stacks::config::StoreKind;
use sagaform_testkit::{DEFAULT_DATABASE_URL, aws_config, create_state_machine, sfn_client};
use serde_json::json;

/// A deployed stack as `Deployed::open` would describe it, pointing at the test backends.
fn deployed(pattern: Pattern, store: StoreKind, outputs: &[(&str, &str)]) -> Deployed {
    Deployed {
        pattern,
        env_name: "staging".to_owned(),
        local: false,
        production: false,
        stack_name: format!("sagaform-{}-staging", pattern.name()),
        region: "us-east-1".to_owned(),
        endpoint_url: Some(sagaform_testkit::moto().endpoint()),
        store,
        database_name: "sagaform".to_owned(),
        outputs: outputs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        parameters: BTreeMap::new(),
        aws: aws_config(),
    }
}

/// A saga that failed at `payment` and is compensating: stock reserved, payment failed.
async fn compensating_saga(store: &impl SagaStore) -> SagaRecord {
    let transaction_id = uuid::Uuid::now_v7().to_string();
    let request = json!({"player_id": "p-1", "item_id": "sword", "quantity": 1, "amount_minor": 500, "currency": "JPY"});
    let record = SagaRecord::new(&PURCHASE, &transaction_id, request);
    store.create(&record).await.expect("create the saga");
    let mut record = store
        .get(&transaction_id)
        .await
        .expect("read")
        .expect("exists");
    record.status = SagaStatus::Compensating;
    record.error = Some("payment: card declined".to_owned());
    record.steps[0].status = StepStatus::Succeeded;
    record.steps[0].attempts = 1;
    record.steps[0].updated_at = Some(record.updated_at.clone());
    record.steps[1].status = StepStatus::Failed;
    record.steps[1].attempts = 3;
    record.steps[1].error = Some("card declined (402)".to_owned());
    record.steps[1].updated_at = Some(record.updated_at.clone());
    store.transition(&record).await.expect("record the failure");
    store
        .get(&transaction_id)
        .await
        .expect("read")
        .expect("exists")
}

fn dynamo_store() -> DynamoStore {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws_config()),
        format!("sagas-{suffix}"),
        format!("idempotency-{suffix}"),
        Duration::from_secs(3600),
    )
}

#[tokio::test]
async fn show_reads_a_dynamodb_saga_with_step_statuses_errors_and_cloudwatch_pointers() {
    let store = dynamo_store();
    store.create_tables().await.expect("create the tables");
    let saga = compensating_saga(&store).await;
    let deployed = deployed(
        Pattern::Sqs,
        StoreKind::DynamoDb,
        &[("SagaTableName", store.saga_table())],
    );

    let report = saga::show(&deployed, &saga.transaction_id, &ShowOptions::default())
        .await
        .expect("show the saga");

    assert_eq!(report.saga.as_ref(), Some(&saga));
    assert!(
        report.store.contains(store.saga_table()),
        "{}",
        report.store
    );
    assert_eq!(report.execution, None);
    let groups: Vec<&str> = report
        .logs
        .log_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(
        groups,
        [
            "/aws/lambda/sagaform-sqs-staging-api",
            "/aws/lambda/sagaform-sqs-staging-worker"
        ]
    );
    let command = &report.logs.log_groups[1].command;
    assert!(
        command.contains(&format!("--filter-pattern '\"{}\"'", saga.transaction_id))
            && command.contains("--region us-east-1")
            && !command.contains("$(date"),
        "the command filters on the saga from its creation time: {command}"
    );
    let text = saga::render(&report);
    assert!(text.contains("status: COMPENSATING"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("payment")
            && l.contains("FAILED")
            && l.contains("card declined (402)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("stock") && l.contains("SUCCEEDED")),
        "{text}"
    );
    let json = serde_json::to_value(&report).expect("the report serializes");
    assert_eq!(json["saga"]["steps"][1]["status"], "FAILED");
}

#[tokio::test]
async fn show_says_there_is_no_saga_for_an_unknown_transaction_id() {
    let store = dynamo_store();
    store.create_tables().await.expect("create the tables");
    let deployed = deployed(
        Pattern::Orchestrator,
        StoreKind::DynamoDb,
        &[("SagaTableName", store.saga_table())],
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let report = saga::show(&deployed, &unknown, &ShowOptions::default())
        .await
        .expect("show");
    assert_eq!(report.saga, None);
    assert!(saga::render(&report).contains("no saga with this transaction id"));
}

#[tokio::test]
async fn show_refuses_an_id_that_is_not_a_transaction_id() {
    let deployed = deployed(Pattern::Sqs, StoreKind::DynamoDb, &[("SagaTableName", "t")]);
    let error = saga::show(&deployed, "x'; rm -rf ~", &ShowOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, OpsError::InvalidInput(_)), "{error}");
}

#[tokio::test]
async fn show_reads_a_postgresql_saga_through_the_local_stacks_database_url() {
    let (admin, connection) = tokio_postgres::connect(DEFAULT_DATABASE_URL, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL must run at {DEFAULT_DATABASE_URL} (trust auth): {e}")
        });
    tokio::spawn(connection);
    let database = format!("sagaform_ops_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("create a test database");
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    sagaform_runtime::store::migrate(&PostgresSettings::from_url(&url).expect("url"), None)
        .await
        .expect("migrate");
    let store = PostgresStore::connect(PostgresSettings::from_url(&url).expect("url"))
        .await
        .expect("connect");
    let saga = compensating_saga(&store).await;
    let mut deployed = deployed(Pattern::Orchestrator, StoreKind::Aurora, &[]);
    deployed.local = true;
    deployed.env_name = "local".to_owned();
    deployed
        .parameters
        .insert(saga::LOCAL_DATABASE_URL_PARAMETER.to_owned(), url.clone());

    let report = saga::show(&deployed, &saga.transaction_id, &ShowOptions::default()).await;
    drop(store);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await;
    let report = report.expect("show the saga");

    assert_eq!(report.saga.as_ref(), Some(&saga));
    assert!(report.store.contains(&database), "{}", report.store);
    assert_eq!(
        report.logs.local_command.as_deref(),
        Some(
            format!(
                "cargo xtask local logs --transaction {}",
                saga.transaction_id
            )
            .as_str()
        )
    );
    assert!(report.logs.log_groups.is_empty());
    let text = saga::render(&report);
    assert!(text.contains("card declined (402)"), "{text}");
}

#[tokio::test]
async fn show_gives_the_execution_named_by_the_transaction_id_with_its_history() {
    let store = dynamo_store();
    store.create_tables().await.expect("create the tables");
    let saga = compensating_saga(&store).await;
    let state_machine_arn = create_state_machine().await;
    let sfn = sfn_client();
    sfn.start_execution()
        .state_machine_arn(&state_machine_arn)
        .name(&saga.transaction_id)
        .input(json!({"transaction_id": saga.transaction_id, "request": saga.request}).to_string())
        .send()
        .await
        .expect("start the execution");
    let other = create_state_machine().await;
    let execution_arn = saga::execution_arn(&state_machine_arn, &saga.transaction_id).unwrap();
    // moto runs the Pass state in the background; wait for it to finish (bounded).
    for _ in 0..100 {
        let status = sfn
            .describe_execution()
            .execution_arn(&execution_arn)
            .send()
            .await
            .expect("describe")
            .status;
        if status.as_str() != "RUNNING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deployed = deployed(
        Pattern::StepFunctions,
        StoreKind::DynamoDb,
        &[
            ("SagaTableName", store.saga_table()),
            ("StateMachineArn", &state_machine_arn),
        ],
    );

    let report = saga::show(&deployed, &saga.transaction_id, &ShowOptions::default())
        .await
        .expect("show the saga");

    let execution = report.execution.as_ref().expect("the execution is found");
    assert_eq!(execution.execution_arn, execution_arn);
    assert_eq!(execution.status, "SUCCEEDED");
    let events: Vec<(&str, Option<&str>)> = execution
        .history
        .iter()
        .map(|e| (e.event_type.as_str(), e.state.as_deref()))
        .collect();
    assert_eq!(
        events.first(),
        Some(&("ExecutionStarted", None)),
        "{events:?}"
    );
    assert!(
        events.contains(&("PassStateEntered", Some("Accepted"))),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&("ExecutionSucceeded", None)),
        "{events:?}"
    );
    assert!(
        report
            .logs
            .log_groups
            .iter()
            .any(|g| g.name == "/aws/vendedlogs/states/sagaform-stepfunctions-staging"),
        "{:?}",
        report.logs
    );
    let text = saga::render(&report);
    assert!(text.contains("execution: SUCCEEDED"), "{text}");
    assert!(text.contains("PassStateEntered  Accepted"), "{text}");

    // Another state machine has no execution with that name.
    let none = saga::execution_report(&sfn, &other, &saga.transaction_id, true)
        .await
        .expect("describe");
    assert_eq!(none, None);
}

#[test]
fn execution_arns_are_derived_from_the_state_machine_arn_and_the_transaction_id() {
    assert_eq!(
        saga::execution_arn(
            "arn:aws:states:ap-northeast-1:111122223333:stateMachine:sagaform-stepfunctions-prod",
            "0190-ab"
        )
        .unwrap(),
        "arn:aws:states:ap-northeast-1:111122223333:execution:sagaform-stepfunctions-prod:0190-ab"
    );
    assert!(saga::execution_arn("arn:aws:sqs:x", "id").is_err());
}
