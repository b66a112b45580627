//! What a function that runs sagas opens once per instance, before its first invocation: the
//! state store and the client of the saga's SaaS services, both configured from the
//! environment.

use sagaform_saas_client::SaasClient;
use sagaform_saga::Saga;

use crate::errors::StoreError;
use crate::store::{ConfiguredStore, StoreConfig};

/// The store or the SaaS client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The state store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The SaaS services.
    #[error(transparent)]
    Saas(#[from] sagaform_saas_client::ConfigError),
}

/// Opens the configured store (connecting, and migrating a database) and builds the client of
/// `saga`'s services.
pub async fn store_and_client_from_env(
    saga: &Saga,
) -> Result<(ConfiguredStore, SaasClient), SetupError> {
    let store = StoreConfig::from_env()?.connect().await?;
    let client = SaasClient::from_env(saga)?;
    Ok((store, client))
}
