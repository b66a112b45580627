//! The migration step against real back ends: a fresh database on the tests' PostgreSQL server,
//! its secrets in moto's Secrets Manager, and a local HTTP server standing in for the pre-signed
//! S3 URL CloudFormation waits on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::put;
use sagaform_contract::custom_resource::{CustomResourceResponse, ResponseStatus};
use sagaform_contract::database::DatabaseSecret;
use sagaform_migrate::{MigrateError, MigrationStep, PHYSICAL_RESOURCE_ID};
use sagaform_runtime::store::{MIGRATION_LOCK, SecretSource};
use sagaform_testkit::{admin_client, assert_refused, aws_config, client_as, settings_for};
use serde_json::json;

/// What the stand-in for the response URL received: each `PUT`'s content type and body.
type Received = Arc<Mutex<Vec<(String, CustomResourceResponse)>>>;

/// A local server accepting `PUT /response`, as the pre-signed S3 URL does; its URL and what
/// it received.
async fn response_url() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/response",
            put(
                |State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    // Absent is not empty: the URL is signed for an empty content type.
                    let content_type = headers
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_else(|| "<absent>".to_owned());
                    received
                        .lock()
                        .unwrap()
                        .push((content_type, serde_json::from_slice(&body).unwrap()));
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        format!("http://{address}/response?X-Amz-Signature=x"),
        received,
    )
}

/// A database secret in moto; its ARN.
async fn secret(client: &aws_sdk_secretsmanager::Client, username: &str) -> String {
    client
        .create_secret()
        .name(format!("sagaform-test-{}", uuid::Uuid::now_v7().simple()))
        .secret_string(
            serde_json::to_string(&DatabaseSecret {
                username: username.to_owned(),
                password: "generated-elsewhere".to_owned(),
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

fn request(request_type: &str, url: &str) -> serde_json::Value {
    json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:s-migrate",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
        "RequestId": format!("request-{request_type}"),
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceType": "Custom::DatabaseMigrations",
        "ResourceProperties": {"ServiceToken": "arn", "ServiceTimeout": "600", "MigrationsHash": "h1", "ClusterId": "c-1", "AppSecretArn": "arn:secret", "MigrateCodeKey": "migrate/abc.zip"}
    })
}

#[tokio::test]
async fn create_applies_the_migrations_grants_the_app_role_and_answers_cloudformation_with_a_put() {
    let admin = admin_client().await.unwrap_or_else(|m| panic!("{m}"));
    let id = uuid::Uuid::now_v7().simple().to_string();
    let database = format!("sagaform_migrate_{id}");
    let role = format!("sagaform_app_{id}");
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&aws_config());
    let owner = SecretSource::new(secrets.clone(), secret(&secrets, "postgres").await);
    let app = SecretSource::new(secrets.clone(), secret(&secrets, &role).await);
    let step = MigrationStep::new(settings_for(&database), owner, Some(app));
    let (url, received) = response_url().await;

    for request_type in ["Create", "Update"] {
        let sent = step.handle(request(request_type, &url)).await.unwrap();
        assert_eq!(sent.status, ResponseStatus::Success, "{:?}", sent.reason);
    }
    let answers = received.lock().unwrap().clone();
    assert_eq!(answers.len(), 2, "one PUT per request");
    let (content_type, create) = &answers[0];
    assert_eq!(
        content_type, "",
        "the pre-signed URL is signed without a content type"
    );
    assert_eq!(create.status, ResponseStatus::Success);
    assert_eq!(create.request_id, "request-Create");
    assert_eq!(create.logical_resource_id, "DatabaseMigrations");
    assert_eq!(create.physical_resource_id, PHYSICAL_RESOURCE_ID);

    // The schema is there, and the application role logs in and may write sagas, nothing more.
    let app_client = client_as(&role, &database).await;
    let versions = app_client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap();
    assert_eq!(versions.get::<_, i64>(0), 4);
    assert_refused(
        app_client.batch_execute("DROP TABLE sagas").await,
        "DROP TABLE sagas",
    );
    drop(app_client);
    // The server holds a SCRAM verifier for the role. (The step sends it computed, so the
    // password is never in a statement's text; the server would derive one from a plain
    // password as well, so this checks the result, not the path.)
    let stored = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    let stored: String = stored.get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");

    // Two statements: DROP DATABASE cannot share a batch (an implicit transaction).
    admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_migration_is_answered_failed_with_its_reason_and_delete_leaves_the_data() {
    let secrets = aws_sdk_secretsmanager::Client::new(&aws_config());
    // The owner's secret names a role the server does not know: the step cannot log in.
    let owner = SecretSource::new(
        secrets.clone(),
        secret(
            &secrets,
            &format!("nobody_{}", uuid::Uuid::now_v7().simple()),
        )
        .await,
    );
    let step = MigrationStep::new(settings_for("test"), owner, None);
    let (url, received) = response_url().await;
    let sent = step.handle(request("Create", &url)).await.unwrap();
    assert_eq!(sent.status, ResponseStatus::Failed);
    let reason = sent.reason.clone().unwrap();
    assert!(reason.contains("cannot connect"), "{reason}");
    assert!(
        !reason.contains("generated-elsewhere"),
        "no password in the reason"
    );
    // Delete answers success without connecting at all.
    let deleted = step.handle(request("Delete", &url)).await.unwrap();
    assert_eq!(deleted.status, ResponseStatus::Success);
    let answers: Vec<_> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, answer)| answer.status)
        .collect();
    assert_eq!(answers, [ResponseStatus::Failed, ResponseStatus::Success]);
}

// A step that cannot finish in the invocation's time (here: another step holds the migration
// lock) still answers CloudFormation, FAILED with the reason, instead of running into the
// function's timeout and leaving the stack waiting for an hour.
#[tokio::test]
async fn a_step_that_cannot_finish_in_time_still_answers_failed() {
    let holder = admin_client().await.unwrap_or_else(|m| panic!("{m}"));
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&aws_config());
    let owner = SecretSource::new(secrets.clone(), secret(&secrets, "postgres").await);
    let step = MigrationStep::new(settings_for("test"), owner, None);
    let (url, received) = response_url().await;
    let started = std::time::Instant::now();
    let sent = step
        .handle_within(request("Create", &url), Duration::from_secs(2))
        .await
        .unwrap();
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sent.status, ResponseStatus::Failed);
    let reason = sent.reason.unwrap();
    assert!(reason.contains("did not finish within 2 s"), "{reason}");
    assert_eq!(received.lock().unwrap().len(), 1, "answered once");
}

// A function that could not start, or a request it cannot read in full, is still answered:
// Delete succeeds (nothing to undo), Create fails with the reason.
#[tokio::test]
async fn a_broken_step_and_an_unreadable_request_are_still_answered() {
    let broken = MigrationStep::broken(&MigrateError::Config(
        "environment variable SAGAFORM_DB_HOST is missing".to_owned(),
    ));
    let (url, received) = response_url().await;
    let created = broken.handle(request("Create", &url)).await.unwrap();
    assert_eq!(created.status, ResponseStatus::Failed);
    assert!(created.reason.unwrap().contains("SAGAFORM_DB_HOST"));
    let deleted = broken.handle(request("Delete", &url)).await.unwrap();
    assert_eq!(deleted.status, ResponseStatus::Success);

    let mut unreadable = request("Update", &url);
    unreadable["RequestId"] = json!(42);
    let answered = broken.handle(unreadable).await.unwrap();
    assert_eq!(answered.status, ResponseStatus::Failed);
    assert!(answered.reason.unwrap().contains("unreadable"));
    assert_eq!(received.lock().unwrap().len(), 3);
}
