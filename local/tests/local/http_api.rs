//! The HTTP API emulation turns requests into payload format 2.0 events for the route's
//! function (which parses them with `aws_lambda_events`) and its answer back into HTTP.

use crate::common;

use std::time::Duration;

use common::*;
use sagaform_local::Functions;
use sagaform_local::http_api::{HttpApi, HttpRoute, MAX_INTEGRATION_TIMEOUT};
use serde_json::Value;

fn routes(function: &str) -> Vec<HttpRoute> {
    ["POST /transactions", "GET /transactions/{id}"]
        .into_iter()
        .map(|key| HttpRoute {
            route_key: key.to_owned(),
            function: function.to_owned(),
            timeout: MAX_INTEGRATION_TIMEOUT,
        })
        .collect()
}

#[tokio::test]
async fn a_request_round_trips_as_payload_format_2_0() {
    let dir = scratch("http-round-trip");
    let function = function(spec("api-fn", Duration::from_secs(5), 1), &dir, None);
    let api = HttpApi::serve(routes("api-fn"), Functions::new([function.clone()]), 0)
        .await
        .unwrap();
    let client = reqwest::Client::new();

    let response = client
        .post(format!("{}/transactions?q=a%20b&q2=x", api.url()))
        .header("Idempotency-Key", "key-1")
        .header("X-Custom", "one")
        .header("Cookie", "a=1; b=2")
        .header("Content-Type", "application/json")
        .body(r#"{"player_id":"p1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-route-key"], "POST /transactions");
    assert_eq!(response.headers()["set-cookie"], "session=abc; Path=/");
    assert!(response.headers().contains_key("apigw-requestid"));
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["version"], "2.0");
    assert_eq!(seen["routeKey"], "POST /transactions");
    assert_eq!(seen["rawPath"], "/transactions");
    assert_eq!(seen["rawQueryString"], "q=a%20b&q2=x");
    assert_eq!(seen["query"], "a b");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["stage"], "$default");
    assert_eq!(seen["headers"]["idempotency-key"], "key-1");
    assert_eq!(seen["headers"]["x-custom"], "one");
    assert_eq!(seen["cookies"], serde_json::json!(["a=1", "b=2"]));
    assert_eq!(seen["body"], r#"{"player_id":"p1"}"#);
    assert_eq!(seen["isBase64Encoded"], false);

    let response = client
        .get(format!("{}/transactions/tx-42", api.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["routeKey"], "GET /transactions/{id}");
    assert_eq!(seen["pathParameters"]["id"], "tx-42");
    assert_eq!(seen["body"], Value::Null);
    function.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_function_errors_answer_like_api_gateway() {
    let dir = scratch("http-errors");
    let function = function(spec("api-err-fn", Duration::from_secs(5), 1), &dir, None);
    let api = HttpApi::serve(routes("api-err-fn"), Functions::new([function.clone()]), 0)
        .await
        .unwrap();
    let client = reqwest::Client::new();

    let not_found = client
        .delete(format!("{}/transactions/x", api.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), 404);
    assert_eq!(
        not_found.json::<Value>().await.unwrap(),
        serde_json::json!({"message": "Not Found"})
    );

    let special = HttpApi::serve(
        vec![
            HttpRoute {
                route_key: "POST /fail".to_owned(),
                function: "api-err-fn".to_owned(),
                timeout: MAX_INTEGRATION_TIMEOUT,
            },
            HttpRoute {
                route_key: "POST /slow".to_owned(),
                function: "api-err-fn".to_owned(),
                timeout: Duration::from_millis(500),
            },
        ],
        Functions::new([function.clone()]),
        0,
    )
    .await
    .unwrap();
    let failed = client
        .post(format!("{}/fail", special.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    assert_eq!(
        failed.json::<Value>().await.unwrap(),
        serde_json::json!({"message": "Internal Server Error"})
    );
    let slow = client
        .post(format!("{}/slow", special.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        slow.status(),
        503,
        "the integration timeout answers before the function"
    );
    function.shutdown().await;
}
