//! The stack's HTTP API (API Gateway v2) on a loopback port: requests matching a route become
//! payload format 2.0 events for the route's function, and its response becomes the HTTP answer,
//! as API Gateway's Lambda proxy integration does. moto ignores `AWS::ApiGatewayV2::*`, so this
//! is the only way to reach the functions over HTTP locally.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::LocalError;
use crate::invoke_api::Functions;
use crate::loopback::LoopbackServer;
use crate::runtime::{InvokeOutcome, PAYLOAD_LIMIT_BYTES, new_request_id};

/// API Gateway's longest integration timeout for HTTP APIs.
pub const MAX_INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One route of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpRoute {
    /// `METHOD /path` with `{param}` and `{proxy+}` segments, `ANY /path`, or `$default`.
    pub route_key: String,
    /// The function its integration invokes (name).
    pub function: String,
    /// The integration timeout (at most 30 s on API Gateway).
    #[serde(with = "millis")]
    pub timeout: Duration,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    route: HttpRoute,
    method: Option<Method>,
    segments: Vec<Segment>,
    catch_all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

impl Segment {
    /// The segments of a route path: `{name}` a parameter, `{name+}` a greedy one, anything
    /// else a literal.
    fn parse_path(path: &str) -> Vec<Segment> {
        path.split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .map(
                |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => match name.strip_suffix('+') {
                        Some(greedy) => Segment::Greedy(greedy.to_owned()),
                        None => Segment::Param(name.to_owned()),
                    },
                    None => Segment::Literal(part.to_owned()),
                },
            )
            .collect()
    }
}

impl CompiledRoute {
    fn compile(route: HttpRoute) -> Result<CompiledRoute, LocalError> {
        if route.route_key == "$default" {
            return Ok(CompiledRoute {
                route,
                method: None,
                segments: Vec::new(),
                catch_all: true,
            });
        }
        let invalid = |reason: &str| LocalError::Template {
            source_name: "HTTP API routes".to_owned(),
            key: route.route_key.clone(),
            reason: reason.to_owned(),
        };
        let (method, path) = route
            .route_key
            .split_once(' ')
            .ok_or_else(|| invalid("a route key is `METHOD /path` or `$default`"))?;
        let method = match method {
            "ANY" => None,
            other => Some(
                Method::from_bytes(other.as_bytes()).map_err(|_| invalid("unknown HTTP method"))?,
            ),
        };
        if !path.starts_with('/') {
            return Err(invalid("the path must start with /"));
        }
        let segments = Segment::parse_path(path);
        if segments
            .iter()
            .rev()
            .skip(1)
            .any(|s| matches!(s, Segment::Greedy(_)))
        {
            return Err(invalid("a greedy {name+} segment must be the last one"));
        }
        Ok(CompiledRoute {
            route,
            method,
            segments,
            catch_all: false,
        })
    }

    /// The path parameters if `method path` matches this route.
    fn matches(&self, method: &Method, path: &str) -> Option<BTreeMap<String, String>> {
        if self.catch_all {
            return Some(BTreeMap::new());
        }
        if self.method.as_ref().is_some_and(|m| m != method) {
            return None;
        }
        let parts: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
        let mut parameters = BTreeMap::new();
        for (index, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    if parts.get(index) != Some(&literal.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let value = parts.get(index)?;
                    parameters.insert(name.clone(), percent_decode(value));
                }
                Segment::Greedy(name) => {
                    let rest = parts.get(index..).filter(|rest| !rest.is_empty())?;
                    parameters.insert(name.clone(), percent_decode(&rest.join("/")));
                    return Some(parameters);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(parameters)
    }

    /// API Gateway picks the most specific route: a method over ANY, literal segments over
    /// parameters, parameters over a greedy tail, and `$default` last.
    fn specificity(&self) -> (bool, usize, usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let greedy = self
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Greedy(_)));
        (
            !self.catch_all,
            literals,
            self.segments.len() * usize::from(!greedy),
            self.method.is_some(),
        )
    }
}

/// A running HTTP API server.
#[derive(Debug)]
pub struct HttpApi {
    server: LoopbackServer,
}

#[derive(Debug, Clone)]
struct ApiState {
    routes: std::sync::Arc<Vec<CompiledRoute>>,
    functions: Functions,
}

impl HttpApi {
    /// Serves `routes` on `127.0.0.1:port` (0 picks a free port), invoking `functions`.
    pub async fn serve(
        routes: Vec<HttpRoute>,
        functions: Functions,
        port: u16,
    ) -> Result<HttpApi, LocalError> {
        let mut compiled = routes
            .into_iter()
            .map(CompiledRoute::compile)
            .collect::<Result<Vec<_>, _>>()?;
        compiled.sort_by_key(|route| std::cmp::Reverse(route.specificity()));
        let state = ApiState {
            routes: std::sync::Arc::new(compiled),
            functions,
        };
        let router = Router::new().fallback(handle).with_state(state);
        let server = LoopbackServer::serve(port, "the HTTP API", router)?;
        Ok(HttpApi { server })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123` (what the stack's `ApiUrl` is on AWS).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }
}

async fn handle(State(state): State<ApiState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let Some((route, parameters)) = state
        .routes
        .iter()
        .find_map(|route| route.matches(&parts.method, &path).map(|p| (route, p)))
    else {
        return gateway_message(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(function) = state.functions.resolve(&route.route.function).cloned() else {
        return gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let body = match axum::body::to_bytes(body, PAYLOAD_LIMIT_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
    };
    let request_id = new_request_id();
    let event = RequestFacts {
        route_key: &route.route.route_key,
        method: &parts.method,
        path: &path,
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        path_parameters: &parameters,
        body: &body,
        request_id: &request_id,
    }
    .to_event();
    let payload = Bytes::from(event.to_string());
    let invoked = tokio::time::timeout(route.route.timeout, function.invoke(payload)).await;
    let mut response = match invoked {
        Ok(Ok(InvokeOutcome::Success(output))) => lambda_response(&output),
        Ok(Ok(InvokeOutcome::FunctionError(_))) | Ok(Err(_)) => {
            gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        // The function keeps running to its own timeout, as behind API Gateway.
        Err(_) => gateway_message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", value);
    }
    response
}

/// What a payload format 2.0 event is made of.
struct RequestFacts<'a> {
    route_key: &'a str,
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    path_parameters: &'a BTreeMap<String, String>,
    body: &'a Bytes,
    request_id: &'a str,
}

impl RequestFacts<'_> {
    /// The event as API Gateway sends it: lower-case headers with repeated values joined by
    /// commas, cookies in their own list, repeated query parameters joined by commas, the body
    /// as text or base64.
    fn to_event(&self) -> Value {
        let (headers, cookies) = self.headers_and_cookies();
        let query = self.query_parameters();
        let (body, is_base64) = match std::str::from_utf8(self.body) {
            Ok(text) => (text.to_owned(), false),
            Err(_) => (BASE64.encode(self.body), true),
        };
        let mut event = json!({
            "version": "2.0",
            "routeKey": self.route_key,
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": self.request_context(),
            "isBase64Encoded": is_base64,
        });
        let object = event.as_object_mut().expect("built as an object");
        if !cookies.is_empty() {
            object.insert("cookies".to_owned(), json!(cookies));
        }
        if !query.is_empty() {
            object.insert("queryStringParameters".to_owned(), Value::Object(query));
        }
        if !self.path_parameters.is_empty() {
            object.insert("pathParameters".to_owned(), json!(self.path_parameters));
        }
        if !self.body.is_empty() {
            object.insert("body".to_owned(), Value::String(body));
        }
        event
    }

    /// The headers by lower-case name, repeated values joined by commas, and the cookies of
    /// the `cookie` headers, which the event lists apart.
    fn headers_and_cookies(&self) -> (Map<String, Value>, Vec<String>) {
        let mut headers = Map::new();
        let mut cookies = Vec::new();
        for (name, value) in self.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if name == "cookie" {
                cookies.extend(value.split(';').map(|c| c.trim().to_owned()));
                continue;
            }
            join_repeated(&mut headers, name.as_str().to_owned(), value);
        }
        (headers, cookies)
    }

    /// The decoded query parameters, repeated values joined by commas.
    fn query_parameters(&self) -> Map<String, Value> {
        let mut query = Map::new();
        for pair in self.query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            join_repeated(
                &mut query,
                percent_decode_query(key),
                percent_decode_query(value),
            );
        }
        query
    }

    /// The event's `requestContext`.
    fn request_context(&self) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let host = self
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let user_agent = self
            .headers
            .get("user-agent")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        json!({
            "accountId": crate::discovery::LOCAL_ACCOUNT_ID,
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": self.method.as_str(),
                "path": self.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": self.request_id,
            "routeKey": self.route_key,
            "stage": "$default",
            "time": clf_time(now.as_secs() as i64),
            "timeEpoch": now.as_millis() as u64,
        })
    }
}

/// Adds `value` under `key`, after a comma when the key is there already (how API Gateway
/// folds repeated headers and query parameters).
fn join_repeated(map: &mut Map<String, Value>, key: String, value: String) {
    match map.get_mut(&key) {
        Some(Value::String(existing)) => {
            existing.push(',');
            existing.push_str(&value);
        }
        _ => {
            map.insert(key, Value::String(value));
        }
    }
}

/// Translates a function's output into the HTTP response, as API Gateway does for payload
/// format 2.0: a `{"statusCode", "headers", "cookies", "body", "isBase64Encoded"}` document is
/// used as it is; any other valid JSON is the body of a 200 `application/json` answer.
fn lambda_response(output: &[u8]) -> Response {
    let Ok(document) = serde_json::from_slice::<Value>(output) else {
        return gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let Some(status) = document.get("statusCode").and_then(Value::as_u64) else {
        let mut response = Response::new(Body::from(output.to_vec()));
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        return response;
    };
    let Ok(status) = StatusCode::from_u16(status as u16) else {
        return gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let Some(body) = response_body(&document) else {
        return gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    add_response_headers(response.headers_mut(), &document);
    response
}

/// The body of a response document: its `body` text, base64-decoded when `isBase64Encoded`
/// says so; `None` when that text is not base64.
fn response_body(document: &Value) -> Option<Vec<u8>> {
    let body_text = document.get("body").and_then(Value::as_str).unwrap_or("");
    if document.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        BASE64.decode(body_text).ok()
    } else {
        Some(body_text.as_bytes().to_vec())
    }
}

/// The headers of a response document: its `headers` (values that are not valid header text
/// are left out), its `cookies` as `set-cookie`, and a JSON content type unless it names one.
fn add_response_headers(headers: &mut HeaderMap, document: &Value) {
    if let Some(Value::Object(map)) = document.get("headers") {
        for (name, value) in map {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&text),
            ) {
                headers.append(name, value);
            }
        }
    }
    if let Some(Value::Array(cookies)) = document.get("cookies") {
        for cookie in cookies.iter().filter_map(Value::as_str) {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                headers.append("set-cookie", value);
            }
        }
    }
    if !headers.contains_key("content-type") {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
    }
}

fn gateway_message(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(index + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(index + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            out.push((high * 16 + low) as u8);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query strings also encode spaces as `+`.
fn percent_decode_query(text: &str) -> String {
    percent_decode(&text.replace('+', " "))
}

/// API Gateway's `requestContext.time`: `27/Nov/2026:00:41:49 +0000`.
fn clf_time(epoch_seconds: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = crate::logs::civil_from_days(epoch_seconds.div_euclid(86_400));
    let seconds = epoch_seconds.rem_euclid(86_400);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str) -> CompiledRoute {
        CompiledRoute::compile(HttpRoute {
            route_key: key.to_owned(),
            function: "api".to_owned(),
            timeout: MAX_INTEGRATION_TIMEOUT,
        })
        .unwrap()
    }

    #[test]
    fn path_parameters_are_captured_and_decoded() {
        let get = route("GET /transactions/{id}");
        let params = get.matches(&Method::GET, "/transactions/a%20b").unwrap();
        assert_eq!(params.get("id").map(String::as_str), Some("a b"));
        assert!(get.matches(&Method::POST, "/transactions/x").is_none());
        assert!(get.matches(&Method::GET, "/transactions").is_none());
        assert!(get.matches(&Method::GET, "/transactions/x/y").is_none());
    }

    #[test]
    fn greedy_segments_take_the_rest_of_the_path() {
        let proxy = route("ANY /files/{proxy+}");
        let params = proxy.matches(&Method::DELETE, "/files/a/b/c").unwrap();
        assert_eq!(params.get("proxy").map(String::as_str), Some("a/b/c"));
        assert!(proxy.matches(&Method::GET, "/files").is_none());
    }

    #[test]
    fn the_most_specific_route_wins() {
        let mut routes = [
            route("$default"),
            route("ANY /transactions/{id}"),
            route("GET /transactions/{id}"),
            route("GET /transactions/latest"),
        ];
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        let keys: Vec<&str> = routes.iter().map(|r| r.route.route_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "GET /transactions/latest",
                "GET /transactions/{id}",
                "ANY /transactions/{id}",
                "$default"
            ]
        );
    }

    #[test]
    fn bad_route_keys_are_refused_with_the_key() {
        let error = CompiledRoute::compile(HttpRoute {
            route_key: "GET transactions".to_owned(),
            function: "api".to_owned(),
            timeout: MAX_INTEGRATION_TIMEOUT,
        })
        .unwrap_err();
        assert!(error.to_string().contains("GET transactions"), "{error}");
    }

    #[test]
    fn a_response_without_status_code_is_a_json_200() {
        let response = lambda_response(br#"{"hello":"world"}"#);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
    }

    #[test]
    fn request_time_has_api_gateway_form() {
        assert_eq!(clf_time(1_709_210_096), "29/Feb/2024:12:34:56 +0000");
    }
}
