//! The PostgreSQL store's schema: the embedded, versioned migrations, the step that applies them
//! ([`migrate`], run as the database's owner by a deploy step, never by a function starting),
//! the least-privilege application role it grants, and the check a function makes at connect
//! time that the schema is the one it needs.
//!
//! Each migration runs in a transaction of its own under a transaction-level advisory lock
//! (`pg_advisory_xact_lock`): two migration steps running at once apply each migration once, and
//! through RDS Proxy the lock pins the connection only for that transaction, where a
//! session-level lock would pin it for the session.

use sagaform_contract::database::{MIGRATIONS, Migration};
use tokio_postgres::{Client, GenericClient, Transaction};
use tracing::{info, warn};

use crate::errors::StoreError;
use crate::store::postgres::{PostgresSettings, db_error, error_text, open};

/// How long a migration waits for a table lock before it fails the step.
const MIGRATION_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long one statement of a migration may run before it fails the step, well inside the
/// migrate function's timeout so that the step still answers CloudFormation.
const MIGRATION_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Key of the transaction-level advisory lock that serialises migration steps running at once.
pub const MIGRATION_LOCK: i64 = 0x5a6a_f0e3_0001;

/// The schema version this binary needs: its newest migration.
pub fn required_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What the deploy step is called in the errors that send an operator to it.
const DEPLOY_STEP: &str =
    "the database migration step (`cargo xtask deploy` runs it before the functions start)";

/// The role the functions log in as, which [`migrate`] creates or updates.
#[derive(Clone)]
pub struct AppRole {
    /// Role name (a PostgreSQL identifier; quoted by the server).
    pub name: String,
    /// Its password (from its own secret on AWS); `None` with trust authentication (local).
    pub password: Option<String>,
}

impl std::fmt::Debug for AppRole {
    // The password must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRole")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Connects with `settings` (the owner: the cluster's master user, or `postgres` locally),
/// applies the migrations the database lacks and, given `app_role`, creates or updates that
/// role with data manipulation rights only. Returns the versions applied by this call.
pub async fn migrate(
    settings: &PostgresSettings,
    app_role: Option<&AppRole>,
) -> Result<Vec<i32>, StoreError> {
    let mut client = open(settings).await.map_err(|failure| failure.error)?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        if apply_one(&mut client, migration).await? {
            applied.push(migration.version);
        }
    }
    if let Some(role) = app_role {
        grant_app_role(&mut client, role).await?;
    }
    Ok(applied)
}

/// The configuration error of a failed statement of `what`.
fn failure(what: String) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Config(format!("{what}: {}", error_text(&e)))
}

/// A transaction holding the migration lock until it ends.
async fn locked_transaction<'c>(
    client: &'c mut Client,
    failed: &impl Fn(tokio_postgres::Error) -> StoreError,
) -> Result<Transaction<'c>, StoreError> {
    let transaction = client.transaction().await.map_err(db_error)?;
    // A lock queued behind saga traffic must end the step with an error CloudFormation can
    // show, not run into the function's timeout without an answer.
    transaction
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '{}s'; SET LOCAL statement_timeout = '{}s'",
            MIGRATION_LOCK_TIMEOUT.as_secs(),
            MIGRATION_STATEMENT_TIMEOUT.as_secs()
        ))
        .await
        .map_err(failed)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    Ok(transaction)
}

/// Applies `migration` unless it is applied already; whether it was applied now.
async fn apply_one(client: &mut Client, migration: &Migration) -> Result<bool, StoreError> {
    let failed = &failure(format!("database migration {}", migration.name));
    let transaction = locked_transaction(client, failed).await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(failed)?;
    let newest = newest_version(&transaction).await?;
    if newest > required_version() {
        // A rollback runs the older step against the newer schema: migrations only add, so
        // the older code works on it, and refusing would leave the stack UPDATE_ROLLBACK_FAILED.
        warn!(
            newest,
            known = required_version(),
            "database schema is newer than this binary knows; nothing to apply"
        );
        transaction.commit().await.map_err(failed)?;
        return Ok(false);
    }
    let done = transaction
        .query_opt(
            "SELECT 1 FROM schema_migrations WHERE version = $1",
            &[&migration.version],
        )
        .await
        .map_err(failed)?
        .is_some();
    if done {
        transaction.commit().await.map_err(failed)?;
        return Ok(false);
    }
    transaction
        .batch_execute(migration.sql)
        .await
        .map_err(failed)?;
    transaction
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(failed)?;
    transaction.commit().await.map_err(failed)?;
    info!(
        version = migration.version,
        name = migration.name,
        "applied database migration"
    );
    Ok(true)
}

/// The newest schema version applied (0 for none).
async fn newest_version(client: &impl GenericClient) -> Result<i32, StoreError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db_error)?;
    Ok(row.get(0))
}

/// Creates the application role when it does not exist, lets it log in (with its password when
/// it has one) and grants it, in the current schema, reading and writing the saga tables and
/// reading the views and `schema_migrations`: no DDL, no `CREATE` on the schema, so a function
/// cannot change the schema or drop data wholesale. Under the migration lock, so that two
/// steps do not race on `CREATE ROLE`.
async fn grant_app_role(client: &mut Client, role: &AppRole) -> Result<(), StoreError> {
    let failed = &failure(format!("database application role {}", role.name));
    let transaction = locked_transaction(client, failed).await?;
    let exists = transaction
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role.name])
        .await
        .map_err(failed)?
        .is_some();
    // Statements that name a role cannot take it as a parameter, so the server quotes the name
    // and the password into the statement text (`format` with %I and %L).
    let mut statements = vec![
        if exists {
            transaction
                .query_one(
                    "SELECT format('ALTER ROLE %I LOGIN', $1::text)",
                    &[&role.name],
                )
                .await
        } else {
            transaction
                .query_one(
                    "SELECT format('CREATE ROLE %I LOGIN', $1::text)",
                    &[&role.name],
                )
                .await
        }
        .map_err(failed)?
        .get::<_, String>(0),
    ];
    if let Some(password) = &role.password {
        // The server gets a SCRAM verifier, never the password: a statement's text can reach
        // the server's log (a failed statement is logged with its text) or its statistics.
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        statements.push(
            transaction
                .query_one(
                    "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
                    &[&role.name, &verifier],
                )
                .await
                .map_err(failed)?
                .get(0),
        );
    }
    let grants = transaction
        .query(
            "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), $1::text)
             UNION ALL
             SELECT format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), $1::text)
             UNION ALL
             SELECT format('GRANT %s ON %I.%I TO %I',
                           CASE WHEN c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations'
                                THEN 'SELECT, INSERT, UPDATE, DELETE' ELSE 'SELECT' END,
                           n.nspname, c.relname, $1::text)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v')
             UNION ALL
             SELECT format('GRANT USAGE ON SEQUENCE %I.%I TO %I', n.nspname, c.relname, $1::text)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'S'",
            &[&role.name],
        )
        .await
        .map_err(failed)?;
    statements.extend(grants.iter().map(|row| row.get::<_, String>(0)));
    for statement in statements {
        transaction
            .batch_execute(&statement)
            .await
            .map_err(failed)?;
    }
    transaction.commit().await.map_err(failed)?;
    info!(role = %role.name, "database application role granted");
    Ok(())
}

/// Checks, at connect time, that the schema is the one this binary needs: older means the
/// migration step has not run (a function never migrates: it has no right to), and is refused;
/// newer means the code is older than the database (between the migration step and the
/// function's update, or after a rollback), and is accepted since migrations only add.
pub(crate) async fn check_version(client: &Client) -> Result<(), StoreError> {
    let required = required_version();
    let exists = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(db_error)?
        .get::<_, bool>(0);
    let newest = if exists {
        newest_version(client).await?
    } else {
        0
    };
    if newest < required {
        return Err(StoreError::Config(format!(
            "database schema version {newest} is older than this binary needs ({required}); run {DEPLOY_STEP}"
        )));
    }
    if newest > required {
        // Migrations only add (see sagaform_contract::database::MIGRATIONS), so this code still works on a newer schema:
        // the window between the migration step and a function's update, or a rollback.
        warn!(
            newest,
            required, "database schema is newer than this binary knows; running on it"
        );
    }
    Ok(())
}
