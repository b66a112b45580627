//! The Aurora database's names that cross a process boundary: the application role the
//! functions log in as (the stacks crate writes it into the local database URL, the local
//! environment and the migration step create it, the functions connect as it), and the JSON
//! shape of a database secret (RDS writes the managed master secret, Secrets Manager generates
//! the application role's; the functions and the migration step read them), and the schema's
//! migrations (the runtime applies them, the stacks crate hashes them into the template so that
//! a schema change runs the migration step again).

use serde::{Deserialize, Serialize};

/// The least-privilege role the functions connect as: data manipulation on the saga tables and
/// reading the views, no DDL. The migration step, connected as the owner, creates it.
pub const APP_ROLE: &str = "sagaform_app";

/// A schema change: its version (the order it applies in), its name and its SQL, from
/// `functions/runtime/migrations/<version, 4 digits>_<name>.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The version, 1 and up, one more than the previous migration's.
    pub version: i32,
    /// What it does, as in its file name.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// The schema, in order; a migration once released is never edited, only followed by another.
///
/// Migrations only add (tables, columns with defaults, views, indexes), never change or drop
/// what the previous release uses: the migration step runs before the functions are updated,
/// and a rollback after it leaves the newer schema under the older code, which must keep
/// working on it.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "sagas_steps_idempotency",
        sql: include_str!("../../functions/runtime/migrations/0001_sagas_steps_idempotency.sql"),
    },
    Migration {
        version: 2,
        name: "operations_views",
        sql: include_str!("../../functions/runtime/migrations/0002_operations_views.sql"),
    },
    Migration {
        version: 3,
        name: "compensation_attempts",
        sql: include_str!("../../functions/runtime/migrations/0003_compensation_attempts.sql"),
    },
    Migration {
        version: 4,
        name: "in_doubt",
        sql: include_str!("../../functions/runtime/migrations/0004_in_doubt.sql"),
    },
];

/// A database secret's value: the JSON object RDS and `GenerateSecretString` produce. Other
/// fields (`engine`, `host`, ...) may be present and are ignored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSecret {
    /// The role to log in as.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for DatabaseSecret {
    // The password must never reach a log line or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSecret")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_once_in_version_order() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../functions/runtime/migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(
            on_disk, listed,
            "a new migration must be added to MIGRATIONS"
        );
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i32 + 1);
        }
    }

    #[test]
    fn a_secret_round_trips_and_reads_what_rds_writes() {
        let secret = DatabaseSecret {
            username: APP_ROLE.to_owned(),
            password: "s3cret".to_owned(),
        };
        let text = serde_json::to_string(&secret).unwrap();
        assert_eq!(text, r#"{"username":"sagaform_app","password":"s3cret"}"#);
        assert_eq!(
            serde_json::from_str::<DatabaseSecret>(&text).unwrap(),
            secret
        );
        // The managed master secret carries more fields; they are ignored.
        let managed =
            r#"{"username":"sagaform_admin","password":"p","engine":"postgres","port":5432}"#;
        assert_eq!(
            serde_json::from_str::<DatabaseSecret>(managed)
                .unwrap()
                .username,
            "sagaform_admin"
        );
        assert!(!format!("{secret:?}").contains("s3cret"));
    }
}
