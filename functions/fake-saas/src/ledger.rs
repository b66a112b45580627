//! The ledger of the fake services: what effect each call had, so tests can prove that every
//! idempotency key took effect once and that a compensated saga leaves nothing behind.
//!
//! The first request with an `Idempotency-Key` applies its effect and stores its answer; a repeat
//! gets the stored answer and no second effect. A compensation undoes the effect of its step's
//! action when that action took effect, and is a recorded no-op otherwise (as a real provider's
//! refund of a charge it never made would be).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a call did to the service's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// An action took effect.
    Applied,
    /// A compensation undid its action's effect.
    Compensated,
    /// A compensation found nothing to undo.
    Noop,
}

/// One effect, in the order the whole fake applied them (`seq` grows across services, so the
/// order of compensations across steps can be checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectRecord {
    /// Position in the order of all effects since the last reset, from 1.
    pub seq: u64,
    /// Service that applied it.
    pub service: String,
    /// Saga step.
    pub step: String,
    /// Action or compensation name.
    pub action: String,
    /// What it did.
    pub effect: Effect,
}

/// What one service saw of one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLedger {
    /// Requests received per action or compensation name, including repeats and calls answered
    /// with an injected failure.
    pub calls: BTreeMap<String, u64>,
    /// Actions that took effect (once per idempotency key).
    pub actions_applied: Vec<String>,
    /// Compensations that undid an action.
    pub compensations_applied: Vec<String>,
    /// Compensations whose action never took effect.
    pub compensations_noop: Vec<String>,
    /// Net effects still standing: actions applied minus actions undone. 0 after a full
    /// compensation.
    pub outstanding: i64,
    /// Repeated keys answered from the stored answer, without effect.
    pub replays: u64,
    /// Calls answered with an injected failure (the effect may still have been applied, for a
    /// "response lost" fault).
    pub faults_injected: u64,
}

impl ServiceLedger {
    /// All requests received, every action and compensation together.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// What the fake saw of one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionLedger {
    /// Per service.
    pub services: BTreeMap<String, ServiceLedger>,
    /// Every effect, in application order.
    pub effects: Vec<EffectRecord>,
}

impl TransactionLedger {
    /// Net effects still standing over all services: 0 when nothing was done or all was undone.
    pub fn outstanding(&self) -> i64 {
        self.services.values().map(|s| s.outstanding).sum()
    }

    /// All requests received over all services.
    pub fn total_calls(&self) -> u64 {
        self.services.values().map(ServiceLedger::total_calls).sum()
    }

    /// The ledger of one service (empty when the service was never called).
    pub fn service(&self, service: &str) -> ServiceLedger {
        self.services.get(service).cloned().unwrap_or_default()
    }
}

/// The answer to `GET /_ledger`: every transaction seen since the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    /// By `transaction_id`.
    pub transactions: BTreeMap<String, TransactionLedger>,
}

/// What answering a call with an idempotency key produced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// The JSON answer (the stored one for a repeat).
    pub answer: Value,
    /// Whether the answer was replayed from an earlier request with the same key.
    pub replayed: bool,
}

/// A key reused with another request body: a caller bug, refused rather than replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idempotency key {key} was first used with another request")]
pub(crate) struct KeyReused {
    pub key: String,
}

/// The identity of one call, as the route and the validated headers give it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallId<'a> {
    pub transaction_id: &'a str,
    pub service: &'a str,
    pub step: &'a str,
    pub action: &'a str,
    pub idempotency_key: &'a str,
    /// For a compensation: the key of the action it undoes. `None` for an action.
    pub compensates_key: Option<&'a str>,
}

struct StoredAnswer {
    request: Value,
    answer: Value,
}

#[derive(Default)]
struct LedgerState {
    transactions: BTreeMap<String, TransactionLedger>,
    answers: HashMap<String, StoredAnswer>,
    next_seq: u64,
}

/// Shared handle on the ledger of a running fake (clones see the same ledger).
#[derive(Clone, Default)]
pub struct Ledger {
    state: Arc<Mutex<LedgerState>>,
}

impl Ledger {
    /// Every transaction seen since the last reset.
    pub fn snapshot(&self) -> LedgerSnapshot {
        LedgerSnapshot {
            transactions: self.lock().transactions.clone(),
        }
    }

    /// What the fake saw of one transaction (empty when it never saw it).
    pub fn transaction(&self, transaction_id: &str) -> TransactionLedger {
        self.lock()
            .transactions
            .get(transaction_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets everything: effects, stored answers, counts.
    pub fn reset(&self) {
        *self.lock() = LedgerState::default();
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        // A panic while holding the lock leaves plain data behind, still consistent enough for a
        // test fake; refusing every later request would hide the original failure.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a request received, whatever happens to it next.
    pub(crate) fn record_call(&self, call: &CallId<'_>) {
        let mut state = self.lock();
        let service = service_entry(&mut state, call);
        *service.calls.entry(call.action.to_owned()).or_default() += 1;
    }

    /// Counts a request answered with an injected failure.
    pub(crate) fn record_fault(&self, call: &CallId<'_>) {
        let mut state = self.lock();
        service_entry(&mut state, call).faults_injected += 1;
    }

    /// Applies the call's effect once per idempotency key, or replays the stored answer.
    pub(crate) fn apply(&self, call: &CallId<'_>, request: &Value) -> Result<Outcome, KeyReused> {
        let mut state = self.lock();
        if let Some(stored) = state.answers.get(call.idempotency_key) {
            if stored.request != *request {
                return Err(KeyReused {
                    key: call.idempotency_key.to_owned(),
                });
            }
            let answer = stored.answer.clone();
            service_entry(&mut state, call).replays += 1;
            return Ok(Outcome {
                answer,
                replayed: true,
            });
        }

        let effect = match call.compensates_key {
            None => Effect::Applied,
            Some(action_key) if state.answers.contains_key(action_key) => Effect::Compensated,
            Some(_) => Effect::Noop,
        };
        state.next_seq += 1;
        let seq = state.next_seq;
        let service = service_entry(&mut state, call);
        let name = call.action.to_owned();
        match effect {
            Effect::Applied => {
                service.actions_applied.push(name);
                service.outstanding += 1;
            }
            Effect::Compensated => {
                service.compensations_applied.push(name);
                service.outstanding -= 1;
            }
            Effect::Noop => service.compensations_noop.push(name),
        }
        let transaction = state
            .transactions
            .get_mut(call.transaction_id)
            .expect("entry created above");
        transaction.effects.push(EffectRecord {
            seq,
            service: call.service.to_owned(),
            step: call.step.to_owned(),
            action: call.action.to_owned(),
            effect,
        });
        let answer = json!({
            "transaction_id": call.transaction_id,
            "service": call.service,
            "step": call.step,
            "action": call.action,
            "effect": effect,
            "confirmation": format!("{}-{seq:06}", call.service),
        });
        state.answers.insert(
            call.idempotency_key.to_owned(),
            StoredAnswer {
                request: request.clone(),
                answer: answer.clone(),
            },
        );
        Ok(Outcome {
            answer,
            replayed: false,
        })
    }
}

fn service_entry<'s>(state: &'s mut LedgerState, call: &CallId<'_>) -> &'s mut ServiceLedger {
    state
        .transactions
        .entry(call.transaction_id.to_owned())
        .or_default()
        .services
        .entry(call.service.to_owned())
        .or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(action: &'a str, key: &'a str, compensates: Option<&'a str>) -> CallId<'a> {
        CallId {
            transaction_id: "tx",
            service: "payments",
            step: "payment",
            action,
            idempotency_key: key,
            compensates_key: compensates,
        }
    }

    #[test]
    fn a_key_applies_once_and_replays_its_answer() {
        let ledger = Ledger::default();
        let charge = call("charge", "tx:payment:charge", None);
        let first = ledger.apply(&charge, &json!({"a": 1})).unwrap();
        let second = ledger.apply(&charge, &json!({"a": 1})).unwrap();
        assert!(!first.replayed);
        assert!(second.replayed);
        assert_eq!(first.answer, second.answer);
        let payments = ledger.transaction("tx").service("payments");
        assert_eq!(payments.actions_applied, ["charge"]);
        assert_eq!(payments.outstanding, 1);
        assert_eq!(payments.replays, 1);
    }

    #[test]
    fn a_key_reused_with_another_request_is_refused_without_effect() {
        let ledger = Ledger::default();
        let charge = call("charge", "tx:payment:charge", None);
        ledger.apply(&charge, &json!({"a": 1})).unwrap();
        assert!(ledger.apply(&charge, &json!({"a": 2})).is_err());
        assert_eq!(ledger.transaction("tx").outstanding(), 1);
    }

    #[test]
    fn a_compensation_undoes_its_action_or_is_a_noop() {
        let ledger = Ledger::default();
        let refund = call("refund", "tx:payment:refund", Some("tx:payment:charge"));
        let noop = ledger.apply(&refund, &json!({})).unwrap();
        assert_eq!(noop.answer["effect"], "noop");

        let ledger = Ledger::default();
        ledger
            .apply(&call("charge", "tx:payment:charge", None), &json!({}))
            .unwrap();
        let undone = ledger.apply(&refund, &json!({})).unwrap();
        assert_eq!(undone.answer["effect"], "compensated");
        let tx = ledger.transaction("tx");
        assert_eq!(tx.outstanding(), 0);
        assert_eq!(
            tx.effects
                .iter()
                .map(|e| (e.seq, e.effect))
                .collect::<Vec<_>>(),
            [(1, Effect::Applied), (2, Effect::Compensated)]
        );
    }
}
