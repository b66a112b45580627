//! Test set-up shared by the Lambda function crates (`api`, `worker`, `step`), so their tests
//! run the real handlers against real backends the same way:
//!
//! - one moto server per test binary ([`moto`]), started on first use through the pinned tools
//!   and gone with the binary, with AWS clients pointed at it;
//! - a store of each kind ([`TestStore`]): private DynamoDB tables on moto, or a fresh
//!   PostgreSQL database on the local server, dropped with the store;
//! - the fake SaaS with a client whose timeouts are short ([`fake_saas`]);
//! - SQS queues with a dead-letter queue ([`QueuePair`]) and a Step Functions state machine;
//! - Lambda events with a context whose deadline the test chooses ([`event`]), API Gateway
//!   requests, SQS events built from received messages;
//! - capture of the functions' JSON log lines ([`LogCapture`]);
//! - a proxy in front of moto that loses the answers of chosen calls after they took effect
//!   ([`LostResponses`]), and a store whose DynamoDB calls go through it;
//! - the acceptance suite the three patterns share ([`acceptance`]), run through each pattern's
//!   driver.
//!
//! The runtime's own store-contract tests use the same stores ([`TestStore`]), so every crate
//! tests against one set-up of moto and PostgreSQL.
//!
//! Nothing here is a double of the code under test: only inputs and backends.

pub mod acceptance;
pub mod logs;
pub mod lost_responses;

pub use lost_responses::LostResponses;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue, Method};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use lambda_runtime::{Context, LambdaEvent};
use sagaform_fake_saas::FakeSaas;
use sagaform_runtime::store::{ConfiguredStore, DynamoStore, PostgresSettings, PostgresStore};
use sagaform_runtime::{SagaRecord, SagaStatus, SagaStore};
use sagaform_saas_client::{SaasClient, SaasConfig, ServiceConfig};
use sagaform_saga::PURCHASE;
use sagaform_tools::moto::MotoServer;
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The region every test client uses (moto's default).
pub const REGION: &str = "us-east-1";

/// The PostgreSQL server of the tests; override with `SAGAFORM_TEST_DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The moto server of this test binary, started on first use; it exits with the binary.
pub fn moto() -> &'static MotoServer {
    static MOTO: OnceLock<MotoServer> = OnceLock::new();
    MOTO.get_or_init(|| {
        let tools = sagaform_tools::Tools::ensure().unwrap_or_else(|e| {
            panic!("cannot install the pinned tools (moto) into .tools/venv: {e}")
        });
        MotoServer::start(&tools).unwrap_or_else(|e| panic!("cannot start moto server: {e}"))
    })
}

/// AWS configuration for the test moto server: fixed region and dummy credentials.
pub fn aws_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            Credentials::new("test", "test", None, None, "sagaform-testkit"),
        ))
        .endpoint_url(moto().endpoint())
        .build()
}

/// An SQS client on moto.
pub fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&aws_config())
}

/// A Step Functions client on moto.
pub fn sfn_client() -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::new(&aws_config())
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB on moto.
    DynamoDb,
    /// The local PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Both, for table-driven tests.
    pub const ALL: [Backend; 2] = [Backend::DynamoDb, Backend::Postgres];
}

/// A store private to one test; its tables or database go away with it.
pub struct TestStore {
    store: ConfiguredStore,
    backend: Backend,
    database: Option<String>,
}

impl TestStore {
    /// Fresh tables on moto, or a fresh database with the migrations applied.
    pub async fn new(backend: Backend) -> TestStore {
        keep_callsites_enabled();
        match backend {
            Backend::DynamoDb => TestStore::dynamodb(aws_config()).await,
            Backend::Postgres => {
                let admin = admin_client()
                    .await
                    .unwrap_or_else(|message| panic!("{message}"));
                let database = format!("sagaform_test_{}", uuid::Uuid::now_v7().simple());
                admin
                    .batch_execute(&format!("CREATE DATABASE {database}"))
                    .await
                    .expect("create a test database");
                // As the deploy step does: migrations as the owner, then the store connects.
                sagaform_runtime::store::migrate(&settings_for(&database), None)
                    .await
                    .expect("migrate the test database");
                let store = PostgresStore::connect(settings_for(&database))
                    .await
                    .expect("connect to the test database");
                TestStore {
                    store: ConfiguredStore::Postgres(store),
                    backend,
                    database: Some(database),
                }
            }
        }
    }

    /// Fresh DynamoDB tables on moto, reached through `proxy`: the store's calls lose the
    /// answers the proxy is told to lose.
    pub async fn dynamodb_through(proxy: &LostResponses) -> TestStore {
        keep_callsites_enabled();
        let config = aws_config()
            .into_builder()
            .endpoint_url(proxy.endpoint())
            .build();
        TestStore::dynamodb(config).await
    }

    async fn dynamodb(config: SdkConfig) -> TestStore {
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            format!("sagas-{suffix}"),
            format!("idempotency-{suffix}"),
            Duration::from_secs(3600),
        );
        store
            .create_tables()
            .await
            .expect("create the DynamoDB tables on moto");
        TestStore {
            store: ConfiguredStore::DynamoDb(store),
            backend: Backend::DynamoDb,
            database: None,
        }
    }

    /// The store (its clones share one PostgreSQL connection, as one Lambda instance would).
    pub fn store(&self) -> &ConfiguredStore {
        &self.store
    }

    /// Another handle on the same data with its own connection, as a second Lambda instance
    /// would have.
    pub async fn second_handle(&self) -> ConfiguredStore {
        match &self.database {
            Some(database) => ConfiguredStore::Postgres(
                PostgresStore::connect(settings_for(database))
                    .await
                    .expect("connect to the test database"),
            ),
            None => self.store.clone(),
        }
    }

    /// Which kind it is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The PostgreSQL database of the store; its connections are named
    /// `sagaform-test-{database}` (`application_name`), so a test can find them on the server.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// A plain connection to the PostgreSQL database of the store, to look at its tables.
    pub async fn sql_client(&self) -> tokio_postgres::Client {
        let database = self.database().expect("a PostgreSQL test store");
        let (client, connection) = settings_for(database)
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// Every saga in the store, whatever its status.
    pub async fn all_sagas(&self) -> Vec<SagaRecord> {
        let mut sagas = Vec::new();
        for status in SagaStatus::ALL {
            sagas.extend(
                self.store
                    .list_by_status(status, 1000)
                    .await
                    .expect("list sagas"),
            );
        }
        sagas
    }

    /// The one saga of the store; panics when there are none or several.
    pub async fn only_saga(&self) -> SagaRecord {
        let mut sagas = self.all_sagas().await;
        assert_eq!(
            sagas.len(),
            1,
            "expected exactly one saga, found {sagas:#?}"
        );
        sagas.remove(0)
    }

    /// The saga `transaction_id`.
    pub async fn saga(&self, transaction_id: &str) -> SagaRecord {
        self.store
            .get(transaction_id)
            .await
            .expect("read the saga")
            .expect("the saga exists")
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(database) = self.database.take() {
            // Drop cannot await; the clean-up gets a thread and a runtime of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async move {
                    let admin = admin_client().await.ok()?;
                    admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

fn database_url() -> String {
    std::env::var("SAGAFORM_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A connection to `database` on the tests' server as `user` (trust authentication: any role
/// with LOGIN gets in), for checking what that role may do.
pub async fn client_as(user: &str, database: &str) -> tokio_postgres::Client {
    let mut settings = settings_for(database);
    settings.config.user(user);
    let (client, connection) = settings
        .config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in to {database}: {e}"));
    tokio::spawn(connection);
    client
}

/// Asserts that `statement` is refused for lack of privilege (SQLSTATE 42501).
#[track_caller]
pub fn assert_refused(result: Result<(), tokio_postgres::Error>, statement: &str) {
    let error = result.expect_err(statement);
    assert_eq!(
        error.code().map(|c| c.code()),
        Some("42501"),
        "`{statement}` must be refused for lack of privilege: {error}"
    );
}

/// How to reach `database` on the tests' server as its superuser (the owner), with an
/// application name that lets a test find the store's sessions in `pg_stat_activity`.
pub fn settings_for(database: &str) -> PostgresSettings {
    let mut settings =
        PostgresSettings::from_url(&database_url()).expect("a valid SAGAFORM_TEST_DATABASE_URL");
    settings.config.dbname(database);
    settings
        .config
        .application_name(format!("sagaform-test-{database}"));
    settings
}

/// A connection to the tests' server (its database `test`) for set-up, or how to get one.
pub async fn admin_client() -> Result<tokio_postgres::Client, String> {
    let url = database_url();
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => Err(format!(
            "PostgreSQL is not reachable at {url} ({e}). These tests need a server with trust auth for \
             user postgres and a database `test` (start it with `pg_ctlcluster 15 main start` or \
             `service postgresql start`), or SAGAFORM_TEST_DATABASE_URL pointing at another one"
        )),
    }
}

/// The fake SaaS on a free loopback port, and a client with short timeouts pointed at it.
pub async fn fake_saas() -> (FakeSaas, SaasClient) {
    let fake = FakeSaas::start("127.0.0.1:0")
        .await
        .expect("start the fake SaaS");
    let mut config = SaasConfig::new();
    for service in PURCHASE.services() {
        let service_config = ServiceConfig::new(
            service,
            &fake.service_url(service),
            Duration::from_secs(1),
            Duration::from_secs(2),
        )
        .expect("a valid fake service URL");
        config = config.with_service(service, service_config);
    }
    (
        fake,
        SaasClient::new(config).expect("build the SaaS client"),
    )
}

/// A purchase body as the API accepts it.
pub fn purchase() -> Value {
    json!({"player_id": "p-1", "item_id": "sword", "quantity": 1, "amount_minor": 499, "currency": "EUR"})
}

/// A Lambda context with this request id and `time_left` until its deadline.
pub fn context(request_id: &str, time_left: Duration) -> Context {
    let deadline = SystemTime::now() + time_left;
    let mut context = Context::default();
    context.request_id = request_id.to_owned();
    context.deadline = deadline
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    context.invoked_function_arn =
        format!("arn:aws:lambda:{REGION}:123456789012:function:sagaform-test");
    context
}

thread_local! {
    /// The request ids [`event`] gave out on this thread, in order.
    static ISSUED_REQUEST_IDS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// A Lambda event with a fresh request id and `time_left` until its deadline.
pub fn event<T>(payload: T, time_left: Duration) -> LambdaEvent<T> {
    let request_id = format!("req-{}", uuid::Uuid::now_v7());
    ISSUED_REQUEST_IDS.with_borrow_mut(|issued| issued.push(request_id.clone()));
    LambdaEvent::new(payload, context(&request_id, time_left))
}

/// How many request ids [`event`] has given out on this thread; with [`request_ids_since`], the
/// invocations a test made between two points.
pub fn request_ids_issued() -> usize {
    ISSUED_REQUEST_IDS.with_borrow(Vec::len)
}

/// The request ids [`event`] gave out on this thread after the first `count`, in order.
pub fn request_ids_since(count: usize) -> Vec<String> {
    ISSUED_REQUEST_IDS.with_borrow(|issued| issued[count..].to_vec())
}

/// An API Gateway HTTP API (payload 2.0) request on the `$default` stage.
pub fn http_request(
    method: Method,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> ApiGatewayV2httpRequest {
    let mut request = ApiGatewayV2httpRequest::default();
    request.version = Some("2.0".to_owned());
    request.route_key = Some("$default".to_owned());
    request.raw_path = Some(path.to_owned());
    request.request_context.stage = Some("$default".to_owned());
    request.request_context.http.method = method;
    request.request_context.http.path = Some(path.to_owned());
    request.headers = header_map(headers);
    request.body = body.map(str::to_owned);
    request
}

/// `POST /transactions` with `body` and, when given, an `Idempotency-Key`.
pub fn post_transactions(body: &str, idempotency_key: Option<&str>) -> ApiGatewayV2httpRequest {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(key) = idempotency_key {
        headers.push(("idempotency-key", key));
    }
    http_request(Method::POST, "/transactions", Some(body), &headers)
}

/// `GET /transactions/{id}`.
pub fn get_transaction(id: &str) -> ApiGatewayV2httpRequest {
    http_request(Method::GET, &format!("/transactions/{id}"), None, &[])
}

fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::try_from(*name).expect("a valid header name"),
            HeaderValue::from_str(value).expect("a valid header value"),
        );
    }
    map
}

/// The JSON body of an API response.
pub fn response_json(response: &ApiGatewayV2httpResponse) -> Value {
    let body = response.body.as_ref().expect("the response has a body");
    serde_json::from_slice(body).expect("the response body is JSON")
}

/// An answer of the API as a client sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: i64,
    /// The JSON body.
    pub body: Value,
    /// The whole response, for its headers.
    pub response: ApiGatewayV2httpResponse,
}

impl Reply {
    /// Reads the status and the JSON body of `response`.
    pub fn new(response: ApiGatewayV2httpResponse) -> Reply {
        Reply {
            status: response.status_code,
            body: response_json(&response),
            response,
        }
    }

    /// The value of header `name`, when there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// Whether the answer is a replay of a stored one (`Idempotent-Replayed: true`).
    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    /// The status, the JSON body and the `Idempotent-Replayed` header, for tests that
    /// destructure an answer.
    pub fn into_parts(self) -> (i64, Value, Option<String>) {
        let replayed = self.header("idempotent-replayed").map(str::to_owned);
        (self.status, self.body, replayed)
    }

    /// The saga the answer is about; panics when it names none.
    pub fn transaction_id(&self) -> &str {
        self.body["transaction_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no transaction_id in {:#}", self.body))
    }
}

/// A standard SQS queue with a dead-letter queue on moto.
#[derive(Debug, Clone)]
pub struct QueuePair {
    /// The work queue.
    pub url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
    /// Receives before a message moves to the DLQ.
    pub max_receive_count: u32,
}

impl QueuePair {
    /// Creates both queues; the work queue's RedrivePolicy names the DLQ and `max_receive_count`.
    pub async fn create(max_receive_count: u32) -> QueuePair {
        let sqs = sqs_client();
        let name = format!("sagaform-{}", uuid::Uuid::now_v7().simple());
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .expect("create the DLQ")
            .queue_url
            .expect("a queue URL");
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("read the DLQ ARN")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("the DLQ has an ARN");
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count.to_string()});
        let url = sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(QueueAttributeName::VisibilityTimeout, "30")
            .send()
            .await
            .expect("create the queue")
            .queue_url
            .expect("a queue URL");
        QueuePair {
            url,
            dlq_url,
            max_receive_count,
        }
    }

    /// Receives up to ten visible messages of `queue_url` with all their attributes.
    pub async fn receive(queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        sqs_client()
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive messages")
            .messages
            .unwrap_or_default()
    }
}

/// The SQS event Lambda's event source mapping would build from received messages.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for message in messages {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.receipt_handle = message.receipt_handle.clone();
        record.body = message.body.clone();
        record.event_source = Some("aws:sqs".to_owned());
        record.aws_region = Some(REGION.to_owned());
        record.attributes = message
            .attributes
            .iter()
            .flatten()
            .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
            .collect::<HashMap<_, _>>();
        for (name, value) in message.message_attributes.iter().flatten() {
            let mut attribute = SqsMessageAttribute::default();
            attribute.string_value = value.string_value.clone();
            attribute.data_type = Some(value.data_type.clone());
            record.message_attributes.insert(name.clone(), attribute);
        }
        event.records.push(record);
    }
    event
}

/// An SQS record with this id and body, as the event source mapping delivers it the first time.
pub fn sqs_record(message_id: &str, body: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message_id.to_owned());
    record.body = Some(body.to_owned());
    record.event_source = Some("aws:sqs".to_owned());
    record
        .attributes
        .insert("ApproximateReceiveCount".to_owned(), "1".to_owned());
    record
}

/// A Standard state machine on moto that accepts executions and finishes at once (moto cannot
/// run the Lambda tasks of the real definition; tests drive the `step` handler themselves).
pub async fn create_state_machine() -> String {
    let definition =
        json!({"StartAt": "Accepted", "States": {"Accepted": {"Type": "Pass", "End": true}}});
    sfn_client()
        .create_state_machine()
        .name(format!("sagaform-{}", uuid::Uuid::now_v7().simple()))
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/sagaform-test")
        .send()
        .await
        .expect("create the state machine")
        .state_machine_arn
}

/// Installs, once per test binary, a global subscriber that takes every `info` line and drops
/// it. tracing caches per call site whether any subscriber wants it; a test logging on a thread
/// without a subscriber while another test starts a [`LogCapture`] can otherwise leave a span
/// cached as unwanted, and the captured lines would miss its fields.
fn keep_callsites_enabled() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let discard =
            sagaform_runtime::telemetry::json_subscriber(EnvFilter::new("info"), std::io::sink);
        // Another global subscriber set by the test binary serves the same purpose.
        let _ = tracing::subscriber::set_global_default(discard);
    });
}

/// Captures the JSON log lines the functions write (the runtime's formatter), for the thread
/// that started it: use it from a current-thread runtime, the default of `#[tokio::test]`.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    /// Starts capturing `info` and above; capturing stops when the guard is dropped.
    pub fn start() -> (LogCapture, tracing::subscriber::DefaultGuard) {
        keep_callsites_enabled();
        let capture = LogCapture::default();
        let subscriber =
            sagaform_runtime::telemetry::json_subscriber(EnvFilter::new("info"), capture.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    /// Every line so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self
            .buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// The lines written by sagaform's functions and runtime, not by the fake SaaS (which logs
    /// as the downstream would, in its own process in production).
    pub fn function_lines(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|line| {
                !line["target"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("sagaform_fake_saas")
            })
            .collect()
    }

    /// Forgets the lines so far.
    pub fn clear(&self) {
        self.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}
