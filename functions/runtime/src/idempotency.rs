//! Idempotent operations with the semantics of Powertools for AWS Lambda: the first request with
//! a key claims it (INPROGRESS, until the invocation's deadline), does the work and stores the
//! response (COMPLETED, until the record expires); a repeat with the same payload gets the stored
//! response, a repeat with another payload is refused, a concurrent repeat is told the work is in
//! progress and never runs it a second time, and a claim whose invocation died is taken over
//! once its in-progress window (the dead invocation's deadline) has passed.

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::errors::IdempotencyError;
use crate::store::{ClaimOutcome, IdempotencyClaim, IdempotencyCompletion, IdempotencyStore};

/// How long a completed response is replayed when not configured otherwise (Powertools' default
/// is one hour).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);

/// The payload's fingerprint: SHA-256 (hex) of its canonical JSON, so two bodies that differ only
/// in key order or white space are the same payload.
pub fn payload_hash(payload: &Value) -> String {
    let digest = Sha256::digest(canonical_json(payload).as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The stored form of a client's idempotency `key`, under `prefix` and scoped to the `caller`
/// that sent it (the authenticated principal), so two callers using the same key neither
/// collide nor get each other's answer. The caller is stored as a fingerprint (the first 16
/// bytes of its SHA-256, in hex), which keeps the stored key short whatever the principal's
/// name; a request without an authenticated caller (the local env) keeps the key as sent.
pub fn caller_scoped_key(prefix: &str, caller: Option<&str>, key: &str) -> String {
    match caller {
        Some(caller) => {
            let digest = Sha256::digest(caller.as_bytes());
            let fingerprint: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("{prefix}{fingerprint}:{key}")
        }
        None => format!("{prefix}{key}"),
    }
}

/// JSON with object keys sorted at every level and no white space.
///
/// Written out rather than relying on `serde_json`'s map order, which follows insertion order
/// whenever any crate in the build enables its `preserve_order` feature.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The response of an idempotent run, computed now or replayed from the store.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotentResponse {
    /// The work ran now; this is its response (now stored for repeats).
    Fresh(Value),
    /// The work ran before with the same payload; this is the stored response.
    Replayed(Value),
}

impl IdempotentResponse {
    /// The response, fresh or replayed.
    pub fn into_response(self) -> Value {
        match self {
            IdempotentResponse::Fresh(value) | IdempotentResponse::Replayed(value) => value,
        }
    }
}

/// Why an idempotent run gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E> {
    /// The key is in progress elsewhere, was used with another payload, or the store failed.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// The work failed; the claim was released so a retry can run it again.
    #[error(transparent)]
    Work(E),
}

/// Idempotent execution over an [`IdempotencyStore`].
#[derive(Debug, Clone)]
pub struct Idempotency<S> {
    store: S,
    expires_after: Duration,
}

impl<S: IdempotencyStore> Idempotency<S> {
    /// Completed responses are replayed for `expires_after`.
    pub fn new(store: S, expires_after: Duration) -> Self {
        Idempotency {
            store,
            expires_after,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// When a record written now may be forgotten.
    pub fn expiration(&self) -> SystemTime {
        SystemTime::now() + self.expires_after
    }

    /// Claims `key` for `payload` until `deadline` (the invocation's deadline: past it, the claim
    /// may be taken over by a retry).
    pub async fn claim(
        &self,
        key: &str,
        payload: &Value,
        deadline: SystemTime,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        let hash = payload_hash(payload);
        self.store
            .claim(&IdempotencyClaim {
                key,
                payload_hash: &hash,
                in_progress_until: deadline,
                expiration: self.expiration(),
            })
            .await
    }

    /// Runs `work` once per key: claims the key, runs the work, stores its response and returns
    /// it; replays the stored response to a repeat with the same payload; refuses another payload
    /// and a concurrent repeat. A failed work releases the claim so a retry runs it again.
    pub async fn run<E, F, Fut>(
        &self,
        key: &str,
        payload: &Value,
        deadline: SystemTime,
        work: F,
    ) -> Result<IdempotentResponse, RunError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
    {
        match self.claim(key, payload, deadline).await? {
            ClaimOutcome::Completed(response) => {
                info!(idempotency_key = key, "replaying the stored response");
                return Ok(IdempotentResponse::Replayed(response));
            }
            ClaimOutcome::Claimed => {}
        }
        match work().await {
            Ok(response) => {
                let completion = IdempotencyCompletion {
                    key,
                    response: &response,
                    expiration: self.expiration(),
                };
                if let Err(e) = self.store.complete(&completion).await {
                    // The work is done and its answer is the truth: return it. A repeat within
                    // the in-progress window gets "in progress", after it the work runs again,
                    // which the callers' own idempotency (saga ids, SaaS keys) makes harmless.
                    warn!(idempotency_key = key, error = %e, "could not store the completed response");
                }
                Ok(IdempotentResponse::Fresh(response))
            }
            Err(e) => {
                if let Err(release_error) = self.store.release(key).await {
                    warn!(idempotency_key = key, error = %release_error,
                          "could not release the claim; a retry waits for the in-progress expiry");
                }
                Err(RunError::Work(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_is_scoped_to_its_caller_and_kept_as_sent_without_one() {
        let alice = caller_scoped_key("api:", Some("jwt:https://issuer/:alice"), "k-1");
        let bob = caller_scoped_key("api:", Some("jwt:https://issuer/:bob"), "k-1");
        assert_ne!(alice, bob);
        assert_eq!(
            alice,
            caller_scoped_key("api:", Some("jwt:https://issuer/:alice"), "k-1")
        );
        assert!(
            alice.starts_with("api:") && alice.ends_with(":k-1"),
            "{alice}"
        );
        assert_eq!(alice.len(), "api:".len() + 32 + ":k-1".len());
        assert_eq!(caller_scoped_key("api:", None, "k-1"), "api:k-1");
    }

    #[test]
    fn key_order_and_white_space_do_not_change_the_payload_hash() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(payload_hash(&a), payload_hash(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    }

    #[test]
    fn any_value_change_changes_the_payload_hash() {
        let a = json!({"quantity": 1, "item_id": "sword"});
        let b = json!({"quantity": 2, "item_id": "sword"});
        assert_ne!(payload_hash(&a), payload_hash(&b));
        assert_eq!(payload_hash(&a).len(), 64);
    }
}
