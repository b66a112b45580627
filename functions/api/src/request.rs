//! What `POST /transactions` accepts: the body (decoded, bounded, parsed and validated field by
//! field), the optional `Idempotency-Key` header, and who sent it (the caller API Gateway
//! authenticated, to whom the key belongs).
//!
//! Validation happens before anything is written, so bad input is answered with a 400 naming the
//! field and the reason and leaves no trace in the stores.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::http::HeaderMap;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

/// The largest body accepted, in bytes (after base64 decoding); a purchase is about 120 bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest accepted `player_id` / `item_id`, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// Largest accepted `quantity`: a purchase of more is a client bug, not a big order.
pub const MAX_QUANTITY: u64 = 10_000;

/// The request header carrying the client's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// The fields of a purchase, in the order they are checked.
const FIELDS: [&str; 5] = [
    "player_id",
    "item_id",
    "quantity",
    "amount_minor",
    "currency",
];

/// One reason a request was refused: which part of it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The body field (`quantity`), `body` for the body as a whole, or the header name.
    pub field: String,
    /// Why it was refused, lowercase.
    pub reason: String,
}

impl FieldError {
    fn new(field: &str, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A validated purchase: the body of `POST /transactions` (the HTTP API, documented in the README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurchaseRequest {
    /// Who buys.
    pub player_id: String,
    /// What.
    pub item_id: String,
    /// How many, at least 1.
    pub quantity: u64,
    /// The price in the currency's minor unit (cents), at least 0.
    pub amount_minor: u64,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
}

impl PurchaseRequest {
    /// The request as the saga stores it and the idempotency hash covers it.
    pub fn to_value(&self) -> Value {
        // Serializing five plain fields cannot fail.
        serde_json::to_value(self).expect("a purchase request always serializes")
    }
}

/// The body's bytes: base64-decoded when API Gateway says so, refused when missing or larger
/// than `max_bytes`.
pub fn decode_body(
    body: Option<&str>,
    is_base64_encoded: bool,
    max_bytes: usize,
) -> Result<Vec<u8>, FieldError> {
    let text = body.unwrap_or_default();
    if text.is_empty() {
        return Err(FieldError::new(
            "body",
            "required: a JSON object with the purchase",
        ));
    }
    let too_large = || FieldError::new("body", format!("larger than {max_bytes} bytes"));
    if !is_base64_encoded {
        return if text.len() > max_bytes {
            Err(too_large())
        } else {
            Ok(text.as_bytes().to_vec())
        };
    }
    // Four base64 characters carry three bytes: refuse before decoding what cannot fit.
    if text.len() / 4 * 3 > max_bytes + 3 {
        return Err(too_large());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| {
            FieldError::new("body", format!("marked base64 but not valid base64 ({e})"))
        })?;
    if bytes.len() > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Parses and validates a purchase; every problem found is reported, the body-level one alone
/// when the body is not a JSON object.
pub fn parse_purchase(bytes: &[u8]) -> Result<PurchaseRequest, Vec<FieldError>> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| vec![FieldError::new("body", "not UTF-8 text")])?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        vec![FieldError::new(
            "body",
            format!(
                "malformed JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                json_error_kind(&e)
            ),
        )]
    })?;
    let Value::Object(object) = value else {
        return Err(vec![FieldError::new(
            "body",
            format!("must be a JSON object, got {}", json_type(&value)),
        )]);
    };
    let mut errors: Vec<FieldError> = object
        .keys()
        .filter(|key| !FIELDS.contains(&key.as_str()))
        .map(|key| {
            FieldError::new(
                key,
                format!("unknown field; expected only {}", FIELDS.join(", ")),
            )
        })
        .collect();
    let player_id = collect(&mut errors, identifier(&object, "player_id"));
    let item_id = collect(&mut errors, identifier(&object, "item_id"));
    let quantity = collect(&mut errors, integer(&object, "quantity", 1, MAX_QUANTITY));
    let amount_minor = collect(
        &mut errors,
        integer(&object, "amount_minor", 0, i64::MAX as u64),
    );
    let currency = collect(&mut errors, currency(&object));
    match (player_id, item_id, quantity, amount_minor, currency) {
        (Some(player_id), Some(item_id), Some(quantity), Some(amount_minor), Some(currency))
            if errors.is_empty() =>
        {
            Ok(PurchaseRequest {
                player_id,
                item_id,
                quantity,
                amount_minor,
                currency,
            })
        }
        _ => Err(errors),
    }
}

/// The `Idempotency-Key` header: absent is fine, present must be 1 to 128 bytes of
/// `A-Z a-z 0-9 - _ . : ~` (a UUID fits), and only once.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, FieldError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |reason: &str| FieldError::new("Idempotency-Key", reason);
    // API Gateway joins repeated headers with commas; a second value is refused either way.
    if values.next().is_some() {
        return Err(invalid("given more than once"));
    }
    let key = value
        .to_str()
        .map_err(|_| invalid("must be visible ASCII"))?;
    if key.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(invalid(&format!(
            "longer than {MAX_IDEMPOTENCY_KEY_BYTES} bytes"
        )));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:~".contains(&b))
    {
        return Err(invalid("may contain only letters, digits and - _ . : ~"));
    }
    Ok(Some(key.to_owned()))
}

/// The caller API Gateway authenticated, to whom an idempotency key belongs: the JWT's issuer
/// and subject, or the IAM principal (for an assumed role, the role: its session names change
/// with every credential refresh, and a retry must find its first attempt). `None` when the
/// route has no authorizer, as on the local env.
pub fn caller(request: &ApiGatewayV2httpRequest) -> Option<String> {
    let authorizer = request.request_context.authorizer.as_ref()?;
    if let Some(jwt) = &authorizer.jwt
        && let Some(subject) = jwt.claims.get("sub")
    {
        let issuer = jwt.claims.get("iss").map_or("", String::as_str);
        return Some(format!("jwt:{issuer}:{subject}"));
    }
    let iam = authorizer.iam.as_ref()?;
    let principal = iam.user_arn.as_deref().or(iam.caller_id.as_deref())?;
    Some(format!("iam:{}", iam_principal(principal)))
}

/// The principal of an IAM caller: an assumed role's session ARN
/// (`arn:aws:sts::1:assumed-role/Role/session`) becomes the role's (`...assumed-role/Role`);
/// anything else stays as it is.
fn iam_principal(arn: &str) -> &str {
    match arn.rsplit_once('/') {
        // Role names and session names hold no `/`: the last part is the session.
        Some((role, _session)) if role.contains(":assumed-role/") => role,
        _ => arn,
    }
}

fn collect<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

fn required<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a Value, FieldError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(FieldError::new(field, "required")),
        Some(value) => Ok(value),
    }
}

fn identifier(object: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    let value = required(object, field)?;
    let Value::String(text) = value else {
        return Err(FieldError::new(
            field,
            format!("must be a string, got {}", json_type(value)),
        ));
    };
    if text.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if text.chars().count() > MAX_ID_CHARS {
        return Err(FieldError::new(
            field,
            format!("longer than {MAX_ID_CHARS} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text.clone())
}

fn integer(
    object: &Map<String, Value>,
    field: &str,
    min: u64,
    max: u64,
) -> Result<u64, FieldError> {
    let value = required(object, field)?;
    let range = || format!("must be an integer from {min} to {max}");
    match value {
        Value::Number(number) => match number.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(_) => Err(FieldError::new(field, range())),
            None if number.as_i64().is_some() => Err(FieldError::new(field, range())),
            None => Err(FieldError::new(
                field,
                format!("must be an integer, got {number}"),
            )),
        },
        other => Err(FieldError::new(
            field,
            format!("must be an integer, got {}", json_type(other)),
        )),
    }
}

fn currency(object: &Map<String, Value>) -> Result<String, FieldError> {
    let field = "currency";
    let value = required(object, field)?;
    let Value::String(code) = value else {
        return Err(FieldError::new(
            field,
            format!("must be a string, got {}", json_type(value)),
        ));
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FieldError::new(
            field,
            "must be three upper-case letters (ISO 4217, e.g. EUR)",
        ));
    }
    Ok(code.clone())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json's message without its trailing position (reported separately).
fn json_error_kind(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(position) => message[..position].to_owned(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::http::HeaderValue;

    fn errors_of(body: &str) -> Vec<FieldError> {
        parse_purchase(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_valid_purchase_is_accepted_as_is() {
        let purchase = parse_purchase(
            br#"{"player_id":"p-1","item_id":"sword","quantity":2,"amount_minor":0,"currency":"EUR"}"#,
        )
        .unwrap();
        assert_eq!(purchase.quantity, 2);
        assert_eq!(purchase.amount_minor, 0);
        assert_eq!(purchase.to_value()["currency"], "EUR");
    }

    #[test]
    fn every_bad_field_is_named_with_its_reason() {
        let errors = errors_of(
            r#"{"player_id":"","item_id":7,"quantity":0,"amount_minor":-1,"currency":"eur","x":1}"#,
        );
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "x",
                "player_id",
                "item_id",
                "quantity",
                "amount_minor",
                "currency"
            ]
        );
        assert_eq!(errors[2].reason, "must be a string, got a number");
        assert_eq!(errors[3].reason, "must be an integer from 1 to 10000");
    }

    #[test]
    fn fractional_and_missing_numbers_are_refused() {
        let errors =
            errors_of(r#"{"player_id":"p","item_id":"i","quantity":1.5,"currency":"EUR"}"#);
        assert_eq!(
            errors[0],
            FieldError::new("quantity", "must be an integer, got 1.5")
        );
        assert_eq!(errors[1], FieldError::new("amount_minor", "required"));
    }

    #[test]
    fn malformed_json_reports_its_position() {
        let errors = errors_of("{\"player_id\": ");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "body");
        assert!(
            errors[0]
                .reason
                .starts_with("malformed JSON at line 1 column"),
            "{}",
            errors[0].reason
        );
        assert_eq!(
            errors_of("[1]")[0].reason,
            "must be a JSON object, got an array"
        );
    }

    #[test]
    fn bodies_are_bounded_and_base64_is_decoded() {
        assert_eq!(decode_body(Some("{}"), false, 16).unwrap(), b"{}");
        assert_eq!(decode_body(Some("e30="), true, 16).unwrap(), b"{}");
        assert_eq!(
            decode_body(Some(&"x".repeat(17)), false, 16)
                .unwrap_err()
                .reason,
            "larger than 16 bytes"
        );
        assert!(
            decode_body(Some("%%%"), true, 16)
                .unwrap_err()
                .reason
                .starts_with("marked base64 but not valid")
        );
        assert!(
            decode_body(None, false, 16)
                .unwrap_err()
                .reason
                .starts_with("required")
        );
    }

    fn request_with_authorizer(authorizer: Value) -> ApiGatewayV2httpRequest {
        let mut request = ApiGatewayV2httpRequest::default();
        request.request_context.authorizer =
            Some(serde_json::from_value(authorizer).expect("an authorizer description"));
        request
    }

    #[test]
    fn the_caller_is_the_jwt_subject_or_the_iam_principal_and_none_without_authorizer() {
        let jwt = request_with_authorizer(serde_json::json!({
            "jwt": {"claims": {"sub": "player-7", "iss": "https://auth.example.com/"}, "scopes": null}
        }));
        assert_eq!(
            caller(&jwt).as_deref(),
            Some("jwt:https://auth.example.com/:player-7")
        );
        let user = request_with_authorizer(serde_json::json!({
            "iam": {"userArn": "arn:aws:iam::123456789012:user/checkout", "callerId": "AIDA1"}
        }));
        assert_eq!(
            caller(&user).as_deref(),
            Some("iam:arn:aws:iam::123456789012:user/checkout")
        );
        for session in ["s-1", "s-2"] {
            let role = request_with_authorizer(serde_json::json!({
                "iam": {"userArn": format!("arn:aws:sts::123456789012:assumed-role/checkout-svc/{session}")}
            }));
            assert_eq!(
                caller(&role).as_deref(),
                Some("iam:arn:aws:sts::123456789012:assumed-role/checkout-svc"),
                "one role, whatever its session"
            );
        }
        assert_eq!(caller(&ApiGatewayV2httpRequest::default()), None);
    }

    #[test]
    fn idempotency_keys_are_checked_for_length_and_charset() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).unwrap(), None);
        headers.insert(
            IDEMPOTENCY_KEY_HEADER,
            HeaderValue::from_static("0190a1b2-c3d4:retry.1"),
        );
        assert_eq!(
            idempotency_key(&headers).unwrap().as_deref(),
            Some("0190a1b2-c3d4:retry.1")
        );
        headers.insert(
            IDEMPOTENCY_KEY_HEADER,
            HeaderValue::from_static("has space"),
        );
        assert_eq!(
            idempotency_key(&headers).unwrap_err().field,
            "Idempotency-Key"
        );
        headers.insert(
            IDEMPOTENCY_KEY_HEADER,
            HeaderValue::from_str(&"k".repeat(129)).unwrap(),
        );
        assert_eq!(
            idempotency_key(&headers).unwrap_err().reason,
            "longer than 128 bytes"
        );
        headers.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_static(""));
        assert_eq!(
            idempotency_key(&headers).unwrap_err().reason,
            "must not be empty"
        );
    }
}
