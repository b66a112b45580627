//! The PostgreSQL (Aurora) store against a real server: the shared store contract, the embedded
//! migrations, and the operations views.

use crate::common;

use common::store_contract as contract;
use sagaform_contract::database::DatabaseSecret;
use sagaform_runtime::model::{SagaRecord, SagaStatus, StepStatus, new_transaction_id, rfc3339};
use sagaform_runtime::store::{
    AppRole, ConfiguredStore, PostgresSettings, PostgresStore, SagaStore, SecretSource, migrate,
};
use sagaform_saga::PURCHASE;
use sagaform_testkit::{
    Backend, DEFAULT_DATABASE_URL, TestStore, admin_client, assert_refused, aws_config, client_as,
    purchase, settings_for,
};
use std::time::{Duration, SystemTime};

async fn store() -> TestStore {
    TestStore::new(Backend::Postgres).await
}

#[tokio::test]
async fn a_created_saga_reads_back_field_for_field() {
    contract::a_created_saga_reads_back_field_for_field(&store().await).await;
}

#[tokio::test]
async fn a_second_create_is_refused_and_keeps_the_first() {
    contract::a_second_create_is_refused_and_keeps_the_first(&store().await).await;
}

#[tokio::test]
async fn a_stale_writer_loses_the_version_race_and_changes_nothing() {
    contract::a_stale_writer_loses_the_version_race_and_changes_nothing(&store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_writers_from_one_version_exactly_one_wins() {
    contract::of_concurrent_writers_from_one_version_exactly_one_wins(&store().await).await;
}

#[tokio::test]
async fn a_transition_of_an_unknown_saga_is_not_found() {
    contract::a_transition_of_an_unknown_saga_is_not_found(&store().await).await;
}

#[tokio::test]
async fn stuck_sagas_are_active_ones_not_updated_for_a_while() {
    contract::stuck_sagas_are_active_ones_not_updated_for_a_while(&store().await).await;
}

#[tokio::test]
async fn creating_a_saga_completes_the_idempotency_record_atomically() {
    contract::creating_a_saga_completes_the_idempotency_record_atomically(&store().await).await;
}

fn postgres(t: &TestStore) -> &PostgresStore {
    match t.store() {
        ConfiguredStore::Postgres(store) => store,
        ConfiguredStore::DynamoDb(_) => unreachable!("a postgres test store"),
    }
}

/// A new, empty schema of this test on the tests' server, and a connection to drop it with.
async fn empty_schema() -> (tokio_postgres::Client, String) {
    let admin = admin_client().await.unwrap_or_else(|m| panic!("{m}"));
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    (admin, schema)
}

/// Settings whose tables are created and looked up in `schema`.
fn settings_in(schema: &str) -> PostgresSettings {
    let mut settings = PostgresSettings::from_url(DEFAULT_DATABASE_URL).unwrap();
    settings.config.options(format!("-c search_path={schema}"));
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migration_steps_running_at_once_apply_each_migration_exactly_once() {
    let (admin, schema) = empty_schema().await;
    let settings = || settings_in(&schema);
    let mut steps = Vec::new();
    for _ in 0..4 {
        let settings = settings();
        steps.push(tokio::spawn(async move { migrate(&settings, None).await }));
    }
    let mut applied = Vec::new();
    for step in steps {
        applied.extend(
            step.await
                .unwrap()
                .expect("every concurrent migration step succeeds"),
        );
    }
    applied.sort_unstable();
    assert_eq!(applied, [1, 2, 3, 4], "each migration applied by one step");
    let store = PostgresStore::connect(settings()).await.unwrap();
    assert_eq!(store.applied_migrations().await.unwrap(), [1, 2, 3, 4]);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_store_never_migrates_and_names_the_deploy_step_when_the_schema_is_missing() {
    let (admin, schema) = empty_schema().await;
    let error = PostgresStore::connect(settings_in(&schema))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "database schema version 0 is older than this binary needs (4); run the database migration step (`cargo xtask deploy` runs it before the functions start)"
    );
    let tables = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .unwrap();
    assert_eq!(tables.get::<_, i64>(0), 0, "connecting created nothing");
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A login role of this test only, dropped with everything granted to it when the test ends.
struct TestRole {
    name: String,
}

impl TestRole {
    async fn create(admin: &tokio_postgres::Client, label: &str) -> TestRole {
        let name = format!("sagaform_{label}_{}", uuid::Uuid::now_v7().simple());
        admin
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .unwrap();
        TestRole { name }
    }

    /// Drops the role after revoking what it holds in `database` (a role with privileges cannot
    /// be dropped).
    async fn drop_from(self, database_client: &tokio_postgres::Client) {
        database_client
            .batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", self.name))
            .await
            .unwrap();
    }
}

/// Settings for `database` whose sessions are told apart from the test store's own by their
/// application name.
fn observed_settings(database: &str) -> PostgresSettings {
    let mut settings = settings_for(database);
    settings
        .config
        .application_name(format!("observed-{database}"));
    settings
}

/// The users of the sessions opened with [`observed_settings`].
async fn session_users(admin: &tokio_postgres::Client, database: &str) -> Vec<String> {
    admin
        .query(
            "SELECT usename::text FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("observed-{database}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn the_application_role_reads_and_writes_sagas_but_cannot_change_the_schema() {
    let t = store().await;
    let database = t.database().unwrap().to_owned();
    let owner = t.sql_client().await;
    let admin = admin_client().await.unwrap();
    let role = AppRole {
        name: format!("sagaform_app_{}", uuid::Uuid::now_v7().simple()),
        password: Some("not-checked-under-trust".to_owned()),
    };
    // Twice: the second run finds the role and grants again without failing.
    for _ in 0..2 {
        migrate(&settings_for(&database), Some(&role))
            .await
            .unwrap();
    }
    let mut as_app = observed_settings(&database);
    as_app.config.user(&role.name);
    let store = PostgresStore::connect(as_app).await.unwrap();
    assert_eq!(
        session_users(&admin, &database).await,
        std::slice::from_ref(&role.name)
    );
    let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    store.create(&record).await.unwrap();
    let mut next = store.get(&record.transaction_id).await.unwrap().unwrap();
    next.status = SagaStatus::Running;
    next.steps[0].status = StepStatus::Succeeded;
    store.transition(&next).await.unwrap();
    assert_eq!(
        store
            .list_by_status(SagaStatus::Running, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let app = client_as(&role.name, &database).await;
    for ddl in [
        "CREATE TABLE sneaky (id int)",
        "DROP TABLE saga_steps",
        "ALTER TABLE sagas ADD COLUMN sneaky int",
        "TRUNCATE sagas CASCADE",
        "DELETE FROM schema_migrations",
    ] {
        assert_refused(app.batch_execute(ddl).await, ddl);
    }
    assert!(store.get(&record.transaction_id).await.unwrap().is_some());
    drop(app);
    drop(store);
    owner
        .batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", role.name))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reconnect_refused_after_a_rotation_reads_the_secret_again() {
    let t = store().await;
    let database = t.database().unwrap().to_owned();
    let owner = t.sql_client().await;
    let admin = admin_client().await.unwrap();
    // Trust authentication accepts any password, but refuses a role without LOGIN with
    // SQLSTATE 28000: a rotation is a secret naming another login role.
    let first = TestRole::create(&admin, "rotated").await;
    let second = TestRole::create(&admin, "rotation").await;
    for role in [&first, &second] {
        migrate(
            &settings_for(&database),
            Some(&AppRole {
                name: role.name.clone(),
                password: None,
            }),
        )
        .await
        .unwrap();
    }
    let secrets = aws_sdk_secretsmanager::Client::new(&aws_config());
    let secret_name = format!("sagaform-test-{}", uuid::Uuid::now_v7().simple());
    let value = |role: &TestRole| {
        serde_json::to_string(&DatabaseSecret {
            username: role.name.clone(),
            password: "whatever".to_owned(),
        })
        .unwrap()
    };
    let arn = secrets
        .create_secret()
        .name(&secret_name)
        .secret_string(value(&first))
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let store = PostgresStore::connect_with_secret(
        observed_settings(&database),
        SecretSource::new(secrets.clone(), arn.clone()),
    )
    .await
    .unwrap();
    let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    store.create(&record).await.unwrap();
    assert_eq!(
        session_users(&admin, &database).await,
        std::slice::from_ref(&first.name)
    );

    // The rotation: the old credentials stop working, the secret names new ones, and the proxy
    // (here the server) closes the store's connection.
    admin
        .batch_execute(&format!("ALTER ROLE {} NOLOGIN", first.name))
        .await
        .unwrap();
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(value(&second))
        .send()
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("observed-{database}")],
        )
        .await
        .unwrap();
    // Let the driver see the close, so the next operation is a reconnect rather than a failed
    // statement on the dead connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let found = store
        .get(&record.transaction_id)
        .await
        .expect("the reconnect reads the rotated secret and logs in with it");
    assert!(found.is_some());
    assert_eq!(
        session_users(&admin, &database).await,
        std::slice::from_ref(&second.name)
    );
    drop(store);
    first.drop_from(&owner).await;
    second.drop_from(&owner).await;
}

#[tokio::test]
async fn step_rows_are_unique_per_saga_so_a_repeated_write_lands_on_the_same_rows() {
    let t = store().await;
    let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    t.store().create(&record).await.unwrap();
    let mut next = t
        .store()
        .get(&record.transaction_id)
        .await
        .unwrap()
        .unwrap();
    next.status = SagaStatus::Running;
    next.steps[0].status = StepStatus::Succeeded;
    t.store().transition(&next).await.unwrap();
    let sql = t.sql_client().await;
    let rows = sql
        .query(
            "SELECT count(*) FROM saga_steps WHERE transaction_id = $1",
            &[&record.transaction_id],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 3);
    let duplicate = sql
        .execute(
            "INSERT INTO saga_steps (transaction_id, step_index, step_name, status, attempts)
             VALUES ($1, 0, 'stock', 'PENDING', 0)",
            &[&record.transaction_id],
        )
        .await;
    assert!(
        duplicate.is_err(),
        "a second row for the same step must be refused"
    );
}

#[tokio::test]
async fn operations_views_show_status_counts_stuck_sagas_and_failures_per_step() {
    let t = store().await;
    let hour_ago = rfc3339(SystemTime::now() - Duration::from_secs(3600));
    let mut stuck = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    stuck.status = SagaStatus::Running;
    stuck.updated_at = hour_ago;
    let mut compensated = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    compensated.status = SagaStatus::Compensated;
    compensated.steps[2].status = StepStatus::Compensated;
    compensated.steps[2].error = Some("payment declined".into());
    let mut failed = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    failed.status = SagaStatus::CompensationFailed;
    failed.steps[1].status = StepStatus::CompensationFailed;
    failed.steps[1].error = Some("compensation: refund refused".into());
    for record in [&stuck, &compensated, &failed] {
        t.store().create(record).await.unwrap();
    }
    let sql = t.sql_client().await;

    let by_status = sql
        .query(
            "SELECT status, sagas FROM sagas_by_status ORDER BY status",
            &[],
        )
        .await
        .unwrap();
    let by_status: Vec<(String, i64)> = by_status.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        by_status,
        [
            ("COMPENSATED".into(), 1),
            ("COMPENSATION_FAILED".into(), 1),
            ("RUNNING".into(), 1)
        ]
    );

    let stuck_rows = sql
        .query("SELECT transaction_id FROM stuck_sagas", &[])
        .await
        .unwrap();
    assert_eq!(stuck_rows.len(), 1);
    assert_eq!(stuck_rows[0].get::<_, String>(0), stuck.transaction_id);
    sql.batch_execute("SET sagaform.stuck_after = '2 hours'")
        .await
        .unwrap();
    assert!(
        sql.query("SELECT transaction_id FROM stuck_sagas", &[])
            .await
            .unwrap()
            .is_empty()
    );

    let failures = sql
        .query(
            "SELECT step_name, action_failures, compensation_failures FROM step_failures ORDER BY step_name",
            &[],
        )
        .await
        .unwrap();
    let failures: Vec<(String, i64, i64)> = failures
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        failures,
        [("entitlement".into(), 1, 0), ("payment".into(), 0, 1)]
    );
}

#[tokio::test]
async fn an_unreachable_server_is_reported_with_its_address() {
    let settings = PostgresSettings::from_url("postgres://postgres@127.0.0.1:1/test").unwrap();
    let error = PostgresStore::connect(settings).await.unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error}");
    assert_eq!(error.class(), sagaform_runtime::ErrorClass::Retryable);
}

#[tokio::test]
async fn a_closed_connection_is_reopened_on_next_use() {
    let t = store().await;
    let store = postgres(&t);
    let admin = admin_client().await.unwrap();
    let database = t.database().unwrap();
    // Kill this test's store connection from the server side, as an RDS Proxy idle timeout would.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("sagaform-test-{database}")],
        )
        .await
        .unwrap();
    let record = SagaRecord::new(&PURCHASE, new_transaction_id(), purchase());
    // The first use after the kill may fail once (the driver learns of the close then); the store
    // must recover on the next one.
    let first = store.create(&record).await;
    if first.is_err() {
        store.create(&record).await.unwrap();
    }
    assert!(store.get(&record.transaction_id).await.unwrap().is_some());
}

#[tokio::test]
async fn tls_is_negotiated_and_an_untrusted_server_certificate_is_refused() {
    // The local server presents a self-signed certificate, which no system root vouches for: a
    // TLS connection must fail on verification rather than fall back to plain TCP or accept it.
    let admin = admin_client().await.unwrap_or_else(|m| panic!("{m}"));
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(
        ssl, "on",
        "this test needs a server with ssl = on (the Debian default)"
    );
    let settings =
        PostgresSettings::from_url(&format!("{}?sslmode=require", DEFAULT_DATABASE_URL)).unwrap();
    assert_eq!(settings.tls, sagaform_runtime::store::PostgresTls::Required);
    let error = PostgresStore::connect(settings).await.unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
}
