//! The PostgreSQL store, for Aurora PostgreSQL (through RDS Proxy, TLS) and a local server (plain
//! TCP): tables `sagas`, `saga_steps` and `idempotency_records`, plus the operations views
//! `sagas_by_status`, `stuck_sagas` and `step_failures`, created by the migrations of
//! [`super::schema`], which a deploy step applies; the store only checks the schema version.
//!
//! Credentials that come from a Secrets Manager secret are read again when the server refuses
//! them on a reconnect (SQLSTATE class 28): the managed master secret rotates every 7 days, and
//! a warm function must not fail on a password that was right when it started.
//!
//! Every state change is one SQL statement (a data-modifying CTE updates the saga and its steps
//! together), so a write is atomic and costs one round trip; a stale version matches no row and
//! changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row};
use tracing::warn;

use sagaform_contract::database::DatabaseSecret;

use crate::errors::{IdempotencyError, StoreError};
use crate::model::{SagaRecord, SagaStatus, StepRecord, epoch_millis, epoch_seconds, rfc3339};
use crate::store::config::SecretSource;
use crate::store::schema::check_version;
use crate::store::{
    CLAIM_ATTEMPTS, ClaimOutcome, IdempotencyClaim, IdempotencyCompletion, IdempotencyRecord,
    IdempotencyStatus, IdempotencyStore, SagaStore, existing_claim_outcome, stored_response,
};

const BACKEND: &str = "postgres";

/// Timestamps leave the database in the exact format the runtime writes ([`rfc3339`]).
const TIMESTAMP_FORMAT: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'"#;

/// Whether the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresTls {
    /// Plain TCP: a local server only.
    Disabled,
    /// TLS with the server certificate verified against the system's roots (RDS Proxy presents
    /// an Amazon Trust Services certificate, which they include).
    Required,
}

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresSettings {
    /// Host, port, database, user, password, options.
    pub config: Config,
    /// Encryption.
    pub tls: PostgresTls,
}

impl std::fmt::Debug for PostgresSettings {
    // The password must never reach a log line, so only the location is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("tls", &self.tls)
            .finish()
    }
}

impl PostgresSettings {
    /// From a `postgres://` URL (local use); TLS when it says `sslmode=require`.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let config: Config = url
            .parse()
            .map_err(|e| StoreError::Config(format!("database url: {e}")))?;
        let tls = match config.get_ssl_mode() {
            SslMode::Require => PostgresTls::Required,
            _ => PostgresTls::Disabled,
        };
        Ok(PostgresSettings { config, tls })
    }

    /// The same location with another user and password (from a secret).
    pub fn with_credentials(&self, secret: &DatabaseSecret) -> Self {
        let mut renewed = self.clone();
        renewed
            .config
            .user(&secret.username)
            .password(&secret.password);
        renewed
    }

    /// Aurora through RDS Proxy: always TLS.
    pub fn aurora(host: &str, port: u16, dbname: &str, user: &str, password: &str) -> Self {
        let mut config = Config::new();
        config
            .host(host)
            .port(port)
            .dbname(dbname)
            .user(user)
            .password(password);
        config.ssl_mode(SslMode::Require);
        // A proxy that does not answer must fail the invocation with a reason, not use up its
        // time (the migration step must still answer CloudFormation).
        config.connect_timeout(std::time::Duration::from_secs(10));
        config.application_name("sagaform");
        PostgresSettings {
            config,
            tls: PostgresTls::Required,
        }
    }
}

/// Saga state and idempotency records in PostgreSQL.
///
/// One connection per store, as a Lambda instance serves one invocation at a time; it is
/// reopened when the server or RDS Proxy closed it. Several processes (or several stores in a
/// test) each have their own connection.
#[derive(Clone)]
pub struct PostgresStore {
    /// Where to connect; its user and password change when the secret is read again.
    settings: Arc<std::sync::Mutex<PostgresSettings>>,
    /// Where the credentials come from, when they can change under the store.
    secret: Option<SecretSource>,
    client: Arc<Mutex<Client>>,
    /// Set when an operation saw the connection die, so the next one reconnects even if the
    /// driver has not noticed the close yet.
    connection_lost: Arc<AtomicBool>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("settings", &self.settings)
            .field("secret", &self.secret)
            .finish()
    }
}

impl PostgresStore {
    /// Connects and checks that the schema is the one this binary needs (the migration step,
    /// [`super::schema::migrate`], applies it; a function never does).
    pub async fn connect(settings: PostgresSettings) -> Result<Self, StoreError> {
        Self::connect_with(settings, None).await
    }

    /// Connects with the credentials of `secret`, and reads the secret again whenever a
    /// reconnect is refused for them (the secret rotated since).
    pub async fn connect_with_secret(
        settings: PostgresSettings,
        secret: SecretSource,
    ) -> Result<Self, StoreError> {
        let mut current = settings.with_credentials(&secret.read().await?);
        let client = match open(&current).await {
            Ok(client) => client,
            // A rotation between the read and the login (the server already has the new
            // password, the secret not yet, or the other way round): read it once more.
            Err(failure) if failure.credentials_refused => {
                warn!(
                    error = %failure.error,
                    "database refused the credentials; reading the secret again (it may be rotating)"
                );
                current = settings.with_credentials(&secret.read().await?);
                open(&current).await.map_err(|failure| failure.error)?
            }
            Err(failure) => return Err(failure.error),
        };
        Self::from_client(client, current, Some(secret)).await
    }

    async fn connect_with(
        settings: PostgresSettings,
        secret: Option<SecretSource>,
    ) -> Result<Self, StoreError> {
        let client = open(&settings).await.map_err(|failure| failure.error)?;
        Self::from_client(client, settings, secret).await
    }

    /// The store on a connection just opened with `settings`, once the schema is checked.
    async fn from_client(
        client: Client,
        settings: PostgresSettings,
        secret: Option<SecretSource>,
    ) -> Result<Self, StoreError> {
        check_version(&client).await?;
        Ok(PostgresStore {
            settings: Arc::new(std::sync::Mutex::new(settings)),
            secret,
            client: Arc::new(Mutex::new(client)),
            connection_lost: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens a new connection; when the server refuses the credentials and they come from a
    /// secret, reads the secret once more and tries with what it holds now. Other failures
    /// (unreachable, too many connections) are not retried here: a new password would not help.
    async fn reopen(&self) -> Result<Client, StoreError> {
        let settings = self.current_settings();
        let failure = match open(&settings).await {
            Ok(client) => return Ok(client),
            Err(failure) => failure,
        };
        let Some(secret) = self.secret.as_ref().filter(|_| failure.credentials_refused) else {
            return Err(failure.error);
        };
        warn!(
            error = %failure.error,
            "database refused the credentials; reading the secret again (it may have rotated)"
        );
        let renewed = settings.with_credentials(&secret.read().await?);
        let client = open(&renewed).await.map_err(|failure| failure.error)?;
        *self
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = renewed;
        Ok(client)
    }

    fn current_settings(&self) -> PostgresSettings {
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The schema versions applied, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i32>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The connection, reopened first if it was closed.
    async fn client(&self) -> Result<MutexGuard<'_, Client>, StoreError> {
        let mut client = self.client.lock().await;
        if client.is_closed() || self.connection_lost.load(Ordering::SeqCst) {
            warn!("database connection was closed; reconnecting");
            *client = self.reopen().await?;
            self.connection_lost.store(false, Ordering::SeqCst);
        }
        Ok(client)
    }

    /// The store error for a failed statement; remembers a lost connection (closed, or ended by
    /// the server: class 08 connection exceptions, 57P01..57P03 shutdowns) for the next call.
    fn failed(&self, error: tokio_postgres::Error) -> StoreError {
        let code = error
            .code()
            .map(|c| c.code().to_owned())
            .unwrap_or_default();
        if error.is_closed()
            || code.starts_with("08")
            || matches!(code.as_str(), "57P01" | "57P02" | "57P03")
        {
            self.connection_lost.store(true, Ordering::SeqCst);
        }
        db_error(error)
    }

    async fn select_sagas(
        &self,
        filter: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let sql = format!(
            "SELECT s.transaction_id, s.status, s.version, s.request::text, s.error,
                    to_char(s.created_at AT TIME ZONE 'UTC', {TIMESTAMP_FORMAT}),
                    to_char(s.updated_at AT TIME ZONE 'UTC', {TIMESTAMP_FORMAT}),
                    coalesce((SELECT json_agg(json_build_object(
                                  'name', st.step_name, 'status', st.status, 'attempts', st.attempts,
                                  'compensation_attempts', st.compensation_attempts, 'in_doubt', st.in_doubt,
                                  'error', st.error,
                                  'updated_at', to_char(st.updated_at AT TIME ZONE 'UTC', {TIMESTAMP_FORMAT}))
                                  ORDER BY st.step_index)
                              FROM saga_steps st WHERE st.transaction_id = s.transaction_id), '[]')::text
             FROM sagas s {filter}"
        );
        let client = self.client().await?;
        let rows = client
            .query(&sql, params)
            .await
            .map_err(|e| self.failed(e))?;
        rows.iter().map(saga_from_row).collect()
    }
}

/// Why a connection could not be opened.
pub(crate) struct OpenFailure {
    /// What to report.
    pub(crate) error: StoreError,
    /// The server refused the user or password (SQLSTATE class 28), so other credentials may
    /// succeed where these failed.
    pub(crate) credentials_refused: bool,
}

/// Opens a connection with `settings`.
pub(crate) async fn open(settings: &PostgresSettings) -> Result<Client, OpenFailure> {
    let failed = |e: tokio_postgres::Error| OpenFailure {
        credentials_refused: e.code().is_some_and(|c| c.code().starts_with("28")),
        error: StoreError::Backend {
            backend: BACKEND,
            message: format!(
                "cannot connect to {:?}: {}",
                settings.config.get_hosts(),
                error_text(&e)
            ),
        },
    };
    match settings.tls {
        PostgresTls::Disabled => {
            let (client, connection) = settings.config.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    warn!(error = %error_text(&e), "database connection ended");
                }
            });
            Ok(client)
        }
        PostgresTls::Required => {
            let connector = tls_connector().map_err(|error| OpenFailure {
                error,
                credentials_refused: false,
            })?;
            let (client, connection) = settings.config.connect(connector).await.map_err(failed)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    warn!(error = %error_text(&e), "database connection ended");
                }
            });
            Ok(client)
        }
    }
}

/// rustls with the aws-lc-rs provider (the one the AWS SDK already links) and the system's root
/// certificates.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(StoreError::Config(format!(
            "database tls: no usable root certificate in the system store ({} errors)",
            loaded.errors.len()
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Config(format!("database tls: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The step columns as parallel arrays, for `unnest` in one statement.
struct StepColumns {
    indexes: Vec<i32>,
    names: Vec<String>,
    statuses: Vec<String>,
    attempts: Vec<i32>,
    compensation_attempts: Vec<i32>,
    in_doubt: Vec<bool>,
    errors: Vec<Option<String>>,
    updated_at: Vec<Option<String>>,
}

impl StepColumns {
    fn of(record: &SagaRecord) -> Self {
        StepColumns {
            indexes: (0..record.steps.len() as i32).collect(),
            names: record.steps.iter().map(|s| s.name.clone()).collect(),
            statuses: record
                .steps
                .iter()
                .map(|s| s.status.as_str().to_owned())
                .collect(),
            attempts: record
                .steps
                .iter()
                .map(|s| i32::try_from(s.attempts).unwrap_or(i32::MAX))
                .collect(),
            compensation_attempts: record
                .steps
                .iter()
                .map(|s| i32::try_from(s.compensation_attempts).unwrap_or(i32::MAX))
                .collect(),
            in_doubt: record.steps.iter().map(|s| s.in_doubt).collect(),
            errors: record.steps.iter().map(|s| s.error.clone()).collect(),
            updated_at: record.steps.iter().map(|s| s.updated_at.clone()).collect(),
        }
    }

    /// The parameters of a statement that writes a saga with its steps: `saga` (the saga's
    /// own), then the eight step columns.
    fn after<'a>(&'a self, saga: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a (dyn ToSql + Sync)> {
        let steps: [&'a (dyn ToSql + Sync); 8] = [
            &self.indexes,
            &self.names,
            &self.statuses,
            &self.attempts,
            &self.compensation_attempts,
            &self.in_doubt,
            &self.errors,
            &self.updated_at,
        ];
        saga.iter().copied().chain(steps).collect()
    }
}

/// Inserts the saga at version 1 with its steps, unless the id exists; returns the number of
/// sagas inserted (0 or 1). Parameters: $1 id, $2 status, $3 request, $4 error, $5 created_at,
/// $6 updated_at, $7..$14 step columns.
const INSERT_SAGA: &str = "
    WITH saga AS (
        INSERT INTO sagas (transaction_id, status, version, request, error, created_at, updated_at)
        VALUES ($1, $2, 1, $3::text::jsonb, $4, $5::text::timestamptz, $6::text::timestamptz)
        ON CONFLICT (transaction_id) DO NOTHING
        RETURNING transaction_id
    ), steps AS (
        INSERT INTO saga_steps (transaction_id, step_index, step_name, status, attempts,
                                compensation_attempts, in_doubt, error, updated_at)
        SELECT saga.transaction_id, s.step_index, s.step_name, s.status, s.attempts,
               s.compensation_attempts, s.in_doubt, s.error, s.updated_at::timestamptz
        FROM saga, unnest($7::int[], $8::text[], $9::text[], $10::int[], $11::int[], $12::bool[],
                          $13::text[], $14::text[])
             AS s (step_index, step_name, status, attempts, compensation_attempts, in_doubt, error,
                   updated_at)
    )
    SELECT count(*) FROM saga";

/// Updates the saga and its steps if the stored version is $2; returns the new version, or no
/// row for a stale writer. Parameters: $1 id, $2 expected version, $3 status, $4 error,
/// $5 updated_at, $6..$13 step columns.
const TRANSITION_SAGA: &str = "
    WITH saga AS (
        UPDATE sagas
        SET status = $3, version = version + 1, error = $4, updated_at = $5::text::timestamptz
        WHERE transaction_id = $1 AND version = $2
        RETURNING transaction_id, version
    ), steps AS (
        INSERT INTO saga_steps (transaction_id, step_index, step_name, status, attempts,
                                compensation_attempts, in_doubt, error, updated_at)
        SELECT saga.transaction_id, s.step_index, s.step_name, s.status, s.attempts,
               s.compensation_attempts, s.in_doubt, s.error, s.updated_at::timestamptz
        FROM saga, unnest($6::int[], $7::text[], $8::text[], $9::int[], $10::int[], $11::bool[],
                          $12::text[], $13::text[])
             AS s (step_index, step_name, status, attempts, compensation_attempts, in_doubt, error,
                   updated_at)
        ON CONFLICT (transaction_id, step_name) DO UPDATE
        SET status = EXCLUDED.status, attempts = EXCLUDED.attempts,
            compensation_attempts = EXCLUDED.compensation_attempts, in_doubt = EXCLUDED.in_doubt,
            error = EXCLUDED.error,
            updated_at = EXCLUDED.updated_at
    )
    SELECT version FROM saga";

/// Marks an INPROGRESS record COMPLETED; no row when it is not in progress.
const COMPLETE_IDEMPOTENCY: &str = "
    UPDATE idempotency_records
    SET status = 'COMPLETED', response = $2::text::jsonb, expiration = $3
    WHERE id = $1 AND status = 'INPROGRESS'
    RETURNING id";

async fn insert_saga(
    store: &PostgresStore,
    client: &impl tokio_postgres::GenericClient,
    record: &SagaRecord,
) -> Result<bool, StoreError> {
    let steps = StepColumns::of(record);
    let request = record.request.to_string();
    let row = client
        .query_one(
            INSERT_SAGA,
            &steps.after(&[
                &record.transaction_id,
                &record.status.as_str(),
                &request,
                &record.error,
                &record.created_at,
                &record.updated_at,
            ]),
        )
        .await
        .map_err(|e| store.failed(e))?;
    Ok(row.get::<_, i64>(0) == 1)
}

/// Marks the INPROGRESS record of `completion` COMPLETED;
/// [`StoreError::IdempotencyNotInProgress`] when it is not in progress.
async fn complete_idempotency(
    store: &PostgresStore,
    client: &impl tokio_postgres::GenericClient,
    completion: &IdempotencyCompletion<'_>,
) -> Result<(), StoreError> {
    let completed = client
        .query_opt(
            COMPLETE_IDEMPOTENCY,
            &[
                &completion.key,
                &completion.response.to_string(),
                &epoch_seconds(completion.expiration),
            ],
        )
        .await
        .map_err(|e| store.failed(e))?;
    match completed {
        Some(_) => Ok(()),
        None => Err(StoreError::IdempotencyNotInProgress(
            completion.key.to_owned(),
        )),
    }
}

impl SagaStore for PostgresStore {
    async fn create(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        let client = self.client().await?;
        if insert_saga(self, &*client, record).await? {
            Ok(1)
        } else {
            Err(StoreError::AlreadyExists(record.transaction_id.clone()))
        }
    }

    async fn create_completing_idempotency(
        &self,
        record: &SagaRecord,
        completion: &IdempotencyCompletion<'_>,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.failed(e))?;
        // An early return drops the transaction, which rolls it back.
        complete_idempotency(self, &transaction, completion).await?;
        if !insert_saga(self, &transaction, record).await? {
            return Err(StoreError::AlreadyExists(record.transaction_id.clone()));
        }
        transaction.commit().await.map_err(|e| self.failed(e))?;
        Ok(1)
    }

    async fn get(&self, transaction_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        let mut found = self
            .select_sagas("WHERE s.transaction_id = $1", &[&transaction_id])
            .await?;
        Ok(found.pop())
    }

    async fn transition(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        let steps = StepColumns::of(record);
        let expected = i64::try_from(record.version)
            .map_err(|e| StoreError::corrupt(&record.transaction_id, format!("version: {e}")))?;
        let row = {
            let client = self.client().await?;
            client
                .query_opt(
                    TRANSITION_SAGA,
                    &steps.after(&[
                        &record.transaction_id,
                        &expected,
                        &record.status.as_str(),
                        &record.error,
                        &record.updated_at,
                    ]),
                )
                .await
                .map_err(|e| self.failed(e))?
        };
        match row {
            Some(row) => Ok(row.get::<_, i64>(0) as u64),
            // A missing saga matches no row either; one read tells the two apart (only on this
            // rare path).
            None => match self.get(&record.transaction_id).await? {
                None => Err(StoreError::NotFound(record.transaction_id.clone())),
                Some(_) => Err(StoreError::Conflict {
                    transaction_id: record.transaction_id.clone(),
                    expected: record.version,
                }),
            },
        }
    }

    async fn list_by_status(
        &self,
        status: SagaStatus,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select_sagas(
            "WHERE s.status = $1 ORDER BY s.updated_at LIMIT $2",
            &[&status.as_str(), &limit],
        )
        .await
    }

    async fn list_stuck(
        &self,
        idle_for: Duration,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let cutoff = rfc3339(SystemTime::now() - idle_for);
        let active: Vec<&str> = SagaStatus::ACTIVE.iter().map(|s| s.as_str()).collect();
        self.select_sagas(
            "WHERE s.status = ANY($1) AND s.updated_at < $2::text::timestamptz ORDER BY s.updated_at LIMIT $3",
            &[&active, &cutoff, &limit],
        )
        .await
    }
}

impl IdempotencyStore for PostgresStore {
    async fn claim(&self, claim: &IdempotencyClaim<'_>) -> Result<ClaimOutcome, IdempotencyError> {
        let now = SystemTime::now();
        for _ in 0..CLAIM_ATTEMPTS {
            // One statement: insert, or take over an expired record or an INPROGRESS record past
            // its in-progress expiry. The row lock of ON CONFLICT makes a concurrent duplicate
            // wait and then see the winner's live record, so it claims nothing.
            let claimed = {
                let client = self.client().await?;
                client
                    .query_opt(
                        "INSERT INTO idempotency_records AS r
                             (id, status, payload_hash, expiration, in_progress_expiry, response)
                         VALUES ($1, 'INPROGRESS', $2, $3, $4, NULL)
                         ON CONFLICT (id) DO UPDATE
                         SET status = 'INPROGRESS', payload_hash = EXCLUDED.payload_hash,
                             expiration = EXCLUDED.expiration,
                             in_progress_expiry = EXCLUDED.in_progress_expiry, response = NULL
                         WHERE r.expiration < $5
                            OR (r.status = 'INPROGRESS' AND r.in_progress_expiry < $6)
                         RETURNING id",
                        &[
                            &claim.key,
                            &claim.payload_hash,
                            &epoch_seconds(claim.expiration),
                            &epoch_millis(claim.in_progress_until),
                            &epoch_seconds(now),
                            &epoch_millis(now),
                        ],
                    )
                    .await
                    .map_err(|e| self.failed(e))?
            };
            if claimed.is_some() {
                return Ok(ClaimOutcome::Claimed);
            }
            if let Some(existing) = self.get_idempotency(claim.key).await? {
                return existing_claim_outcome(existing, claim);
            }
        }
        Err(IdempotencyError::InProgress(claim.key.to_owned()))
    }

    async fn complete(&self, completion: &IdempotencyCompletion<'_>) -> Result<(), StoreError> {
        let client = self.client().await?;
        complete_idempotency(self, &*client, completion).await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM idempotency_records WHERE id = $1 AND status = 'INPROGRESS'",
                &[&key],
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn forget(&self, key: &str, response: &serde_json::Value) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM idempotency_records
                 WHERE id = $1 AND status = 'COMPLETED' AND response = $2::text::jsonb",
                &[&key, &response.to_string()],
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn get_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT status, payload_hash, expiration, in_progress_expiry, response::text
                 FROM idempotency_records WHERE id = $1",
                &[&key],
            )
            .await
            .map_err(|e| self.failed(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let response = stored_response(key, "response", row.get(4))?;
        Ok(Some(IdempotencyRecord {
            id: key.to_owned(),
            status: IdempotencyStatus::parse(key, row.get(0))?,
            payload_hash: row.get(1),
            expiration: row.get(2),
            in_progress_expiry: row.get(3),
            response,
            claim_token: None,
        }))
    }
}

fn saga_from_row(row: &Row) -> Result<SagaRecord, StoreError> {
    let id: String = row.get(0);
    let status: &str = row.get(1);
    let request: &str = row.get(3);
    let steps: &str = row.get(7);
    Ok(SagaRecord {
        status: status.parse().map_err(|e| StoreError::corrupt(&id, e))?,
        version: u64::try_from(row.get::<_, i64>(2))
            .map_err(|e| StoreError::corrupt(&id, format!("version: {e}")))?,
        request: serde_json::from_str(request)
            .map_err(|e| StoreError::corrupt(&id, format!("request: {e}")))?,
        error: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
        steps: serde_json::from_str::<Vec<StepRecord>>(steps)
            .map_err(|e| StoreError::corrupt(&id, format!("steps: {e}")))?,
        transaction_id: id,
    })
}

/// The server's message with its detail when there is one (the driver's `Display` alone says
/// only "db error").
pub(crate) fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

pub(crate) fn db_error(error: tokio_postgres::Error) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: error_text(&error),
    }
}
