//! The local PostgreSQL databases of the local environment: the orchestrator's Aurora store is,
//! locally, a database of the PostgreSQL server on this machine, named by the template's
//! `LocalDatabaseUrl` default. A database goes with its stack (a destroyed or new stack starts
//! empty, as its emulated tables do).
//!
//! The URL names the application role the functions log in as; the local environment, as the
//! server's superuser (the owner), creates the database, applies the schema migrations and
//! creates that role with data manipulation rights only, before the functions start: the
//! migration step AWS runs as a deploy step, here run by `cargo xtask deploy` itself.

use sagaform_deploy::template::Template;
use sagaform_deploy::{DeployError, Workspace};
use sagaform_runtime::store::{AppRole, PostgresSettings, migrate};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::{EnvConfig, StoreKind};

use crate::LocalError;

/// The local server's superuser (trust authentication), which owns the local databases.
const LOCAL_OWNER: &str = "postgres";

/// The local database of a deployed stack, by its connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDatabase {
    url: String,
}

impl LocalDatabase {
    /// The database the committed template of `pattern` in `env` connects to, when its store is
    /// Aurora (`None` for a DynamoDB store, or a template without `LocalDatabaseUrl`).
    pub fn of_stack(
        workspace: &Workspace,
        env: &EnvConfig,
        pattern: Pattern,
    ) -> Result<Option<LocalDatabase>, LocalError> {
        if env.store(pattern) != StoreKind::Aurora {
            return Ok(None);
        }
        let path = workspace.template_path(pattern, &env.name);
        let body = std::fs::read_to_string(&path).map_err(LocalError::io("read", &path))?;
        Ok(
            local_database_url(&body, &path.display().to_string())?
                .map(|url| LocalDatabase { url }),
        )
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates it when it does not exist yet; returns whether it was created.
    pub async fn ensure(&self) -> Result<bool, LocalError> {
        ensure_database(&self.url).await
    }

    /// Applies the schema migrations as the owner and grants the URL's user (the application
    /// role) what the functions need; returns the versions applied now.
    pub async fn migrate(&self) -> Result<Vec<i32>, LocalError> {
        let mut settings = PostgresSettings::from_url(&self.url)
            .map_err(|e| LocalError::Services(format!("database url {}: {e}", self.url)))?;
        let app_role = settings
            .config
            .get_user()
            .filter(|user| *user != LOCAL_OWNER)
            .map(|user| AppRole {
                name: user.to_owned(),
                password: None,
            });
        settings.config.user(LOCAL_OWNER);
        migrate(&settings, app_role.as_ref())
            .await
            .map_err(|e| LocalError::Services(format!("migrating database {}: {e}", self.url)))
    }

    /// Drops it with its data; returns whether there was one.
    pub async fn drop_all(&self) -> Result<bool, LocalError> {
        drop_database(&self.url).await
    }
}

/// The `LocalDatabaseUrl` default of a template (the orchestrator on Aurora locally), if any.
pub fn local_database_url(template_body: &str, file: &str) -> Result<Option<String>, DeployError> {
    let template = Template::parse(file, template_body)?;
    Ok(template
        .section("Parameters")
        .into_iter()
        .find(|(name, _)| name == "LocalDatabaseUrl")
        .and_then(|(_, parameter)| {
            parameter
                .get("Default")
                .and_then(|d| d.as_str())
                .map(str::to_owned)
        }))
}

/// Creates the database of `url` on its server when it does not exist yet (empty: the
/// migrations come after); returns whether it was created.
async fn ensure_database(url: &str) -> Result<bool, LocalError> {
    let (name, client, connection) = connect_maintenance(url).await?;
    let exists = database_exists(&client, &name).await?;
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| LocalError::Services(format!("creating database {name}: {e}")))?;
    }
    drop(client);
    let _ = connection.await;
    Ok(!exists)
}

/// Drops the database of `url` with its data, closing the connections still open to it (a
/// destroyed local stack keeps no state, as its emulated tables do not); returns whether there
/// was one.
async fn drop_database(url: &str) -> Result<bool, LocalError> {
    let (name, client, connection) = connect_maintenance(url).await?;
    let exists = database_exists(&client, &name).await?;
    if exists {
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .map_err(|e| LocalError::Services(format!("dropping database {name}: {e}")))?;
    }
    drop(client);
    let _ = connection.await;
    Ok(exists)
}

/// The database name of `url` (checked to need no quoting beyond double quotes) and a
/// connection to the server's `postgres` database, from which databases are created and
/// dropped.
async fn connect_maintenance(
    url: &str,
) -> Result<
    (
        String,
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
    LocalError,
> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| LocalError::Services(format!("database url {url}: {e}")))?;
    let name = config
        .get_dbname()
        .ok_or_else(|| LocalError::Services(format!("database url {url}: no database name")))?
        .to_owned();
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(LocalError::Services(format!(
            "database url {url}: the name {name} has characters other than letters, digits, _ and -"
        )));
    }
    // As the owner: the URL's user is the application role, which may not exist yet and may
    // not create databases.
    let mut maintenance = config.clone();
    maintenance.dbname("postgres").user(LOCAL_OWNER);
    let (client, connection) = maintenance
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            LocalError::Services(format!(
                "cannot reach the local PostgreSQL server of {url} (the orchestrator's store locally): {e}"
            ))
        })?;
    Ok((name, client, tokio::spawn(connection)))
}

async fn database_exists(client: &tokio_postgres::Client, name: &str) -> Result<bool, LocalError> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| LocalError::Services(format!("looking up database {name}: {e}")))?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_database_url_is_read_from_the_template_default() {
        let body = "Parameters:\n  LocalDatabaseUrl:\n    Type: String\n    Default: postgres://postgres@127.0.0.1:5432/sagaform\nResources: {}\n";
        assert_eq!(
            local_database_url(body, "t.yaml").unwrap().as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/sagaform")
        );
        assert_eq!(
            local_database_url("Resources: {}\n", "t.yaml").unwrap(),
            None
        );
    }

    /// The tests' PostgreSQL server (trust authentication for every role).
    async fn admin() -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            "postgres://postgres@127.0.0.1:5432/test",
            tokio_postgres::NoTls,
        )
        .await
        .expect("the local PostgreSQL server (trust auth, database test)");
        tokio::spawn(connection);
        client
    }

    #[tokio::test]
    async fn deploy_migrates_the_local_database_and_the_functions_reach_it_as_the_application_role()
    {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let role = format!("sagaform_app_{id}");
        let url = format!("postgres://{role}@127.0.0.1:5432/sagaform_local_{id}");
        let database = LocalDatabase { url: url.clone() };
        assert!(database.ensure().await.unwrap());
        assert_eq!(database.migrate().await.unwrap(), [1, 2, 3, 4]);
        // A redeploy finds nothing to apply and grants again.
        assert_eq!(database.migrate().await.unwrap(), Vec::<i32>::new());
        let (app, connection) = url
            .parse::<tokio_postgres::Config>()
            .unwrap()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("the application role logs in");
        let connection = tokio::spawn(connection);
        let user: String = app
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(user, role);
        app.batch_execute(
            "INSERT INTO sagas (transaction_id, status, version, request, created_at, updated_at)
             VALUES ('t-1', 'PENDING', 1, '{}', now(), now());
             UPDATE sagas SET status = 'RUNNING', version = 2 WHERE transaction_id = 't-1'",
        )
        .await
        .expect("the application role writes sagas");
        let refused = app
            .batch_execute("CREATE TABLE sneaky (id int)")
            .await
            .unwrap_err();
        assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused}");
        drop(app);
        let _ = connection.await;
        assert!(database.drop_all().await.unwrap());
        admin()
            .await
            .batch_execute(&format!("DROP ROLE {role}"))
            .await
            .unwrap();
    }
}
