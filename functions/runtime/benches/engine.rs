//! Engine benchmark (`cargo bench -p sagaform-runtime --bench engine`): state writes per
//! successful saga for each store, and sagas per second and per-step engine overhead against
//! PostgreSQL with a zero-latency fake SaaS served in-process. Prints plain lines.
//!
//! Needs PostgreSQL at `SAGAFORM_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); starts moto from `.tools/venv` for DynamoDB.
//! `SAGAFORM_BENCH_SAGAS` sets the number of sagas (default 200).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use sagaform_fake_saas::FakeSaas;
use sagaform_runtime::engine::Engine;
use sagaform_runtime::model::{SagaStatus, new_transaction_id};
use sagaform_runtime::store::{
    CountingStore, DynamoStore, PostgresSettings, PostgresStore, SagaStore,
};
use sagaform_saas_client::{SaasClient, SaasConfig, ServiceConfig, StepCall};
use sagaform_saga::PURCHASE;
use serde_json::json;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(message) = runtime.block_on(run()) {
        eprintln!("engine bench: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let sagas: usize = std::env::var("SAGAFORM_BENCH_SAGAS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let fake = FakeSaas::start("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let client = saas_client(&fake)?;
    let steps = PURCHASE.steps.len();

    // Baseline: the downstream calls alone, so the engine's own cost can be separated out.
    let request = json!({"player_id": "p", "item_id": "i", "quantity": 1, "amount_minor": 1, "currency": "EUR"});
    let calls = sagas * steps;
    let started = Instant::now();
    for i in 0..calls {
        let step = &PURCHASE.steps[i % steps];
        let tx = new_transaction_id();
        client
            .call(&StepCall::action(step, &tx, &request))
            .await
            .map_err(|e| format!("baseline call: {e}"))?;
    }
    let per_call = started.elapsed() / calls as u32;
    println!(
        "fake saas call (loopback HTTP, no store): {:.3} ms",
        ms(per_call)
    );

    let database_url =
        std::env::var("SAGAFORM_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let (admin, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await.map_err(|e| {
        format!("PostgreSQL is not reachable at {database_url} ({e}); start it (`pg_ctlcluster 15 main start`) or set SAGAFORM_TEST_DATABASE_URL")
    })?;
    tokio::spawn(connection);
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .map_err(|e| e.to_string())?;
    let result = postgres_figures(&database_url, &schema, &client, sagas, per_call).await;
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
    result?;

    dynamodb_figures(&client).await
}

async fn postgres_figures(
    database_url: &str,
    schema: &str,
    client: &SaasClient,
    sagas: usize,
    per_call: Duration,
) -> Result<(), String> {
    let connect = || async {
        let mut settings = PostgresSettings::from_url(database_url).map_err(|e| e.to_string())?;
        settings.config.options(format!("-c search_path={schema}"));
        PostgresStore::connect(settings)
            .await
            .map_err(|e| e.to_string())
    };
    let store = CountingStore::new(connect().await?);
    let engine = Engine::new(PURCHASE, &store, client);
    let steps = PURCHASE.steps.len();

    let started = Instant::now();
    for _ in 0..sagas {
        let record = engine
            .start(json!({"quantity": 1}))
            .await
            .map_err(|e| e.to_string())?;
        let finished = engine
            .run(
                &record.transaction_id,
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .map_err(|e| e.to_string())?;
        if finished.status != SagaStatus::Completed {
            return Err(format!(
                "saga {} ended {}",
                finished.transaction_id, finished.status
            ));
        }
    }
    let elapsed = started.elapsed();
    let per_saga = elapsed / sagas as u32;
    let writes_per_saga = store.state_writes() as f64 / sagas as f64;
    let reads_per_saga = store.state_reads() as f64 / sagas as f64;
    let overhead_per_step = per_saga.saturating_sub(per_call * steps as u32) / steps as u32;
    println!("postgres: {sagas} sagas of {steps} steps, one at a time");
    println!(
        "postgres: state writes per successful saga: {writes_per_saga:.2} (bound N+2 = {})",
        steps + 2
    );
    println!("postgres: state reads per successful saga: {reads_per_saga:.2}");
    println!(
        "postgres: sagas per second (sequential): {:.1}",
        sagas as f64 / elapsed.as_secs_f64()
    );
    println!("postgres: time per saga: {:.3} ms", ms(per_saga));
    println!(
        "postgres: engine overhead per step (saga time minus downstream calls, incl. its state write): {:.3} ms",
        ms(overhead_per_step)
    );

    // Several Lambda instances at once: one connection each, as in production.
    let workers = 8;
    let mut handles = Vec::new();
    let started = Instant::now();
    for worker in 0..workers {
        let store = connect().await?;
        let client = client.clone();
        let share = sagas / workers + usize::from(worker < sagas % workers);
        handles.push(tokio::spawn(async move {
            let engine = Engine::new(PURCHASE, store, client);
            for _ in 0..share {
                let record = engine
                    .start(json!({"quantity": 1}))
                    .await
                    .map_err(|e| e.to_string())?;
                engine
                    .run(
                        &record.transaction_id,
                        Instant::now() + Duration::from_secs(60),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for handle in handles {
        handle.await.map_err(|e| e.to_string())??;
    }
    let elapsed = started.elapsed();
    println!(
        "postgres: sagas per second ({workers} concurrent engines, 2-core machine): {:.1}",
        sagas as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

async fn dynamodb_figures(client: &SaasClient) -> Result<(), String> {
    let tools = sagaform_tools::Tools::ensure().map_err(|e| e.to_string())?;
    let moto = sagaform_tools::moto::MotoServer::start(&tools).map_err(|e| e.to_string())?;
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url(moto.endpoint())
        .build();
    let dynamo = DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        "bench-sagas",
        "bench-idempotency",
        Duration::from_secs(3600),
    );
    dynamo.create_tables().await.map_err(|e| e.to_string())?;
    let store = CountingStore::new(dynamo);
    let engine = Engine::new(PURCHASE, &store, client);
    let sagas = 20;
    for _ in 0..sagas {
        let record = engine
            .start(json!({"quantity": 1}))
            .await
            .map_err(|e| e.to_string())?;
        engine
            .run(
                &record.transaction_id,
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let completed = store
        .inner()
        .list_by_status(SagaStatus::Completed, 100)
        .await
        .map_err(|e| e.to_string())?;
    println!("dynamodb (moto): {} sagas completed", completed.len());
    let writes = store.state_writes() as f64 / sagas as f64;
    println!(
        "dynamodb (moto): state writes per successful saga: {writes:.2} (bound N+2 = {})",
        PURCHASE.steps.len() + 2
    );
    // The former `by-status` index was keyed on status and updated_at, with every attribute
    // projected, and held every saga: each write changed its key (updated_at always changes),
    // so the create cost one index write and every later write two (a delete and a put).
    let former_index_writes = 1.0 + 2.0 * (writes - 1.0);
    println!(
        "dynamodb (moto): status index writes per successful saga: {:.2} (open-by-status, keys only, {} shards; the former by-status index: {former_index_writes:.2}, each a copy of the whole item)",
        store.open_index_writes() as f64 / sagas as f64,
        sagaform_contract::saga_table::STATUS_SHARDS,
    );
    Ok(())
}

fn saas_client(fake: &FakeSaas) -> Result<SaasClient, String> {
    let mut config = SaasConfig::new();
    for service in PURCHASE.services() {
        let service_config = ServiceConfig::new(
            service,
            &fake.service_url(service),
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .map_err(|e| e.to_string())?;
        config = config.with_service(service, service_config);
    }
    SaasClient::new(config).map_err(|e| e.to_string())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
