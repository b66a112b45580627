//! A proxy in front of moto that loses the answers of chosen AWS calls: the call reaches moto and
//! takes effect, and the client gets a `500 InternalServerError` in place of the answer, which
//! the SDK's own retry repeats. That is the in-doubt outcome of a write (a lost response, a
//! timeout after the work), which a test against moto alone never sees.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use crate::moto;

/// The header naming a JSON-protocol operation (`DynamoDB_20120810.PutItem`).
const TARGET_HEADER: &str = "x-amz-target";

/// One rule: lose the answers of the next `times` calls of `operation`.
#[derive(Debug)]
struct Rule {
    operation: String,
    times: u32,
}

#[derive(Debug, Default)]
struct Shared {
    rules: Vec<Rule>,
    /// Operations whose answer was lost, in order.
    lost: Vec<String>,
}

/// The proxy; it serves until the test's runtime ends.
#[derive(Debug, Clone)]
pub struct LostResponses {
    endpoint: String,
    shared: Arc<Mutex<Shared>>,
}

#[derive(Clone)]
struct Forward {
    upstream: String,
    client: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
}

impl LostResponses {
    /// A proxy to the test moto server on a free loopback port.
    pub async fn start() -> LostResponses {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let forward = Forward {
            upstream: moto().endpoint().trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            shared: shared.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on loopback");
        let address = listener.local_addr().expect("the proxy's address");
        let app = Router::new().fallback(forward_call).with_state(forward);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LostResponses {
            endpoint: format!("http://{address}"),
            shared,
        }
    }

    /// The proxy's URL, for an SDK client's endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Loses the answers of the next `times` calls of `operation` (`PutItem`,
    /// `TransactWriteItems`, ...), after moto applied them.
    pub fn lose(&self, operation: &str, times: u32) {
        self.shared.lock().expect("proxy rules").rules.push(Rule {
            operation: operation.to_owned(),
            times,
        });
    }

    /// The operations whose answer was lost so far, in order.
    pub fn lost(&self) -> Vec<String> {
        self.shared.lock().expect("proxy rules").lost.clone()
    }
}

/// Forwards the call to moto; answers 500 instead of moto's answer when a rule matches it.
async fn forward_call(
    State(forward): State<Forward>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get(TARGET_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|target| target.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = forward
        .client
        .request(method, format!("{}{path}", forward.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let answer_headers = answer.headers().clone();
    let answer_body = answer.bytes().await.unwrap_or_default();
    if take_rule(&forward.shared, &operation) {
        return lost_answer();
    }
    let mut response = (status, answer_body).into_response();
    for (name, value) in &answer_headers {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// Whether a rule loses this call's answer; uses it up by one.
fn take_rule(shared: &Mutex<Shared>, operation: &str) -> bool {
    let mut shared = shared.lock().expect("proxy rules");
    let Some(rule) = shared
        .rules
        .iter_mut()
        .find(|rule| rule.operation == operation && rule.times > 0)
    else {
        return false;
    };
    rule.times -= 1;
    shared.lost.push(operation.to_owned());
    true
}

/// What the client gets instead: DynamoDB's own transient error, which the SDK retries.
fn lost_answer() -> Response {
    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the answer was lost on its way back (sagaform test proxy)"}"#;
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amzn-errortype", "InternalServerError"),
        ],
        body,
    )
        .into_response()
}
