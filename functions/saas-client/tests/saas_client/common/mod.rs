//! Shared set-up of the client tests: a fake SaaS server on a free loopback port and a client
//! configured against it.

use std::time::Duration;

use sagaform_fake_saas::FakeSaas;
use sagaform_saas_client::{SaasClient, SaasConfig, ServiceConfig};
use sagaform_saga::PURCHASE;

/// A client for every service of the saga at `base_url`, with the given request timeout.
pub fn client_for(base_url: &str, request_timeout: Duration) -> SaasClient {
    let mut config = SaasConfig::new();
    for service in PURCHASE.services() {
        let service_config = ServiceConfig::new(
            service,
            &format!("{base_url}/{service}"),
            Duration::from_millis(500),
            request_timeout,
        )
        .unwrap();
        config = config.with_service(service, service_config);
    }
    SaasClient::new(config).unwrap()
}

/// A fresh fake and a client with a 2 s request timeout pointing at it.
pub async fn fake_and_client() -> (FakeSaas, SaasClient) {
    let fake = FakeSaas::start("127.0.0.1:0").await.unwrap();
    let client = client_for(&fake.base_url(), Duration::from_secs(2));
    (fake, client)
}
