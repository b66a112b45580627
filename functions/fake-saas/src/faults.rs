//! Fault injection: rules that make chosen calls fail in the ways real SaaS APIs fail, set over
//! HTTP (`/_faults`) or in process ([`Faults`]).
//!
//! A rule matches a service, an action (or any) and optionally one transaction, and fires either
//! for the next `times` matching calls or with probability `rate`. Probabilities are drawn from a
//! seeded splitmix64 generator, so a run with the same seed and the same sequence of calls fails
//! the same calls; the generator is a few lines, which is why it is here rather than `rand`.

use std::sync::{Arc, Mutex, MutexGuard};

use sagaform_saga::Saga;
use serde::{Deserialize, Serialize};

/// How long a `hang` fault sleeps unless told otherwise: past any sane client timeout.
pub const DEFAULT_HANG_MS: u64 = 60_000;

/// A way of failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// 503 Service Unavailable, no effect.
    Unavailable,
    /// A permanent refusal (4xx, 422 by default) with a JSON `reason`, no effect.
    Reject {
        /// The status (400..=499).
        #[serde(default = "default_reject_status")]
        status: u16,
        /// The `reason` of the JSON answer.
        #[serde(default = "default_reject_reason")]
        reason: String,
    },
    /// Wait, then answer normally.
    Latency {
        /// Milliseconds to wait.
        delay_ms: u64,
    },
    /// 429 Too Many Requests with `Retry-After: <retry_after_secs>`, no effect.
    RateLimited {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// Apply the effect (once per key, as usual), then answer 500 as if the answer were lost.
    ResponseLost,
    /// Sleep past the client's timeout, then answer normally. A client that gave up first
    /// drops the connection, which drops the handler: the effect then never lands (use
    /// `late_effect` for one that does).
    Hang {
        /// Milliseconds to sleep.
        #[serde(default = "default_hang_ms")]
        hang_ms: u64,
    },
    /// 200 with a body that is not JSON (a misbehaving gateway), no effect.
    InvalidBody,
    /// The effect lands after the caller gave up: the call is accepted, the answer never comes
    /// (the connection is held for `hang_ms`, past any client timeout), and `effect_after_ms`
    /// after the call arrived the effect is applied anyway, whether or not the client is still
    /// waiting, as a provider does when its queue drains after the gateway timed out. Applied
    /// once per key like any effect: a retry with the same key that lands first wins, and the
    /// late one then changes nothing.
    LateEffect {
        /// Milliseconds from the call to its effect.
        effect_after_ms: u64,
        /// Milliseconds the connection is held without an answer.
        #[serde(default = "default_hang_ms")]
        hang_ms: u64,
    },
}

fn default_reject_status() -> u16 {
    422
}

fn default_reject_reason() -> String {
    "rejected by fault injection".to_owned()
}

fn default_hang_ms() -> u64 {
    DEFAULT_HANG_MS
}

/// When a fault fires and for which calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Service matched; `None` matches every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Action or compensation matched; `None` matches every one of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Transaction matched (its `X-Correlation-Id`); `None` matches every transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The failure.
    #[serde(flatten)]
    pub fault: Fault,
    /// Fire for the next `times` matching calls only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Fire for each matching call with this probability (0.0..=1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

impl FaultRule {
    /// A rule failing every call of `action` on `service` with `fault`, until limited by
    /// [`FaultRule::times`] or [`FaultRule::rate`].
    pub fn new(service: &str, action: &str, fault: Fault) -> Self {
        Self {
            service: Some(service.to_owned()),
            action: Some(action.to_owned()),
            transaction_id: None,
            fault,
            times: None,
            rate: None,
        }
    }

    /// A rule failing every call of every action and compensation of `service`.
    pub fn on_service(service: &str, fault: Fault) -> Self {
        Self {
            action: None,
            ..Self::new(service, "", fault)
        }
    }

    /// Fires for the next `times` matching calls only.
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Fires with probability `rate` for each matching call.
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Matches the calls of one transaction only.
    pub fn for_transaction(mut self, transaction_id: &str) -> Self {
        self.transaction_id = Some(transaction_id.to_owned());
        self
    }

    fn matches(&self, service: &str, action: &str, transaction_id: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.action.as_deref().is_none_or(|a| a == action)
            && self
                .transaction_id
                .as_deref()
                .is_none_or(|t| t == transaction_id)
    }

    fn validate(&self, saga: &Saga) -> Result<(), FaultError> {
        let invalid = |reason: String| Err(FaultError { reason });
        if let Some(service) = &self.service
            && !saga.services().contains(&service.as_str())
        {
            return invalid(format!("service: {service} is not a service of the saga"));
        }
        if let Some(action) = &self.action {
            let known = saga.steps.iter().any(|step| {
                self.service.as_deref().is_none_or(|s| s == step.service)
                    && (step.action.name == action || step.compensation.name == action)
            });
            if !known {
                return invalid(format!("action: {action} is not an action of the service"));
            }
        }
        if self.times.is_some() && self.rate.is_some() {
            return invalid("times, rate: give one of them, not both".to_owned());
        }
        if let Some(rate) = self.rate
            && !(0.0..=1.0).contains(&rate)
        {
            return invalid(format!("rate: {rate} is not between 0 and 1"));
        }
        if let Fault::Reject { status, .. } = self.fault
            && !(400..=499).contains(&status)
        {
            return invalid(format!("status: {status} is not a 4xx status"));
        }
        if let Fault::LateEffect {
            effect_after_ms,
            hang_ms,
        } = self.fault
            && effect_after_ms > hang_ms
        {
            return invalid(format!(
                "effect_after_ms: {effect_after_ms} is longer than hang_ms {hang_ms}; the answer would come first"
            ));
        }
        Ok(())
    }
}

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault rule: {reason}")]
pub struct FaultError {
    /// The field and why.
    pub reason: String,
}

/// A rule with what it has done so far (the answer of `GET /_faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultStatus {
    /// The rule as set.
    #[serde(flatten)]
    pub rule: FaultRule,
    /// Calls it still fires for (rules with `times`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
    /// Calls it fired for.
    pub fired: u64,
}

/// splitmix64: a tiny, well-distributed generator, enough for reproducible fault rates.
#[derive(Debug, Clone)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct FaultState {
    seed: u64,
    rng: SplitMix64,
    rules: Vec<FaultStatus>,
}

/// Shared handle on the fault rules of a running fake (clones see the same rules).
#[derive(Clone)]
pub struct Faults {
    saga: &'static Saga,
    state: Arc<Mutex<FaultState>>,
}

impl Faults {
    pub(crate) fn new(saga: &'static Saga, seed: u64) -> Self {
        let state = FaultState {
            seed,
            rng: SplitMix64 { state: seed },
            rules: Vec::new(),
        };
        Self {
            saga,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Adds a rule after the existing ones (the first rule that fires decides a call's fault).
    pub fn add(&self, rule: FaultRule) -> Result<(), FaultError> {
        rule.validate(self.saga)?;
        let remaining = rule.times;
        self.lock().rules.push(FaultStatus {
            rule,
            remaining,
            fired: 0,
        });
        Ok(())
    }

    /// Every rule with its counts.
    pub fn list(&self) -> Vec<FaultStatus> {
        self.lock().rules.clone()
    }

    /// Removes every rule and restarts the random sequence from the seed.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.rules.clear();
        state.rng = SplitMix64 { state: state.seed };
    }

    /// The fault to inject into this call, if a rule fires; counts it down.
    pub(crate) fn pick(&self, service: &str, action: &str, transaction_id: &str) -> Option<Fault> {
        let mut state = self.lock();
        let FaultState { rng, rules, .. } = &mut *state;
        for status in rules.iter_mut() {
            if !status.rule.matches(service, action, transaction_id) {
                continue;
            }
            let fires = match (status.remaining.as_mut(), status.rule.rate) {
                (Some(0), _) => false,
                (Some(remaining), _) => {
                    *remaining -= 1;
                    true
                }
                (None, Some(rate)) => rng.next_fraction() < rate,
                (None, None) => true,
            };
            if fires {
                status.fired += 1;
                return Some(status.rule.fault.clone());
            }
        }
        None
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaform_saga::PURCHASE;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs for seed 1234567 of the reference implementation (Vigna).
        let mut rng = SplitMix64 { state: 1_234_567 };
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn rules_parse_from_the_documented_json() {
        let rule: FaultRule = serde_json::from_str(
            r#"{"service":"payments","action":"charge","fault":"rate_limited","retry_after_secs":2,"times":1}"#,
        )
        .unwrap();
        assert_eq!(
            rule,
            FaultRule::new(
                "payments",
                "charge",
                Fault::RateLimited {
                    retry_after_secs: 2
                }
            )
            .times(1)
        );
        let rule: FaultRule =
            serde_json::from_str(r#"{"service":"inventory","fault":"reject"}"#).unwrap();
        assert_eq!(
            rule.fault,
            Fault::Reject {
                status: 422,
                reason: "rejected by fault injection".into()
            }
        );
        let rule: FaultRule = serde_json::from_str(r#"{"fault":"hang","rate":0.5}"#).unwrap();
        assert_eq!(
            rule.fault,
            Fault::Hang {
                hang_ms: DEFAULT_HANG_MS
            }
        );
    }

    #[test]
    fn rules_naming_unknown_things_are_refused() {
        let faults = Faults::new(&PURCHASE, 0);
        let err = faults
            .add(FaultRule::new("billing", "charge", Fault::Unavailable))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fault rule: service: billing is not a service of the saga"
        );
        let err = faults
            .add(FaultRule::new("payments", "reserve", Fault::Unavailable))
            .unwrap_err();
        assert!(err.reason.starts_with("action: reserve"));
        let err = faults
            .add(
                FaultRule::new("payments", "charge", Fault::Unavailable)
                    .times(1)
                    .rate(0.5),
            )
            .unwrap_err();
        assert!(err.reason.contains("not both"));
        let reject = Fault::Reject {
            status: 503,
            reason: String::new(),
        };
        assert!(
            faults
                .add(FaultRule::new("payments", "charge", reject))
                .is_err()
        );
        assert!(faults.list().is_empty());
    }

    #[test]
    fn a_rule_for_one_transaction_spares_the_others() {
        let faults = Faults::new(&PURCHASE, 0);
        faults
            .add(FaultRule::new("payments", "charge", Fault::Unavailable).for_transaction("tx-a"))
            .unwrap();
        assert_eq!(faults.pick("payments", "charge", "tx-b"), None);
        assert_eq!(faults.pick("payments", "refund", "tx-a"), None);
        assert_eq!(
            faults.pick("payments", "charge", "tx-a"),
            Some(Fault::Unavailable)
        );
    }
}
