//! Wiring: builds the store, the API client and the syncer from the configuration.

use secrecy::{ExposeSecret, SecretString};

use crate::{
    config::Config,
    partnerstack::{ApiClient, ClientConfig},
    store::Store,
    sync::{SyncSettings, Syncer},
};

/// Why the pieces could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("`database.url` is not set (or DATABASE_URL)")]
    NoDatabase,
    #[error("`partnerstack.public_key` and `partnerstack.private_key` (or PARTNERSTACK_PUBLIC_KEY / PARTNERSTACK_PRIVATE_KEY, or private_key_file) are required")]
    NoCredentials,
    #[error("cannot connect to the database")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot build the PartnerStack client")]
    Api(#[from] crate::partnerstack::ApiError),
}

/// Connects to the configured database (migrations are the caller's choice).
pub async fn store(config: &Config) -> Result<Store, WiringError> {
    let url = config.database.url.as_ref().ok_or(WiringError::NoDatabase)?;
    Ok(Store::connect(url.expose_secret(), &config.database.schema, config.database.max_connections).await?)
}

/// The API client for the configured account.
pub fn api_client(config: &Config) -> Result<ApiClient, WiringError> {
    let p = &config.partnerstack;
    let private_key = p.private_key.clone().filter(|_| !p.public_key.is_empty()).ok_or(WiringError::NoCredentials)?;
    Ok(ApiClient::new(client_config(config, private_key))?)
}

fn client_config(config: &Config, private_key: SecretString) -> ClientConfig {
    let p = &config.partnerstack;
    ClientConfig {
        base_url: p.api_url.clone(),
        public_key: p.public_key.clone(),
        private_key,
        requests_per_second: p.requests_per_second,
        timeout: p.timeout,
        max_retries: p.max_retries,
        min_backoff: std::time::Duration::from_millis(200),
        max_backoff: std::time::Duration::from_secs(30),
        page_size: p.page_size,
        user_agent: concat!("partnerstack-mirror/", env!("CARGO_PKG_VERSION")).to_owned(),
    }
}

/// Store (migrated) + client + syncer.
pub async fn syncer(config: &Config, shutdown: tokio_util::sync::CancellationToken) -> Result<Syncer, WiringError> {
    let api = api_client(config)?;
    let store = store(config).await?;
    store.migrate().await?;
    Ok(Syncer::new(api, store, SyncSettings::from(&config.sync), shutdown))
}
