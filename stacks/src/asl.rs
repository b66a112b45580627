//! The Step Functions definition (Amazon States Language) of pattern `stepfunctions`, generated
//! from a [`Saga`] as typed structs serialized by `serde_json`, so it is deterministic and a step
//! added to the saga becomes a Task (with its compensation) here without touching this file.
//!
//! Shape, per step `s` in order: a Task `Execute s` with Retry on retryable and in-doubt errors
//! (the call is asked again with the same idempotency key) and a Catch of `States.ALL` into
//! `Give up s` with `ResultPath: $.error` (never `$`, which would drop the transaction id and
//! request). `Give up s` decides from the caught error and the stored attempts whether the step
//! failed or is in doubt (a timeout, a 5xx, a Lambda failure: the charge may still land), and
//! the Choice `s given up` ends an in-doubt saga in `InDoubt`, without compensating anything,
//! goes on when the step turns out to have succeeded, and otherwise compensates. The step that
//! failed is compensated too, since it may have partly succeeded; compensations run in reverse
//! order and are retried harder. One that
//! fails for good is caught into a `mark_failed` Task (its result at
//! `$.compensation_failures.<step>`), and the earlier steps are still undone: compensations are
//! independent. After the last one a Choice ends in `CompensationFailed` when any compensation
//! failed, else in the Succeed state `Compensated` (a compensated saga is not a failed execution). Every Task has `TimeoutSeconds`, and the execution as a whole
//! a timeout no legitimate run can exceed.

use sagaform_contract::task::error_types::{IN_DOUBT, RETRYABLE};
pub use sagaform_contract::task::{ERROR_PATH, GIVEN_UP_PATH, Operation, TaskPayloadTemplate};
use std::time::Duration;

use indexmap::IndexMap;
use sagaform_saga::{RetryPolicy, Saga, Step};
use serde::Serialize;

/// The `!Sub` variable the definition uses for the ARN of the `step` function.
pub const STEP_FUNCTION_ARN_VARIABLE: &str = "StepFunctionArn";

/// The handler's `errorType`s for a failure that asking again may cure: retried under the
/// step's own retry policy. An in-doubt failure is asked again with the same idempotency key,
/// and the provider's answer settles it.
pub const RETRYABLE_ERRORS: [&str; 2] = [RETRYABLE, IN_DOUBT];

/// Lambda's errors for an invocation that gave no answer of the handler: the Lambda service
/// failed or throttled, or the function's instance died (a timeout, running out of memory:
/// `Lambda.Unknown`). The step's call may or may not have happened, so the Task is asked again
/// (the call repeats with the same idempotency key and lands once), under
/// [`LAMBDA_ERROR_RETRY`], a backoff of its own: these are not the SaaS's failures and must not
/// use up the step's policy.
pub const LAMBDA_SERVICE_ERRORS: [&str; 6] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.Unknown",
];

/// The backoff of [`LAMBDA_SERVICE_ERRORS`]: 2, 4, 8 then 16 seconds at the most, jittered.
/// Longer than a step's usual policy because a throttled or recovering Lambda service needs
/// seconds, not milliseconds.
pub const LAMBDA_ERROR_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 4,
    initial_delay: Duration::from_secs(2),
    backoff_rate: 2,
    max_delay: Duration::from_secs(16),
};

/// What a Task's `TimeoutSeconds` adds to the function's own timeout: the invoke's latency and
/// a cold start (Lambda allows 10 s for a function's init), so that an attempt which runs out
/// of time ends by the function's timeout (`Lambda.Unknown`, retried) and not by the Task's
/// `States.Timeout` while the function still runs.
pub const INVOKE_MARGIN: Duration = Duration::from_secs(10);

/// Name of the Succeed state reached when every step succeeded.
pub const COMPLETED_STATE: &str = "Completed";
/// Name of the Succeed state reached when every compensation succeeded: a compensated saga is
/// not a failed execution.
pub const COMPENSATED_STATE: &str = "Compensated";
/// Name of the Fail state reached when a compensation failed for good.
pub const COMPENSATION_FAILED_STATE: &str = "CompensationFailed";
/// Name of the Fail state reached when a step's outcome is unknown after its retries: nothing
/// was compensated, an operator asks again.
pub const IN_DOUBT_STATE: &str = "InDoubt";
/// Name of the Choice state after the last compensation.
pub const COMPENSATIONS_SETTLED_STATE: &str = "Compensations settled";
/// Where a compensation that failed for good leaves its `mark_failed` result in the execution
/// state, one key per step; the Choice after the last compensation tests its presence.
pub const COMPENSATION_FAILURES_PATH: &str = "$.compensation_failures";

/// A state machine definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Definition {
    /// What the state machine does.
    pub comment: String,
    /// First state.
    pub start_at: String,
    /// Upper bound of one execution, in seconds.
    pub timeout_seconds: u64,
    /// States by name, in a reviewable order.
    pub states: IndexMap<String, State>,
}

/// A state.
// A definition holds a handful of states built once; boxing Tasks would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "Type")]
pub enum State {
    /// Invokes the `step` function.
    Task(Task),
    /// Ends the execution successfully.
    Succeed(Succeed),
    /// Ends the execution as failed.
    Fail(Fail),
    /// Goes on by the first rule that holds.
    Choice(Choice),
}

/// A Choice state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Choice {
    /// What it decides.
    pub comment: String,
    /// Rules in order.
    pub choices: Vec<ChoiceRule>,
    /// Where to go when no rule holds.
    pub default: String,
}

/// A Choice rule testing a path of the state: whether it is present, or whether it holds a
/// given string (one test per rule).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChoiceRule {
    /// The path tested.
    pub variable: String,
    /// Holds when the path is present (`true`) or absent (`false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_present: Option<bool>,
    /// Holds when the path holds this string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_equals: Option<String>,
    /// Where to go when it holds.
    pub next: String,
}

impl ChoiceRule {
    /// Whether the rule holds for `value`, the value at its variable (`None` when absent).
    pub fn holds(&self, value: Option<&serde_json::Value>) -> bool {
        if let Some(present) = self.is_present {
            return value.is_some() == present;
        }
        match &self.string_equals {
            Some(expected) => value.and_then(|v| v.as_str()) == Some(expected.as_str()),
            None => false,
        }
    }
}

/// A Task invoking the `step` function through the optimized Lambda integration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    /// What the task does.
    pub comment: String,
    /// `arn:aws:states:::lambda:invoke`.
    pub resource: String,
    /// Function and payload.
    pub parameters: TaskParameters,
    /// Keeps only the function's answer out of the invoke response.
    pub result_selector: IndexMap<String, String>,
    /// Where the answer goes in the state (never `$`).
    pub result_path: String,
    /// Seconds one attempt may take.
    pub timeout_seconds: u64,
    /// Retries.
    pub retry: Vec<Retrier>,
    /// Where failures go.
    pub catch: Vec<Catcher>,
    /// Next state.
    pub next: String,
}

/// Parameters of a Lambda invoke.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskParameters {
    /// The function ARN (a `!Sub` variable).
    pub function_name: String,
    /// The event the function receives.
    pub payload: TaskPayloadTemplate,
}

/// A retry rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Retrier {
    /// Errors retried.
    pub error_equals: Vec<String>,
    /// Seconds before the first retry.
    pub interval_seconds: u64,
    /// Retries.
    pub max_attempts: u32,
    /// Delay multiplier.
    pub backoff_rate: f64,
    /// Cap of one delay.
    pub max_delay_seconds: u64,
    /// Randomizes delays so retries of many executions do not arrive together.
    pub jitter_strategy: JitterStrategy,
}

impl Retrier {
    /// The longest total wait of all retries (jitter only shortens delays).
    pub fn worst_case_wait_seconds(&self) -> u64 {
        let mut delay = self.interval_seconds as f64;
        let mut total = 0.0;
        for _ in 0..self.max_attempts {
            total += delay.min(self.max_delay_seconds as f64);
            delay *= self.backoff_rate;
        }
        total.ceil() as u64
    }
}

/// Jitter strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JitterStrategy {
    /// Delays drawn uniformly between 0 and the computed delay.
    Full,
    /// No jitter.
    None,
}

/// A catch rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Catcher {
    /// Errors caught.
    pub error_equals: Vec<String>,
    /// Where the error goes in the state.
    pub result_path: String,
    /// Next state.
    pub next: String,
}

/// A Succeed state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Succeed {
    /// What it means.
    pub comment: String,
}

/// A Fail state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Fail {
    /// What it means.
    pub comment: String,
    /// Error name of the failed execution.
    pub error: String,
    /// Human-readable cause.
    pub cause: String,
}

/// State name of a step's action.
pub fn execute_state(step: &Step) -> String {
    format!("Execute {}", step.name)
}

/// State name of a step's compensation.
pub fn compensate_state(step: &Step) -> String {
    format!("Compensate {}", step.name)
}

/// State name of the task deciding whether a step that failed past its retries is in doubt.
pub fn give_up_state(step: &Step) -> String {
    format!("Give up {}", step.name)
}

/// State name of the Choice after [`give_up_state`].
pub fn given_up_state(step: &Step) -> String {
    format!("{} given up", step.name)
}

/// State name of the task recording that a step's compensation failed for good.
pub fn mark_failed_state(step: &Step) -> String {
    format!("Mark {} compensation failed", step.name)
}

impl Definition {
    /// The definition of `saga`, each Task allowed `task_timeout` per attempt (the timeout of
    /// the `step` function: an attempt cannot outlive its invocation).
    pub fn for_saga(saga: &Saga, task_timeout: Duration) -> Definition {
        let task_timeout_seconds = ceil_seconds(task_timeout).max(1) + ceil_seconds(INVOKE_MARGIN);
        let mut states = IndexMap::new();
        let steps = saga.steps;

        for (index, step) in steps.iter().enumerate() {
            let task = execute_task(steps, index, task_timeout_seconds);
            states.insert(execute_state(step), State::Task(task));
        }
        states.insert(
            COMPLETED_STATE.to_owned(),
            State::Succeed(Succeed {
                comment: "Every step succeeded.".to_owned(),
            }),
        );
        for (index, step) in steps.iter().enumerate() {
            let task = give_up_task(steps, index, task_timeout_seconds);
            states.insert(give_up_state(step), State::Task(task));
            states.insert(given_up_state(step), given_up_choice(steps, index));
        }
        states.insert(IN_DOUBT_STATE.to_owned(), in_doubt_state());
        for (index, step) in steps.iter().enumerate().rev() {
            let task = compensate_task(steps, index, task_timeout_seconds);
            states.insert(compensate_state(step), State::Task(task));
        }
        states.insert(
            COMPENSATIONS_SETTLED_STATE.to_owned(),
            compensations_settled_state(),
        );
        states.insert(COMPENSATED_STATE.to_owned(), compensated_state());
        for (index, step) in steps.iter().enumerate().rev() {
            let task = mark_failed_task(steps, index, task_timeout_seconds);
            states.insert(mark_failed_state(step), State::Task(task));
        }
        states.insert(
            COMPENSATION_FAILED_STATE.to_owned(),
            compensation_failed_state(),
        );

        let start_at = steps
            .first()
            .map(execute_state)
            .unwrap_or_else(|| COMPLETED_STATE.to_owned());
        let mut definition = Definition {
            comment: format!(
                "Saga `{}` generated by sagaform from its definition: one Task per step, compensations in reverse order.",
                saga.name
            ),
            start_at,
            timeout_seconds: 0,
            states,
        };
        definition.timeout_seconds = definition.worst_case_seconds();
        definition
    }

    /// The longest an execution can legitimately run: every Task at most once on any path
    /// (there are no loops), each with every attempt timing out and every retry delay at its
    /// maximum. A `TimedOut` execution therefore means something beyond retries went wrong.
    pub fn worst_case_seconds(&self) -> u64 {
        self.tasks()
            .map(|(_, task)| {
                let attempts = 1 + task
                    .retry
                    .iter()
                    .map(|r| u64::from(r.max_attempts))
                    .sum::<u64>();
                let waits: u64 = task
                    .retry
                    .iter()
                    .map(Retrier::worst_case_wait_seconds)
                    .sum();
                task.timeout_seconds * attempts + waits
            })
            .sum()
    }

    /// Every Task with its name.
    pub fn tasks(&self) -> impl Iterator<Item = (&str, &Task)> {
        self.states.iter().filter_map(|(name, state)| match state {
            State::Task(task) => Some((name.as_str(), task)),
            _ => None,
        })
    }

    /// The definition as JSON text, for `DefinitionString`.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and numbers to a String cannot fail.
        serde_json::to_string_pretty(self).expect("an ASL definition always serializes")
    }
}

/// What follows step `index` of `steps` once it succeeded: the next step, or `Completed`.
fn after_step(steps: &[Step], index: usize) -> String {
    match steps.get(index + 1) {
        Some(following) => execute_state(following),
        None => COMPLETED_STATE.to_owned(),
    }
}

/// The Task running step `index` of `steps`: on success it goes to the next step (or
/// `Completed`), on a failure that retries did not cure to giving it up.
fn execute_task(steps: &[Step], index: usize, timeout_seconds: u64) -> Task {
    let step = &steps[index];
    let next = after_step(steps, index);
    Task {
        comment: format!(
            "{} on {} ({} of {})",
            step.action.name,
            step.service,
            index + 1,
            steps.len()
        ),
        resource: "arn:aws:states:::lambda:invoke".to_owned(),
        parameters: parameters(Operation::Execute, step),
        result_selector: result_selector(),
        result_path: format!("$.results.{}", step.name),
        timeout_seconds,
        retry: retriers(&step.retry),
        catch: vec![catch_into(give_up_state(step))],
        next,
    }
}

/// The Task deciding, after step `index` failed past its retries, whether it failed (the saga
/// compensates) or is in doubt (the saga parks). Retried like a compensation (it only writes the
/// state); if even that fails for good, the execution ends in `InDoubt` without compensating:
/// the saga record still says RUNNING, which the stuck-saga view shows.
fn give_up_task(steps: &[Step], index: usize, timeout_seconds: u64) -> Task {
    let step = &steps[index];
    Task {
        comment: format!(
            "{} failed past its retries: failed for good (compensate) or in doubt (park, nothing compensated)",
            step.action.name
        ),
        resource: "arn:aws:states:::lambda:invoke".to_owned(),
        parameters: parameters(Operation::GiveUp, step),
        result_selector: result_selector(),
        result_path: GIVEN_UP_PATH.to_owned(),
        timeout_seconds,
        retry: retriers(&step.compensation_retry),
        catch: vec![Catcher {
            error_equals: vec!["States.ALL".to_owned()],
            result_path: format!("{GIVEN_UP_PATH}_error"),
            next: IN_DOUBT_STATE.to_owned(),
        }],
        next: given_up_state(step),
    }
}

/// The Choice after `Give up s`: `InDoubt` when the saga parked, the next step when the step
/// turned out to have succeeded (its answer to the state machine was lost), else the step's
/// compensation.
fn given_up_choice(steps: &[Step], index: usize) -> State {
    let step = &steps[index];
    let result = |field: &str| format!("{GIVEN_UP_PATH}.Payload.{field}");
    State::Choice(Choice {
        comment: format!("What giving up {} decided.", step.name),
        choices: vec![
            ChoiceRule {
                variable: result("saga_status"),
                is_present: None,
                string_equals: Some("IN_DOUBT".to_owned()),
                next: IN_DOUBT_STATE.to_owned(),
            },
            ChoiceRule {
                variable: result("step_status"),
                is_present: None,
                string_equals: Some("SUCCEEDED".to_owned()),
                next: after_step(steps, index),
            },
        ],
        default: compensate_state(step),
    })
}

/// The Fail state of a saga whose step's outcome is unknown.
fn in_doubt_state() -> State {
    State::Fail(Fail {
        comment: "A step's outcome is unknown after its retries: nothing was compensated; an operator asks again (saga retry).".to_owned(),
        error: "SagaInDoubt".to_owned(),
        cause: "a step got no definite answer after all its retries and may still take effect; see the runbook".to_owned(),
    })
}

/// What follows the compensation of step `index` of `steps`, whether it succeeded or was marked
/// failed: the previous step's compensation, or after the first step's the Choice that settles
/// the saga.
fn after_compensation(steps: &[Step], index: usize) -> String {
    match index.checked_sub(1) {
        Some(previous) => compensate_state(&steps[previous]),
        None => COMPENSATIONS_SETTLED_STATE.to_owned(),
    }
}

/// The Task undoing step `index` of `steps`: on success it goes to the previous step's
/// compensation (or the settling Choice), on a failure that retries did not cure to marking the
/// step's compensation failed.
fn compensate_task(steps: &[Step], index: usize, timeout_seconds: u64) -> Task {
    let step = &steps[index];
    let next = after_compensation(steps, index);
    Task {
        comment: format!(
            "{} on {}: undoes {}",
            step.compensation.name, step.service, step.action.name
        ),
        resource: "arn:aws:states:::lambda:invoke".to_owned(),
        parameters: parameters(Operation::Compensate, step),
        result_selector: result_selector(),
        result_path: format!("$.compensations.{}", step.name),
        timeout_seconds,
        retry: retriers(&step.compensation_retry),
        catch: vec![catch_into(mark_failed_state(step))],
        next,
    }
}

/// The Task recording that step `index`'s compensation failed for good; whether the record
/// succeeds or not, its result lands under [`COMPENSATION_FAILURES_PATH`] and the earlier steps
/// are still undone.
fn mark_failed_task(steps: &[Step], index: usize, timeout_seconds: u64) -> Task {
    let step = &steps[index];
    let result_path = format!("{COMPENSATION_FAILURES_PATH}.{}", step.name);
    let next = after_compensation(steps, index);
    Task {
        comment: format!(
            "records that {} could not be undone; the earlier steps are still undone",
            step.name
        ),
        resource: "arn:aws:states:::lambda:invoke".to_owned(),
        parameters: parameters(Operation::MarkFailed, step),
        result_selector: result_selector(),
        result_path: result_path.clone(),
        timeout_seconds,
        retry: retriers(&step.compensation_retry),
        catch: vec![Catcher {
            error_equals: vec!["States.ALL".to_owned()],
            result_path,
            next: next.clone(),
        }],
        next,
    }
}

/// The Choice after the last compensation: `CompensationFailed` when a compensation failed for
/// good, else `Compensated`.
fn compensations_settled_state() -> State {
    State::Choice(Choice {
        comment: "Every compensation has run: a human is needed when one failed for good."
            .to_owned(),
        choices: vec![ChoiceRule {
            variable: COMPENSATION_FAILURES_PATH.to_owned(),
            is_present: Some(true),
            string_equals: None,
            next: COMPENSATION_FAILED_STATE.to_owned(),
        }],
        default: COMPENSATED_STATE.to_owned(),
    })
}

/// The Succeed state of a saga whose failed step and earlier steps were all undone: the
/// execution did what it is for (the purchase was refused and nothing of it stands), so it is
/// not a failed execution, and the failed-executions alarm is left to the sagas that need a
/// human.
fn compensated_state() -> State {
    State::Succeed(Succeed {
        comment: "A step failed and every step already done was undone: the saga is COMPENSATED."
            .to_owned(),
    })
}

/// The Fail state of a saga a human must finish.
fn compensation_failed_state() -> State {
    State::Fail(Fail {
        comment: "A compensation failed for good: a human must finish the saga.".to_owned(),
        error: "CompensationFailed".to_owned(),
        cause: "a compensation failed after all its retries (the others ran); see the runbook"
            .to_owned(),
    })
}

fn parameters(operation: Operation, step: &Step) -> TaskParameters {
    TaskParameters {
        function_name: format!("${{{STEP_FUNCTION_ARN_VARIABLE}}}"),
        payload: TaskPayloadTemplate::new(operation, step.name),
    }
}

fn result_selector() -> IndexMap<String, String> {
    IndexMap::from([("Payload.$".to_owned(), "$.Payload".to_owned())])
}

/// A Task's retriers: the step's policy for the handler's retryable failures, then Lambda's own
/// errors under their own backoff.
fn retriers(policy: &RetryPolicy) -> Vec<Retrier> {
    vec![
        retrier(&RETRYABLE_ERRORS, policy),
        retrier(&LAMBDA_SERVICE_ERRORS, &LAMBDA_ERROR_RETRY),
    ]
}

fn retrier(errors: &[&str], policy: &RetryPolicy) -> Retrier {
    // ASL counts in whole seconds and needs an interval of at least one.
    let interval_seconds = ceil_seconds(policy.initial_delay).max(1);
    Retrier {
        error_equals: errors.iter().map(|e| (*e).to_owned()).collect(),
        interval_seconds,
        max_attempts: policy.max_retries,
        backoff_rate: f64::from(policy.backoff_rate.max(1)),
        max_delay_seconds: ceil_seconds(policy.max_delay).max(interval_seconds),
        jitter_strategy: JitterStrategy::Full,
    }
}

fn catch_into(next: String) -> Catcher {
    Catcher {
        error_equals: vec!["States.ALL".to_owned()],
        result_path: ERROR_PATH.to_owned(),
        next,
    }
}

fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
