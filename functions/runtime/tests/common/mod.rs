//! Test set-up shared by the integration tests: a real store of each kind (a private PostgreSQL
//! schema, private DynamoDB tables on a moto server started for the test binary), the fake SaaS
//! with a client pointed at it, and doubles that simulate a crash at a chosen point.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod crash;
pub mod store_contract;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use sagaform_fake_saas::FakeSaas;
use sagaform_runtime::store::{ConfiguredStore, DynamoStore, PostgresSettings, PostgresStore};
use sagaform_saas_client::{SaasClient, SaasConfig, ServiceConfig};
use sagaform_saga::PURCHASE;
use sagaform_tools::moto::MotoServer;
use serde_json::{Value, json};

/// The server the PostgreSQL tests use; override with `SAGAFORM_TEST_DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    DynamoDb,
}

/// A store private to one test; its schema or tables are dropped with it.
pub struct TestStore {
    pub store: ConfiguredStore,
    backend: Backend,
    schema: Option<String>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> TestStore {
        match backend {
            Backend::Postgres => postgres_store().await,
            Backend::DynamoDb => dynamodb_store().await,
        }
    }

    /// A second handle on the same data through its own connection, as a second Lambda
    /// instance would have.
    pub async fn second_handle(&self) -> ConfiguredStore {
        match (&self.store, &self.schema) {
            (ConfiguredStore::Postgres(_), Some(schema)) => ConfiguredStore::Postgres(
                PostgresStore::connect(settings_for(schema)).await.unwrap(),
            ),
            _ => self.store.clone(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The schema of a PostgreSQL store.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            // Drop runs outside async context guarantees, so the clean-up gets its own runtime.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    if let Ok(client) = admin_client().await {
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

fn database_url() -> String {
    std::env::var("SAGAFORM_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A plain connection for set-up, or an error explaining how to get a server.
pub async fn admin_client() -> Result<tokio_postgres::Client, String> {
    let url = database_url();
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => Err(format!(
            "PostgreSQL is not reachable at {url} ({e}). These tests need a running server with \
             trust auth for user postgres and a database `test`: start it with \
             `pg_ctlcluster 15 main start` (or `service postgresql start`), or point \
             SAGAFORM_TEST_DATABASE_URL at another server"
        )),
    }
}

fn settings_for(schema: &str) -> PostgresSettings {
    let mut settings = PostgresSettings::from_url(&database_url()).unwrap();
    settings.config.options(format!("-c search_path={schema}"));
    // Lets a test find (and kill) the connections of its own store.
    settings
        .config
        .application_name(format!("sagaform-test-{schema}"));
    settings
}

/// A PostgreSQL store in a fresh schema of its own (migrations applied), so tests run in
/// parallel without seeing each other.
pub async fn postgres_store() -> TestStore {
    let admin = admin_client()
        .await
        .unwrap_or_else(|message| panic!("{message}"));
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let store = PostgresStore::connect(settings_for(&schema)).await.unwrap();
    TestStore {
        store: ConfiguredStore::Postgres(store),
        backend: Backend::Postgres,
        schema: Some(schema),
    }
}

/// The moto server of this test binary, started on first use and stopped when the binary exits.
pub fn moto() -> &'static MotoServer {
    static MOTO: OnceLock<MotoServer> = OnceLock::new();
    MOTO.get_or_init(|| {
        let tools = sagaform_tools::Tools::ensure()
            .expect("install the pinned tools (moto) into .tools/venv");
        MotoServer::start(&tools).expect("start moto server")
    })
}

/// A DynamoDB client for the test moto server.
pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "sagaform-tests",
        ))
        .endpoint_url(moto().endpoint())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A DynamoDB store on fresh tables of its own.
pub async fn dynamodb_store() -> TestStore {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let store = DynamoStore::new(
        dynamodb_client(),
        format!("sagas-{suffix}"),
        format!("idempotency-{suffix}"),
        Duration::from_secs(3600),
    );
    store.create_tables().await.unwrap();
    TestStore {
        store: ConfiguredStore::DynamoDb(store),
        backend: Backend::DynamoDb,
        schema: None,
    }
}

/// The fake SaaS on a free loopback port and a client for it.
pub async fn fake_saas() -> (FakeSaas, SaasClient) {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let mut config = SaasConfig::new();
    for service in PURCHASE.services() {
        let service_config = ServiceConfig::new(
            service,
            &fake.service_url(service),
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
        .unwrap();
        config = config.with_service(service, service_config);
    }
    (fake, SaasClient::new(config).unwrap())
}

/// A purchase request as the API accepts it.
pub fn purchase_request() -> Value {
    json!({"player_id": "p-1", "item_id": "sword", "quantity": 1, "amount_minor": 499, "currency": "EUR"})
}

/// A deadline far enough for every test scenario, retries included.
pub fn generous_deadline() -> Instant {
    Instant::now() + Duration::from_secs(120)
}
