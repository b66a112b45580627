//! Registration of a local Invoke API with the moto launcher (`sagaform_tools::moto::LAUNCHER`),
//! which then forwards the Lambda invokes of the registered functions, Step Functions Tasks
//! included, to it. Registrations are per function, so the local environments of several
//! stacks can share one moto.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::LocalError;

/// What the launcher forwards: per function, else the default endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Endpoint for functions without their own registration.
    pub default_endpoint: Option<String>,
    /// Endpoint per function name.
    pub routes: BTreeMap<String, String>,
}

impl Forwarding {
    /// Where an invoke of `function` goes.
    pub fn endpoint_for(&self, function: &str) -> Option<&str> {
        self.routes
            .get(function)
            .or(self.default_endpoint.as_ref())
            .map(String::as_str)
    }
}

/// The forwarding of the moto at `endpoint`, or `None` when it was not started by the sagaform
/// launcher (it cannot forward).
pub async fn forwarding(endpoint: &str) -> Result<Option<Forwarding>, LocalError> {
    let endpoint = endpoint.to_owned();
    blocking(move || forwarding_blocking(&endpoint)).await
}

fn forwarding_blocking(endpoint: &str) -> Result<Option<Forwarding>, LocalError> {
    let config = moto_api(endpoint, "GET", None)?;
    let Some(section) = config.get("sagaform") else {
        return Ok(None);
    };
    if section.get("invoke_forwarding").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let routes = section
        .get("routes")
        .and_then(Value::as_object)
        .map(|routes| {
            routes
                .iter()
                .filter_map(|(name, url)| Some((name.clone(), url.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Forwarding {
        default_endpoint: section
            .get("default_endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned),
        routes,
    }))
}

/// Makes moto forward invokes of `functions` (of every function without a registration of its
/// own when `None`) to `invoke_url`. Fails when this moto cannot forward, so that Step
/// Functions Tasks do not silently get moto's canned answers.
pub async fn register(
    endpoint: &str,
    invoke_url: &str,
    functions: Option<Vec<String>>,
) -> Result<(), LocalError> {
    if forwarding(endpoint).await?.is_none() {
        return Err(LocalError::Moto {
            endpoint: endpoint.to_owned(),
            reason: "it cannot forward Lambda invokes to local functions: start it with the \
                     sagaform launcher (sagaform_tools::moto::start_detached or MotoServer::start)"
                .to_owned(),
        });
    }
    let mut section = json!({"invoke_endpoint": invoke_url});
    if let Some(functions) = functions {
        section["functions"] = json!(functions);
    }
    let body = json!({ "sagaform": section }).to_string();
    let endpoint = endpoint.to_owned();
    blocking(move || moto_api(&endpoint, "POST", Some(body)).map(drop)).await
}

/// Removes every registration of `invoke_url` (those of other environments stay).
pub async fn unregister(endpoint: &str, invoke_url: &str) -> Result<(), LocalError> {
    let (endpoint, invoke_url) = (endpoint.to_owned(), invoke_url.to_owned());
    blocking(move || unregister_blocking(&endpoint, &invoke_url)).await
}

/// [`unregister`] for synchronous callers (stopping a crashed environment by its state file).
pub fn unregister_blocking(endpoint: &str, invoke_url: &str) -> Result<(), LocalError> {
    if forwarding_blocking(endpoint)?.is_none() {
        return Ok(());
    }
    let body = json!({"sagaform": {"unregister": invoke_url}}).to_string();
    moto_api(endpoint, "POST", Some(body)).map(drop)
}

async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, LocalError> + Send + 'static,
) -> Result<T, LocalError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| LocalError::Moto {
            endpoint: String::new(),
            reason: format!("control call did not complete: {e}"),
        })?
}

fn moto_api(endpoint: &str, method: &str, body: Option<String>) -> Result<Value, LocalError> {
    let failure = |reason: String| LocalError::Moto {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let addr = socket_addr(endpoint).ok_or_else(|| {
        failure("only http://HOST:PORT endpoints with an IP address are supported".to_owned())
    })?;
    let response = sagaform_tools::http::request(
        addr,
        method,
        "/moto-api/config",
        body.as_deref(),
        Duration::from_secs(10),
    )
    .map_err(|e| failure(format!("/moto-api/config: {e}")))?;
    if response.status / 100 != 2 {
        return Err(failure(format!(
            "/moto-api/config answered {}: {}",
            response.status, response.body
        )));
    }
    serde_json::from_str(&response.body)
        .map_err(|e| failure(format!("/moto-api/config is not JSON: {e}")))
}

/// `127.0.0.1:5000` out of `http://127.0.0.1:5000` (or `localhost`).
pub(crate) fn socket_addr(endpoint: &str) -> Option<SocketAddr> {
    let authority = endpoint
        .strip_prefix("http://")?
        .split('/')
        .next()?
        .replace("localhost", "127.0.0.1");
    authority.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_socket_addresses() {
        assert_eq!(
            socket_addr("http://127.0.0.1:5000").unwrap().to_string(),
            "127.0.0.1:5000"
        );
        assert_eq!(
            socket_addr("http://localhost:5000/").unwrap().to_string(),
            "127.0.0.1:5000"
        );
        assert!(socket_addr("https://example.com").is_none());
    }

    #[test]
    fn a_function_route_wins_over_the_default_endpoint() {
        let forwarding = Forwarding {
            default_endpoint: Some("http://127.0.0.1:1".into()),
            routes: BTreeMap::from([("api".into(), "http://127.0.0.1:2".into())]),
        };
        assert_eq!(forwarding.endpoint_for("api"), Some("http://127.0.0.1:2"));
        assert_eq!(forwarding.endpoint_for("other"), Some("http://127.0.0.1:1"));
        assert_eq!(Forwarding::default().endpoint_for("api"), None);
    }
}
