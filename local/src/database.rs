//! The local PostgreSQL databases of the local environment: the orchestrator's Aurora store is,
//! locally, a database of the PostgreSQL server on this machine, named by the template's
//! `LocalDatabaseUrl` default. A database goes with its stack (a destroyed or new stack starts
//! empty, as its emulated tables do); the functions apply their schema migrations themselves.

use sagaform_deploy::template::Template;
use sagaform_deploy::{DeployError, Workspace};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::{EnvConfig, StoreKind};

use crate::LocalError;

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

/// Creates the database of `url` on its server when it does not exist yet (the functions apply
/// their schema migrations themselves); returns whether it was created.
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
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
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
}
