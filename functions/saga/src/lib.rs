//! The saga definition shared by the infrastructure generator (`stacks`) and the runtime
//! (`functions`): which steps a transaction has, in which order, what each step calls, what undoes
//! it, and how long and how often it may be tried.
//!
//! Everything that depends on the shape of the saga (the Step Functions states, the Lambda
//! timeouts, the orchestrator's time budget, the SaaS endpoints in env config, the runtime's step
//! loop) is derived from [`PURCHASE`], so adding a step is a change in this file only.

pub mod adapter;

use std::time::Duration;

/// One call to a downstream SaaS: the action of a step or its compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// Name of the action, used in URLs (`POST {service_url}/{name}`), in the idempotency key
    /// `{transaction_id}:{step}:{action}` and in Step Functions state names.
    pub name: &'static str,
}

/// How often and how patiently a call is retried when it fails with a retryable error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Multiplier applied to the delay after each retry.
    pub backoff_rate: u32,
    /// Upper bound of a single delay (before jitter).
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), without jitter.
    pub fn delay_before(&self, retry: u32) -> Duration {
        let factor = self.backoff_rate.saturating_pow(retry.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }

    /// The longest time all retries can wait in total, without jitter.
    pub fn worst_case_wait(&self) -> Duration {
        (1..=self.max_retries).map(|n| self.delay_before(n)).sum()
    }
}

/// One step of the saga: an action on one service and the compensation that undoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Step name, `snake_case`; part of idempotency keys and state names.
    pub name: &'static str,
    /// The downstream service the step calls; its base URL comes from env config
    /// (`[saas.<service>] url`).
    pub service: &'static str,
    /// What the step does.
    pub action: Action,
    /// What undoes it; must be safe to call when the action never took effect.
    pub compensation: Action,
    /// Time limit of one attempt of the action or the compensation.
    pub timeout: Duration,
    /// Retries of the action on retryable errors.
    pub retry: RetryPolicy,
    /// Retries of the compensation on retryable errors; compensations are retried harder than
    /// actions because giving up on one needs a human.
    pub compensation_retry: RetryPolicy,
}

impl Step {
    /// The idempotency key sent with the step's action or compensation.
    pub fn idempotency_key(&self, transaction_id: &str, action: &Action) -> String {
        format!("{transaction_id}:{}:{}", self.name, action.name)
    }

    /// The longest one call (action or compensation) can take with all its retries.
    pub fn worst_case_duration(&self, policy: &RetryPolicy) -> Duration {
        self.timeout.saturating_mul(policy.max_retries + 1) + policy.worst_case_wait()
    }
}

/// A saga: a name and its steps in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saga {
    /// Saga name, `snake_case`.
    pub name: &'static str,
    /// Steps in execution order; compensations run in the reverse order.
    pub steps: &'static [Step],
}

impl Saga {
    /// The step with this name.
    pub fn step(&self, name: &str) -> Option<&'static Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The retry policy of a call: the action's or the compensation's policy of `step`, as
    /// named by `action`; `None` when the saga has no such step or the step no such call.
    pub fn retry_policy(&self, step: &str, action: &str) -> Option<&'static RetryPolicy> {
        let step = self.step(step)?;
        if step.action.name == action {
            Some(&step.retry)
        } else if step.compensation.name == action {
            Some(&step.compensation_retry)
        } else {
            None
        }
    }

    /// The distinct downstream services, in step order.
    pub fn services(&self) -> Vec<&'static str> {
        let mut services: Vec<&'static str> = Vec::new();
        for step in self.steps {
            if !services.contains(&step.service) {
                services.push(step.service);
            }
        }
        services
    }

    /// The deliveries a message of this saga may fail for its own retries in the sqs pattern,
    /// where each retry of an action or of a compensation is one redelivery: every step's
    /// action and compensation retries together, more than any run can use.
    pub fn redelivery_budget(&self) -> u32 {
        self.steps
            .iter()
            .map(|s| s.retry.max_retries + s.compensation_retry.max_retries)
            .sum()
    }

    /// The work queue's `maxReceiveCount` for this saga: its [`redelivery budget`] on top of
    /// `poison_receives`, the deliveries a message may fail for other reasons (malformed, a
    /// crashed or timed-out worker, the state store unavailable) before it goes to the
    /// dead-letter queue. So the receive count, which spans every step of the saga, never cuts
    /// a step's own retries short.
    ///
    /// [`redelivery budget`]: Saga::redelivery_budget
    pub fn max_receive_count(&self, poison_receives: u32) -> u32 {
        poison_receives.saturating_add(self.redelivery_budget())
    }

    /// The longest time the whole saga can take when run in one process (the orchestrator
    /// pattern): every action and, after a failure at the last step, every compensation, each with
    /// all its retries.
    pub fn worst_case_duration(&self) -> Duration {
        self.steps
            .iter()
            .map(|s| s.worst_case_duration(&s.retry) + s.worst_case_duration(&s.compensation_retry))
            .sum()
    }
}

const ACTION_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 3,
    initial_delay: Duration::from_millis(200),
    backoff_rate: 2,
    max_delay: Duration::from_secs(2),
};

const COMPENSATION_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 5,
    initial_delay: Duration::from_millis(200),
    backoff_rate: 2,
    max_delay: Duration::from_secs(2),
};

/// A step of the example saga: `service` is asked to `action` and, to undo it, to
/// `compensation`, each attempt within `timeout_secs`; every step retries under the same
/// policies, so a step of the saga reads as one line.
const fn purchase_step(
    name: &'static str,
    service: &'static str,
    action: &'static str,
    compensation: &'static str,
    timeout_secs: u64,
) -> Step {
    Step {
        name,
        service,
        action: Action { name: action },
        compensation: Action { name: compensation },
        timeout: Duration::from_secs(timeout_secs),
        retry: ACTION_RETRY,
        compensation_retry: COMPENSATION_RETRY,
    }
}

/// The example saga: an in-game purchase across three SaaS providers.
pub const PURCHASE: Saga = Saga {
    name: "purchase",
    steps: &[
        purchase_step("stock", "inventory", "reserve", "release", 3),
        purchase_step("payment", "payments", "charge", "refund", 5),
        purchase_step("entitlement", "entitlements", "grant", "revoke", 3),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_retried_under_its_own_policy() {
        assert_eq!(
            PURCHASE.retry_policy("payment", "charge"),
            Some(&ACTION_RETRY)
        );
        assert_eq!(
            PURCHASE.retry_policy("payment", "refund"),
            Some(&COMPENSATION_RETRY)
        );
        assert_eq!(PURCHASE.retry_policy("payment", "grant"), None);
        assert_eq!(PURCHASE.retry_policy("shipping", "charge"), None);
    }

    #[test]
    fn purchase_saga_has_three_steps_each_undoable() {
        let names: Vec<_> = PURCHASE.steps.iter().map(|s| s.name).collect();
        assert_eq!(names, ["stock", "payment", "entitlement"]);
        for step in PURCHASE.steps {
            assert_ne!(step.action, step.compensation);
        }
    }

    #[test]
    fn idempotency_key_names_transaction_step_and_action() {
        let step = PURCHASE.step("payment").unwrap();
        assert_eq!(
            step.idempotency_key("tx1", &step.compensation),
            "tx1:payment:refund"
        );
    }

    #[test]
    fn retry_delay_grows_by_backoff_rate_and_is_capped() {
        let p = ACTION_RETRY;
        assert_eq!(p.delay_before(1), Duration::from_millis(200));
        assert_eq!(p.delay_before(2), Duration::from_millis(400));
        assert_eq!(p.delay_before(3), Duration::from_millis(800));
        assert_eq!(p.delay_before(10), Duration::from_secs(2));
        assert_eq!(p.worst_case_wait(), Duration::from_millis(1400));
    }

    #[test]
    fn the_queue_leaves_room_for_every_retry_of_every_step_on_top_of_the_poison_bound() {
        // Three steps, three action retries and five compensation retries each.
        assert_eq!(PURCHASE.redelivery_budget(), 24);
        assert_eq!(PURCHASE.max_receive_count(5), 29);
    }

    #[test]
    fn services_are_listed_once_in_step_order() {
        assert_eq!(
            PURCHASE.services(),
            ["inventory", "payments", "entitlements"]
        );
    }
}
