//! The state machine generated from the saga definition: retries, catches, compensation order,
//! timeouts and terminal states, checked on the typed definition and on its JSON.

use std::time::Duration;

use sagaform_saga::{Action, PURCHASE, RetryPolicy, Saga, Step};
use sagaform_stacks::asl::{
    COMPENSATED_STATE, COMPENSATION_FAILED_STATE, COMPENSATION_FAILURES_PATH,
    COMPENSATIONS_SETTLED_STATE, COMPLETED_STATE, Definition, IN_DOUBT_STATE, INVOKE_MARGIN,
    LAMBDA_ERROR_RETRY, LAMBDA_SERVICE_ERRORS, Operation, RETRYABLE_ERRORS,
    STEP_FUNCTION_ARN_VARIABLE, State, Task, compensate_state, execute_state, give_up_state,
    given_up_state, mark_failed_state,
};

const TASK_TIMEOUT: Duration = Duration::from_secs(30);

fn purchase() -> Definition {
    Definition::for_saga(&PURCHASE, TASK_TIMEOUT)
}

fn task<'d>(definition: &'d Definition, name: &str) -> &'d Task {
    match definition.states.get(name) {
        Some(State::Task(task)) => task,
        other => panic!("state {name:?} is not a Task: {other:?}"),
    }
}

/// The states visited from `start` when every action and compensation Task takes its Catch and
/// giving up finds the step failed for good (a definite refusal: compensate), up to the Choice
/// that settles the compensations.
fn failure_path(definition: &Definition, start: &str) -> Vec<String> {
    let mut path = vec![start.to_owned()];
    let mut current = start.to_owned();
    loop {
        current = match definition.states.get(&current) {
            Some(State::Task(task)) if task.parameters.payload.operation == Operation::GiveUp => {
                task.next.clone()
            }
            Some(State::Task(task)) => task.catch[0].next.clone(),
            Some(State::Choice(choice)) if current != COMPENSATIONS_SETTLED_STATE => {
                choice.default.clone()
            }
            _ => return path,
        };
        path.push(current.clone());
    }
}

/// The states visited from `start` when every Task succeeds.
fn success_path(definition: &Definition, start: &str) -> Vec<String> {
    let mut path = vec![start.to_owned()];
    let mut current = start.to_owned();
    while let Some(State::Task(task)) = definition.states.get(&current) {
        current = task.next.clone();
        path.push(current.clone());
    }
    path
}

#[test]
fn steps_run_in_definition_order_and_end_completed() {
    let definition = purchase();
    assert_eq!(definition.start_at, "Execute stock");
    assert_eq!(
        success_path(&definition, &definition.start_at),
        [
            "Execute stock",
            "Execute payment",
            "Execute entitlement",
            COMPLETED_STATE
        ]
    );
    assert!(matches!(
        definition.states[COMPLETED_STATE],
        State::Succeed(_)
    ));
}

#[test]
fn a_failure_compensates_the_failing_step_then_earlier_ones_in_reverse() {
    let definition = purchase();
    let execute_payment = task(&definition, "Execute payment");
    assert_eq!(execute_payment.catch[0].next, "Give up payment");
    assert_eq!(
        failure_path(&definition, "Execute payment")[..4],
        [
            "Execute payment",
            "Give up payment",
            "payment given up",
            "Compensate payment"
        ]
    );
    let compensations: Vec<String> = PURCHASE.steps.iter().rev().map(compensate_state).collect();
    assert_eq!(
        compensations,
        [
            "Compensate entitlement",
            "Compensate payment",
            "Compensate stock"
        ]
    );
    // After compensating payment: stock, then the Choice that ends the execution.
    assert_eq!(
        task(&definition, "Compensate payment").next,
        "Compensate stock"
    );
    assert_eq!(
        task(&definition, "Compensate stock").next,
        COMPENSATIONS_SETTLED_STATE
    );
    // A failure at the last step undoes every step, last first.
    let last = PURCHASE.steps.last().unwrap();
    let mut expected = vec![execute_state(last)];
    expected.extend(compensations.iter().cloned());
    assert_eq!(
        task(&definition, &execute_state(last)).catch[0].next,
        give_up_state(last)
    );
    let State::Choice(given_up) = &definition.states[&given_up_state(last)] else {
        panic!("{} is not a Choice", given_up_state(last));
    };
    assert_eq!(given_up.default, compensate_state(last));
    let mut undo = vec![execute_state(last)];
    let mut current = compensate_state(last);
    while let Some(State::Task(t)) = definition.states.get(&current) {
        undo.push(current.clone());
        current = t.next.clone();
    }
    assert_eq!(undo, expected);
    // A compensated saga is not a failed execution: the failed-executions alarm is for the
    // sagas that need a human.
    assert!(matches!(
        definition.states[COMPENSATED_STATE],
        State::Succeed(_)
    ));
    assert!(matches!(
        definition.states[COMPENSATION_FAILED_STATE],
        State::Fail(_)
    ));
}

#[test]
fn catch_never_overwrites_the_whole_state() {
    let definition = purchase();
    for (name, task) in definition.tasks() {
        assert!(!task.catch.is_empty(), "{name} has no Catch");
        for catcher in &task.catch {
            assert_eq!(catcher.error_equals, ["States.ALL"], "{name}");
            assert_ne!(
                catcher.result_path, "$",
                "{name} drops its input on failure"
            );
            assert!(catcher.result_path.starts_with("$."), "{name}");
        }
        assert_ne!(task.result_path, "$", "{name} drops its input on success");
    }
    assert_eq!(
        task(&definition, "Execute stock").catch[0].result_path,
        "$.error"
    );
    assert_eq!(
        task(&definition, "Execute stock").result_path,
        "$.results.stock"
    );
    assert_eq!(
        task(&definition, "Compensate stock").result_path,
        "$.compensations.stock"
    );
}

#[test]
fn retries_only_retryable_errors_with_backoff_jitter_and_a_cap() {
    let definition = purchase();
    for (name, task) in definition.tasks() {
        assert_eq!(task.retry.len(), 2, "{name}");
        assert_eq!(task.retry[0].error_equals, RETRYABLE_ERRORS, "{name}");
        for retrier in &task.retry {
            assert!(
                !retrier
                    .error_equals
                    .iter()
                    .any(|e| e == "States.ALL" || e == "Permanent" || e == "States.Timeout"),
                "{name}"
            );
            assert!(
                retrier.backoff_rate >= 1.0 && retrier.interval_seconds >= 1,
                "{name}"
            );
            assert!(
                retrier.max_delay_seconds >= retrier.interval_seconds,
                "{name}"
            );
            assert_eq!(
                serde_json::to_value(retrier.jitter_strategy).unwrap(),
                "FULL"
            );
        }
    }
    let stock = PURCHASE.step("stock").unwrap();
    let action = &task(&definition, "Execute stock").retry[0];
    assert_eq!(action.max_attempts, stock.retry.max_retries);
    assert_eq!(action.backoff_rate, f64::from(stock.retry.backoff_rate));
    assert_eq!(action.max_delay_seconds, stock.retry.max_delay.as_secs());
}

#[test]
fn lambda_errors_are_retried_under_their_own_backoff_not_the_steps_policy() {
    let definition = purchase();
    for (name, task) in definition.tasks() {
        let lambda = &task.retry[1];
        assert_eq!(lambda.error_equals, LAMBDA_SERVICE_ERRORS, "{name}");
        assert!(
            lambda.error_equals.iter().any(|e| e == "Lambda.Unknown"),
            "{name}: a dead instance is retried"
        );
        assert_eq!(
            lambda.max_attempts, LAMBDA_ERROR_RETRY.max_retries,
            "{name}"
        );
        assert_eq!(
            lambda.interval_seconds,
            LAMBDA_ERROR_RETRY.initial_delay.as_secs(),
            "{name}"
        );
    }
    let stock = PURCHASE.step("stock").unwrap();
    assert_ne!(stock.retry, LAMBDA_ERROR_RETRY);
}

#[test]
fn compensations_are_retried_harder_than_actions() {
    let definition = purchase();
    for step in PURCHASE.steps {
        let action = &task(&definition, &execute_state(step)).retry[0];
        let compensation = &task(&definition, &compensate_state(step)).retry[0];
        assert_eq!(
            compensation.max_attempts,
            step.compensation_retry.max_retries
        );
        assert!(
            compensation.max_attempts > action.max_attempts,
            "{}",
            step.name
        );
    }
}

#[test]
fn a_failed_compensation_is_marked_and_the_earlier_steps_are_still_undone() {
    let definition = purchase();
    for (index, step) in PURCHASE.steps.iter().enumerate() {
        let mark = mark_failed_state(step);
        assert_eq!(
            task(&definition, &compensate_state(step)).catch[0].next,
            mark
        );
        let mark_task = task(&definition, &mark);
        assert_eq!(
            mark_task.parameters.payload.operation,
            Operation::MarkFailed
        );
        assert_eq!(mark_task.parameters.payload.step, step.name);
        // Marked or not (the record may fail), the previous step is undone next.
        let after = match index.checked_sub(1) {
            Some(previous) => compensate_state(&PURCHASE.steps[previous]),
            None => COMPENSATIONS_SETTLED_STATE.to_owned(),
        };
        assert_eq!(mark_task.next, after);
        assert_eq!(mark_task.catch[0].next, after);
        let failure = format!("{COMPENSATION_FAILURES_PATH}.{}", step.name);
        assert_eq!(mark_task.result_path, failure);
        assert_eq!(mark_task.catch[0].result_path, failure);
    }
    // The Choice fails the execution as CompensationFailed once any compensation failed.
    let State::Choice(settled) = &definition.states[COMPENSATIONS_SETTLED_STATE] else {
        panic!("{COMPENSATIONS_SETTLED_STATE} is not a Choice");
    };
    assert_eq!(settled.choices.len(), 1);
    assert_eq!(settled.choices[0].variable, COMPENSATION_FAILURES_PATH);
    assert_eq!(settled.choices[0].is_present, Some(true));
    assert_eq!(settled.choices[0].next, COMPENSATION_FAILED_STATE);
    assert_eq!(settled.default, COMPENSATED_STATE);
    assert!(matches!(
        definition.states[COMPENSATION_FAILED_STATE],
        State::Fail(_)
    ));
    // Every failure path, with every compensation failing, reaches the Choice having visited
    // every compensation of the failed step and the earlier ones.
    for (index, step) in PURCHASE.steps.iter().enumerate() {
        let path = failure_path(&definition, &execute_state(step));
        assert_eq!(
            path.last().unwrap(),
            COMPENSATIONS_SETTLED_STATE,
            "{path:?}"
        );
        for earlier in &PURCHASE.steps[..=index] {
            assert!(path.contains(&compensate_state(earlier)), "{path:?}");
            assert!(path.contains(&mark_failed_state(earlier)), "{path:?}");
        }
    }
}

/// Past its retries a step is given up, and what the give-up task recorded decides: a saga in
/// doubt ends the execution in `InDoubt` with nothing compensated, a step that turned out to
/// have succeeded goes on to the next one, and a step that failed for good is compensated. A
/// give-up that cannot be recorded compensates nothing either.
#[test]
fn a_step_given_up_in_doubt_parks_the_saga_without_compensating() {
    let definition = purchase();
    for (index, step) in PURCHASE.steps.iter().enumerate() {
        let give_up = task(&definition, &give_up_state(step));
        assert_eq!(give_up.parameters.payload.operation, Operation::GiveUp);
        assert_eq!(give_up.parameters.payload.step, step.name);
        assert_eq!(give_up.next, given_up_state(step));
        assert_eq!(give_up.catch[0].error_equals, ["States.ALL"]);
        assert_eq!(give_up.catch[0].next, IN_DOUBT_STATE);
        let State::Choice(decided) = &definition.states[&given_up_state(step)] else {
            panic!("{} is not a Choice", given_up_state(step));
        };
        let rule = |status: &str| {
            decided
                .choices
                .iter()
                .find(|rule| rule.string_equals.as_deref() == Some(status))
                .unwrap_or_else(|| panic!("no rule for {status}"))
        };
        assert_eq!(rule("IN_DOUBT").next, IN_DOUBT_STATE);
        assert!(rule("IN_DOUBT").variable.ends_with(".saga_status"));
        let after = PURCHASE
            .steps
            .get(index + 1)
            .map(execute_state)
            .unwrap_or_else(|| COMPLETED_STATE.to_owned());
        assert_eq!(rule("SUCCEEDED").next, after);
        assert!(rule("SUCCEEDED").variable.ends_with(".step_status"));
        assert_eq!(decided.default, compensate_state(step));
    }
    let State::Fail(in_doubt) = &definition.states[IN_DOUBT_STATE] else {
        panic!("{IN_DOUBT_STATE} is not a Fail state");
    };
    assert_eq!(in_doubt.error, "SagaInDoubt");
}

#[test]
fn every_task_has_a_timeout_and_the_execution_a_bound() {
    let definition = purchase();
    let tasks: Vec<_> = definition.tasks().collect();
    // Execute, give up, compensate and mark failed, per step.
    assert_eq!(tasks.len(), 4 * PURCHASE.steps.len());
    for (name, task) in &tasks {
        assert_eq!(
            task.timeout_seconds,
            TASK_TIMEOUT.as_secs() + INVOKE_MARGIN.as_secs(),
            "{name}: the function's timeout, then room for the invoke and a cold start"
        );
    }
    assert_eq!(definition.timeout_seconds, definition.worst_case_seconds());
    assert!(definition.timeout_seconds > 9 * TASK_TIMEOUT.as_secs());
}

#[test]
fn payload_follows_the_step_function_contract() {
    let definition = purchase();
    let json: serde_json::Value = serde_json::from_str(&definition.to_json()).unwrap();
    let compensate = &json["States"]["Compensate payment"];
    assert_eq!(compensate["Resource"], "arn:aws:states:::lambda:invoke");
    assert_eq!(
        compensate["Parameters"]["FunctionName"],
        format!("${{{STEP_FUNCTION_ARN_VARIABLE}}}")
    );
    assert_eq!(
        compensate["Parameters"]["Payload"],
        serde_json::json!({
            "operation": "compensate",
            "step": "payment",
            "transaction_id.$": "$.transaction_id",
            "request.$": "$.request",
            "error.$": "$.error"
        })
    );
    let execute = &json["States"]["Execute payment"]["Parameters"]["Payload"];
    assert_eq!(execute["operation"], "execute");
    assert!(execute.get("error.$").is_none());
    assert_eq!(
        json["States"]["Execute payment"]["ResultSelector"]["Payload.$"],
        "$.Payload"
    );
}

#[test]
fn definition_json_is_deterministic_and_safe_inside_sub() {
    let a = purchase().to_json();
    let b = purchase().to_json();
    assert_eq!(a, b);
    // `!Sub` would try to resolve any other `${...}`.
    assert_eq!(
        a.matches("${").count(),
        a.matches(&format!("${{{STEP_FUNCTION_ARN_VARIABLE}}}"))
            .count()
    );
}

#[test]
fn a_fourth_step_becomes_tasks_without_other_changes() {
    const RETRY: RetryPolicy = RetryPolicy {
        max_retries: 2,
        initial_delay: Duration::from_millis(500),
        backoff_rate: 3,
        max_delay: Duration::from_secs(4),
    };
    let mut steps = PURCHASE.steps.to_vec();
    steps.push(Step {
        name: "notification",
        service: "mailer",
        action: Action { name: "send" },
        compensation: Action { name: "retract" },
        timeout: Duration::from_secs(2),
        retry: RETRY,
        compensation_retry: RETRY,
    });
    let saga = Saga {
        name: "purchase",
        steps: Box::leak(steps.into_boxed_slice()),
    };
    let definition = Definition::for_saga(&saga, TASK_TIMEOUT);
    assert_eq!(
        task(&definition, "Execute entitlement").next,
        "Execute notification"
    );
    assert_eq!(
        task(&definition, "Execute notification").next,
        COMPLETED_STATE
    );
    assert_eq!(
        task(&definition, "Compensate notification").next,
        "Compensate entitlement"
    );
    let retrier = &task(&definition, "Execute notification").retry[0];
    assert_eq!(
        (
            retrier.interval_seconds,
            retrier.max_attempts,
            retrier.max_delay_seconds
        ),
        (1, 2, 4)
    );
}
