//! Routing of the API and `GET /transactions/{id}`: unknown routes are 404, wrong methods 405,
//! malformed ids 400, unknown ids 404, and a saga shows its status and every step's status and
//! time.

use crate::common;

use aws_lambda_events::http::Method;
use common::send;
use sagaform_api::Api;
use sagaform_testkit::{
    Backend, TestStore, fake_saas, get_transaction, http_request, post_transactions, purchase,
};

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let store = TestStore::new(Backend::DynamoDb).await;
    let (_fake, client) = fake_saas().await;
    let api = Api::orchestrator(store.store().clone(), client);

    let unknown = send(&api, http_request(Method::GET, "/purchases", None, &[])).await;
    assert_eq!(
        (unknown.status, unknown.body["error"].as_str()),
        (404, Some("not_found"))
    );
    let nested = send(
        &api,
        http_request(Method::GET, "/transactions/a/b", None, &[]),
    )
    .await;
    assert_eq!(nested.status, 404);

    let put = send(
        &api,
        http_request(Method::PUT, "/transactions", Some("{}"), &[]),
    )
    .await;
    assert_eq!((put.status, put.header("allow")), (405, Some("POST")));
    let delete = send(
        &api,
        http_request(
            Method::DELETE,
            "/transactions/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
            None,
            &[],
        ),
    )
    .await;
    assert_eq!((delete.status, delete.header("allow")), (405, Some("GET")));
    assert!(store.all_sagas().await.is_empty());
}

#[tokio::test]
async fn malformed_ids_are_400_and_unknown_ids_404() {
    let store = TestStore::new(Backend::Postgres).await;
    let (_fake, client) = fake_saas().await;
    let api = Api::orchestrator(store.store().clone(), client);

    let malformed = send(&api, get_transaction("not-a-uuid")).await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.body["field"], "transaction_id");
    let unknown = send(
        &api,
        get_transaction("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.body["error"].as_str()),
        (404, Some("transaction_not_found"))
    );
}

#[tokio::test]
async fn a_saga_shows_its_status_and_each_steps_status_and_time_on_both_stores() {
    for backend in Backend::ALL {
        let store = TestStore::new(backend).await;
        let (_fake, client) = fake_saas().await;
        let api = Api::orchestrator(store.store().clone(), client);
        let created = send(&api, post_transactions(&purchase().to_string(), None)).await;
        assert_eq!(created.status, 200, "{backend:?}: {:#}", created.body);
        let id = created.transaction_id().to_owned();
        assert_eq!(
            uuid::Uuid::parse_str(&id).unwrap().get_version_num(),
            7,
            "transaction ids are UUIDv7"
        );
        assert_eq!(
            created.header("location"),
            Some(format!("/transactions/{id}").as_str())
        );

        // Ids are matched whatever their letter case.
        let shown = send(&api, get_transaction(&id.to_uppercase())).await;
        assert_eq!(shown.status, 200, "{backend:?}: {:#}", shown.body);
        assert_eq!(shown.body["transaction_id"], id);
        assert_eq!(shown.body["status"], "COMPLETED");
        let steps = shown.body["steps"].as_array().unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["stock", "payment", "entitlement"]);
        for step in steps {
            assert_eq!(step["status"], "SUCCEEDED", "{backend:?}: {step:#}");
            assert!(
                step["updated_at"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z')),
                "{backend:?}: {step:#}"
            );
        }
        assert!(shown.body["created_at"].is_string() && shown.body["updated_at"].is_string());
        assert!(
            shown.body.get("request").is_none(),
            "the request is not echoed"
        );
    }
}

#[tokio::test]
async fn a_named_stage_prefixes_paths_and_status_urls() {
    let store = TestStore::new(Backend::DynamoDb).await;
    let (_fake, client) = fake_saas().await;
    let api = Api::orchestrator(store.store().clone(), client);
    let mut request = post_transactions(&purchase().to_string(), None);
    request.raw_path = Some("/prod/transactions".to_owned());
    request.request_context.stage = Some("prod".to_owned());
    let created = send(&api, request).await;
    assert_eq!(created.status, 200, "{:#}", created.body);
    let id = created.transaction_id();
    assert_eq!(
        created.body["status_url"],
        format!("/prod/transactions/{id}")
    );
}
