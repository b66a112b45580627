//! Where each downstream service lives and how long a call to it may take, read from the
//! function's environment (`SAGAFORM_SAAS_<SERVICE>_URL`, `..._CONNECT_TIMEOUT_MS`,
//! `..._REQUEST_TIMEOUT_MS`) or given explicitly by tests and tools.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use sagaform_contract::env::{SaasSetting, saas_variable};
use sagaform_saga::Saga;

/// A configuration value that is missing or unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required environment variable is not set.
    #[error("environment variable {var}: not set")]
    MissingVar {
        /// The variable's name.
        var: String,
    },
    /// An environment variable holds a value that cannot be used.
    #[error("environment variable {var}: {reason} (got {value:?})")]
    InvalidVar {
        /// The variable's name.
        var: String,
        /// The value found.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A service was configured with an unusable value.
    #[error("saas service {service}: {key}: {reason}")]
    InvalidService {
        /// The service's name.
        service: String,
        /// The offending setting (`url`, `connect_timeout`, `request_timeout`).
        key: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// The saga calls a service that has no configuration.
    #[error("saas service {service}: not configured (the saga calls it)")]
    MissingService {
        /// The service's name.
        service: String,
    },
    /// The HTTP client could not be built (for instance no TLS root certificates).
    #[error("saas http client: {reason}")]
    Client {
        /// What the HTTP library reported.
        reason: String,
    },
}

/// Base URL and timeouts of one downstream service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    base_url: Url,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl ServiceConfig {
    /// A service reached at `base_url` (`http` or `https`; a trailing `/` is ignored), with a
    /// TCP + TLS connect timeout and a timeout for one whole request (connect, send, answer).
    pub fn new(
        service: &str,
        base_url: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let invalid = |key, reason: String| ConfigError::InvalidService {
            service: service.to_owned(),
            key,
            reason,
        };
        let url = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| invalid("url", format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "url",
                format!("scheme {} is not http or https", url.scheme()),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "url",
                "a base URL takes no query or fragment".to_owned(),
            ));
        }
        if connect_timeout.is_zero() {
            return Err(invalid(
                "connect_timeout",
                "must be greater than zero".to_owned(),
            ));
        }
        if request_timeout.is_zero() {
            return Err(invalid(
                "request_timeout",
                "must be greater than zero".to_owned(),
            ));
        }
        Ok(Self {
            base_url: url,
            connect_timeout,
            request_timeout,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.base_url.as_str().trim_end_matches('/')
    }

    /// The TCP + TLS connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The timeout of one whole request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The URL of an action or compensation: `{base_url}/{action}`.
    pub(crate) fn action_url(&self, action: &str) -> String {
        format!("{}/{action}", self.base_url())
    }
}

/// The configuration of every downstream service, by service name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaasConfig {
    services: BTreeMap<String, ServiceConfig>,
}

impl SaasConfig {
    /// No service yet; add them with [`SaasConfig::with_service`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the configuration of one service.
    pub fn with_service(mut self, service: &str, config: ServiceConfig) -> Self {
        self.services.insert(service.to_owned(), config);
        self
    }

    /// Reads every service the saga calls from the process environment.
    pub fn from_env(saga: &Saga) -> Result<Self, ConfigError> {
        Self::from_lookup(saga, |var| std::env::var(var).ok())
    }

    /// Reads every service the saga calls through `lookup` (an environment, a map in a test).
    pub fn from_lookup(
        saga: &Saga,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::new();
        for service in saga.services() {
            let url_var = saas_variable(service, SaasSetting::Url);
            let url = lookup(&url_var).ok_or(ConfigError::MissingVar {
                var: url_var.clone(),
            })?;
            let connect = millis_var(
                &lookup,
                &saas_variable(service, SaasSetting::ConnectTimeoutMs),
            )?;
            let request = millis_var(
                &lookup,
                &saas_variable(service, SaasSetting::RequestTimeoutMs),
            )?;
            let service_config =
                ServiceConfig::new(service, &url, connect, request).map_err(|e| match e {
                    ConfigError::InvalidService {
                        key: "url", reason, ..
                    } => ConfigError::InvalidVar {
                        var: url_var.clone(),
                        value: url.clone(),
                        reason,
                    },
                    other => other,
                })?;
            config = config.with_service(service, service_config);
        }
        Ok(config)
    }

    /// The configuration of one service.
    pub fn service(&self, service: &str) -> Option<&ServiceConfig> {
        self.services.get(service)
    }

    /// Every configured service, by name.
    pub fn services(&self) -> impl Iterator<Item = (&str, &ServiceConfig)> {
        self.services
            .iter()
            .map(|(name, config)| (name.as_str(), config))
    }

    /// Checks that every service the saga calls is configured.
    pub fn check_covers(&self, saga: &Saga) -> Result<(), ConfigError> {
        match saga
            .services()
            .into_iter()
            .find(|s| !self.services.contains_key(*s))
        {
            Some(missing) => Err(ConfigError::MissingService {
                service: missing.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

fn millis_var(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Duration, ConfigError> {
    let value = lookup(var).ok_or_else(|| ConfigError::MissingVar {
        var: var.to_owned(),
    })?;
    let invalid = |reason: &str| ConfigError::InvalidVar {
        var: var.to_owned(),
        value: value.clone(),
        reason: reason.to_owned(),
    };
    let millis: u64 = value
        .trim()
        .parse()
        .map_err(|_| invalid("not a whole number of milliseconds"))?;
    if millis == 0 {
        return Err(invalid("must be greater than zero"));
    }
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaform_saga::PURCHASE;
    use std::collections::HashMap;

    fn full_env() -> HashMap<String, String> {
        let mut env = HashMap::new();
        for service in PURCHASE.services() {
            env.insert(
                saas_variable(service, SaasSetting::Url),
                format!("http://127.0.0.1:9320/{service}/"),
            );
            env.insert(
                saas_variable(service, SaasSetting::ConnectTimeoutMs),
                "250".to_owned(),
            );
            env.insert(
                saas_variable(service, SaasSetting::RequestTimeoutMs),
                "3000".to_owned(),
            );
        }
        env
    }

    #[test]
    fn every_service_of_the_saga_is_read_from_the_environment() {
        let env = full_env();
        let config = SaasConfig::from_lookup(&PURCHASE, |v| env.get(v).cloned()).unwrap();
        config.check_covers(&PURCHASE).unwrap();
        let payments = config.service("payments").unwrap();
        assert_eq!(payments.base_url(), "http://127.0.0.1:9320/payments");
        assert_eq!(
            payments.action_url("charge"),
            "http://127.0.0.1:9320/payments/charge"
        );
        assert_eq!(payments.connect_timeout(), Duration::from_millis(250));
        assert_eq!(payments.request_timeout(), Duration::from_secs(3));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let mut env = full_env();
        env.remove("SAGAFORM_SAAS_PAYMENTS_REQUEST_TIMEOUT_MS");
        let err = SaasConfig::from_lookup(&PURCHASE, |v| env.get(v).cloned()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SAGAFORM_SAAS_PAYMENTS_REQUEST_TIMEOUT_MS: not set"
        );
    }

    #[test]
    fn unusable_values_are_refused_with_the_variable_and_reason() {
        let mut env = full_env();
        env.insert(
            "SAGAFORM_SAAS_INVENTORY_CONNECT_TIMEOUT_MS".into(),
            "1.5s".into(),
        );
        let err = SaasConfig::from_lookup(&PURCHASE, |v| env.get(v).cloned()).unwrap_err();
        assert!(err.to_string().starts_with(
            "environment variable SAGAFORM_SAAS_INVENTORY_CONNECT_TIMEOUT_MS: not a whole number"
        ));

        let mut env = full_env();
        env.insert(
            "SAGAFORM_SAAS_INVENTORY_URL".into(),
            "ftp://example.com".into(),
        );
        let err = SaasConfig::from_lookup(&PURCHASE, |v| env.get(v).cloned()).unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidVar { ref var, .. } if var == "SAGAFORM_SAAS_INVENTORY_URL")
        );

        let mut env = full_env();
        env.insert(
            "SAGAFORM_SAAS_ENTITLEMENTS_REQUEST_TIMEOUT_MS".into(),
            "0".into(),
        );
        let err = SaasConfig::from_lookup(&PURCHASE, |v| env.get(v).cloned()).unwrap_err();
        assert!(err.to_string().contains("must be greater than zero"));
    }

    #[test]
    fn a_config_missing_a_service_of_the_saga_is_refused() {
        let one = ServiceConfig::new(
            "inventory",
            "http://127.0.0.1:1/inventory",
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        let err = SaasConfig::new()
            .with_service("inventory", one)
            .check_covers(&PURCHASE)
            .unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingService {
                service: "payments".into()
            }
        );
    }
}
