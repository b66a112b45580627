//! The Aurora database's names that cross a process boundary: the application role the
//! functions log in as (the stacks crate writes it into the local database URL, the local
//! environment and the migration step create it, the functions connect as it), and the JSON
//! shape of a database secret (RDS writes the managed master secret, Secrets Manager generates
//! the application role's; the functions and the migration step read them).

use serde::{Deserialize, Serialize};

/// The least-privilege role the functions connect as: data manipulation on the saga tables and
/// reading the views, no DDL. The migration step, connected as the owner, creates it.
pub const APP_ROLE: &str = "sagaform_app";

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
