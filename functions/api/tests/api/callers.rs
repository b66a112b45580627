//! An `Idempotency-Key` belongs to the caller API Gateway authenticated: two callers sending the
//! same key get a saga each and never each other's answer, while a caller's own retry still gets
//! its first answer (for an assumed role, whatever the session).

use crate::common;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use common::send;
use sagaform_api::Api;
use sagaform_testkit::{Backend, TestStore, fake_saas, post_transactions, purchase};
use serde_json::{Value, json};

/// A purchase with `key`, from the caller `authorizer` describes.
fn from_caller(authorizer: Value, body: &Value, key: &str) -> ApiGatewayV2httpRequest {
    let mut request = post_transactions(&body.to_string(), Some(key));
    request.request_context.authorizer =
        Some(serde_json::from_value(authorizer).expect("an authorizer description"));
    request
}

fn jwt(subject: &str) -> Value {
    json!({"jwt": {"claims": {"sub": subject, "iss": "https://auth.example.com/"}, "scopes": null}})
}

fn role_session(session: &str) -> Value {
    json!({"iam": {"userArn": format!("arn:aws:sts::123456789012:assumed-role/checkout/{session}")}})
}

#[tokio::test]
async fn two_callers_with_the_same_key_get_a_saga_each_and_a_retry_its_own() {
    for backend in Backend::ALL {
        let store = TestStore::new(backend).await;
        let (_fake, client) = fake_saas().await;
        let api = Api::orchestrator(store.store().clone(), client);
        let body = purchase();

        let alice = send(&api, from_caller(jwt("alice"), &body, "order-1")).await;
        let bob = send(&api, from_caller(jwt("bob"), &body, "order-1")).await;
        assert_eq!((alice.status, bob.status), (200, 200), "{backend:?}");
        assert_ne!(
            alice.transaction_id(),
            bob.transaction_id(),
            "{backend:?}: one key, two callers, two sagas"
        );
        let again = send(&api, from_caller(jwt("alice"), &body, "order-1")).await;
        assert_eq!(
            again.transaction_id(),
            alice.transaction_id(),
            "{backend:?}: alice's retry gets her saga"
        );
        // Another body under bob's key is bob's conflict, not alice's.
        let mut other = body.clone();
        other["quantity"] = json!(2);
        let carol = send(&api, from_caller(jwt("carol"), &other, "order-1")).await;
        assert_eq!(carol.status, 200, "{backend:?}: {}", carol.body);
        let bob_other = send(&api, from_caller(jwt("bob"), &other, "order-1")).await;
        assert_eq!(bob_other.status, 422, "{backend:?}: {}", bob_other.body);
        assert_eq!(store.all_sagas().await.len(), 3, "{backend:?}");

        // An assumed role is one caller across its sessions: a retry after the credentials
        // were refreshed still finds its first attempt.
        let first = send(&api, from_caller(role_session("s-1"), &body, "order-2")).await;
        let retry = send(&api, from_caller(role_session("s-2"), &body, "order-2")).await;
        assert_eq!(first.status, 200, "{backend:?}: {}", first.body);
        assert_eq!(
            retry.transaction_id(),
            first.transaction_id(),
            "{backend:?}"
        );
    }
}
