//! Sagas end to end over HTTP, for every pattern and store: each test deploys its pattern to its
//! own emulator with the real function binaries (built once per run, as the local env builds them), runs it
//! under the local supervisor against its own fake SaaS, and plays the acceptance scenarios in
//! order on that stack — happy path, permanent failure at the last step, transient faults and
//! 429, each step's own retries, a SaaS throttling past a step's retries, a charge in doubt
//! (its effect landing after the client gave up) settled by `saga retry`, a lost response, a
//! compensation that fails for good, duplicate submissions — plus, for sqs, the dead-letter
//! queue that a saga needing a human ends in.
//!
//! Verdicts come from the API's status endpoint and the fake SaaS ledger only. Fault rules are
//! global to a fake, which is why the scenarios of one stack run one after the other.

use std::sync::OnceLock;
use std::time::Duration;

use sagaform_contract::template::outputs;
use sagaform_deploy::{Artifact, Progress};
use sagaform_e2e::{LocalDeployment, purchase};
use sagaform_ops::dlq::Dlq;
use sagaform_stacks::Pattern;
use sagaform_stacks::config::StoreKind;
use serde_json::{Value, json};

/// How long a saga may take to finish in these scenarios (retries, redeliveries included).
const SAGA_LIMIT: Duration = Duration::from_secs(120);

/// The function packages, built once for every test of this binary.
fn packages() -> &'static [Artifact] {
    static BUILT: OnceLock<Vec<Artifact>> = OnceLock::new();
    BUILT.get_or_init(|| {
        sagaform_e2e::build_functions(&Progress::plain())
            .unwrap_or_else(|e| panic!("building the functions: {e}"))
    })
}

async fn start(name: &str, pattern: Pattern, store: StoreKind) -> LocalDeployment {
    let packages = tokio::task::spawn_blocking(packages).await.unwrap();
    LocalDeployment::start(name, pattern, Some(store), packages)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Submits a purchase and returns its transaction id; the orchestrator answers with the
/// finished saga, the others with 202 and the status URL.
async fn submit(stack: &LocalDeployment, n: u64, key: Option<&str>) -> String {
    let reply = stack.submit(&purchase(n), key).await.unwrap();
    let id = reply
        .transaction_id()
        .unwrap_or_else(|| panic!("no transaction_id in {} {}", reply.status, reply.body))
        .to_owned();
    match stack.pattern {
        // A saga parked IN_DOUBT within the response budget is answered 202 with its view.
        Pattern::Orchestrator => assert!(
            [200, 422, 500].contains(&reply.status)
                || (reply.status == 202 && reply.saga_status() == Some("IN_DOUBT")),
            "orchestrator answered {} {}",
            reply.status,
            reply.body
        ),
        _ => {
            assert_eq!(reply.status, 202, "{}", reply.body);
            assert_eq!(reply.saga_status(), Some("PENDING"), "{}", reply.body);
            assert_eq!(
                reply.headers.get("location").map(String::as_str),
                Some(format!("/transactions/{id}").as_str())
            );
        }
    }
    id
}

async fn finish(stack: &LocalDeployment, id: &str) -> Value {
    stack
        .wait_terminal(id, SAGA_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\nfunction logs in {}", stack.log_dir().display()))
}

/// The ledger's view of one service for a transaction.
fn service<'a>(ledger: &'a Value, name: &str) -> &'a Value {
    &ledger["services"][name]
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Each action took effect exactly once and nothing was undone.
fn assert_each_effect_once(ledger: &Value) {
    for (name, action) in [
        ("inventory", "reserve"),
        ("payments", "charge"),
        ("entitlements", "grant"),
    ] {
        let s = service(ledger, name);
        assert_eq!(strings(&s["actions_applied"]), [action], "{name}: {ledger}");
        assert_eq!(s["outstanding"], 1, "{name}: {ledger}");
        assert!(strings(&s["compensations_applied"]).is_empty(), "{ledger}");
    }
    assert_eq!(
        ledger["effects"].as_array().map(Vec::len),
        Some(3),
        "{ledger}"
    );
}

/// Net zero: every effect applied was undone.
fn assert_nothing_outstanding(ledger: &Value) {
    let outstanding: i64 = ["inventory", "payments", "entitlements"]
        .iter()
        .map(|s| service(ledger, s)["outstanding"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(outstanding, 0, "{ledger}");
}

/// One purchase (`n` picks its body) under `faults`, played to its end: the faults are cleared
/// after it, and it must end `status`. Returns its id and the fake SaaS ledger of it.
async fn purchase_under_faults(
    stack: &LocalDeployment,
    n: u64,
    faults: &[Value],
    status: &str,
) -> (String, Value) {
    for fault in faults {
        stack.add_fault(fault.clone()).await.unwrap();
    }
    let id = submit(stack, n, None).await;
    let view = finish(stack, &id).await;
    stack.clear_faults().await.unwrap();
    assert_eq!(view["status"], status, "{view}");
    let ledger = stack.ledger(&id).await.unwrap();
    (id, ledger)
}

/// A fault rule of the fake SaaS: `fault` on `service`'s `action`, with `extra` fields
/// (`times`, `retry_after_secs`).
fn fault(service: &str, action: &str, fault: &str, extra: Value) -> Value {
    let mut rule = json!({"service": service, "action": action, "fault": fault});
    if let (Some(rule), Value::Object(extra)) = (rule.as_object_mut(), extra) {
        rule.extend(extra);
    }
    rule
}

async fn happy_path(stack: &LocalDeployment) {
    let (id, ledger) = purchase_under_faults(stack, 1, &[], "COMPLETED").await;
    let view = stack.status(&id).await.unwrap().body;
    assert!(
        view["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "SUCCEEDED"),
        "{view}"
    );
    assert_each_effect_once(&ledger);
}

async fn permanent_failure_at_the_last_step_compensates(stack: &LocalDeployment) {
    let refused = fault("entitlements", "grant", "reject", json!({"times": 1}));
    let (_, ledger) = purchase_under_faults(stack, 2, &[refused], "COMPENSATED").await;
    assert_nothing_outstanding(&ledger);
    assert!(strings(&service(&ledger, "entitlements")["actions_applied"]).is_empty());
    assert_eq!(
        strings(&service(&ledger, "payments")["compensations_applied"]),
        ["refund"]
    );
    assert_eq!(
        strings(&service(&ledger, "inventory")["compensations_applied"]),
        ["release"]
    );
    // Compensations run in reverse: the refund before the release.
    let order: Vec<&str> = ledger["effects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["effect"] == "compensated")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(order, ["refund", "release"], "{ledger}");
}

async fn transient_faults_and_rate_limits_still_complete(stack: &LocalDeployment) {
    let faults = [
        fault("inventory", "reserve", "unavailable", json!({"times": 1})),
        fault(
            "payments",
            "charge",
            "rate_limited",
            json!({"retry_after_secs": 1, "times": 1}),
        ),
    ];
    let (_, ledger) = purchase_under_faults(stack, 3, &faults, "COMPLETED").await;
    assert_each_effect_once(&ledger);
    for name in ["inventory", "payments"] {
        assert_eq!(service(&ledger, name)["faults_injected"], 1, "{ledger}");
    }
}

/// The stock's three retries used up, then one transient payment failure: the payment has its
/// own retries, whichever pattern runs it (the sqs worker once counted the message's receives,
/// which span the whole saga, and cancelled this purchase).
async fn each_step_gets_its_own_retries(stack: &LocalDeployment) {
    let faults = [
        fault("inventory", "reserve", "unavailable", json!({"times": 3})),
        fault("payments", "charge", "unavailable", json!({"times": 1})),
    ];
    let (_, ledger) = purchase_under_faults(stack, 9, &faults, "COMPLETED").await;
    assert_each_effect_once(&ledger);
    assert_eq!(
        service(&ledger, "inventory")["calls"]["reserve"],
        4,
        "{ledger}"
    );
    assert_eq!(
        service(&ledger, "payments")["calls"]["charge"],
        2,
        "{ledger}"
    );
}

/// A payment provider refusing the charge with 429 for longer than the charge's retries (a
/// definite "not done"): the purchase is compensated after the charge's own attempts (one and
/// three retries), in every pattern; the sqs message does not wait in the dead-letter queue.
async fn a_saas_throttling_past_a_steps_retries_compensates(stack: &LocalDeployment) {
    let throttled = fault(
        "payments",
        "charge",
        "rate_limited",
        json!({"retry_after_secs": 1}),
    );
    let (id, ledger) = purchase_under_faults(stack, 8, &[throttled], "COMPENSATED").await;
    assert_nothing_outstanding(&ledger);
    assert_eq!(
        service(&ledger, "payments")["calls"]["charge"],
        4,
        "{ledger}"
    );
    if stack.pattern == Pattern::Sqs {
        let dlq = dead_letter_queue(stack).list(None).await.unwrap();
        assert!(
            dlq.messages
                .iter()
                .all(|m| m.transaction_id.as_deref() != Some(id.as_str())),
            "{dlq:?}"
        );
    }
}

/// A payment provider that never answers the charge in time while the charge lands after the
/// client gave up: the saga parks IN_DOUBT with nothing compensated (before, it was refunded
/// blind, ended COMPENSATED, and the charge landed after), the sqs message ends in the DLQ;
/// `saga retry`, once the provider answers, asks with the same key and the saga completes with
/// each effect once, whichever pattern runs it.
async fn a_charge_in_doubt_parks_and_saga_retry_completes_it_charging_once(
    stack: &LocalDeployment,
) {
    // Past the local payments request timeout (5 s): the effect lands after the client gave up.
    let late = fault(
        "payments",
        "charge",
        "late_effect",
        json!({"effect_after_ms": 6_000}),
    );
    stack.add_fault(late).await.unwrap();
    let id = submit(stack, 10, None).await;
    let view = finish(stack, &id).await;
    assert_eq!(view["status"], "IN_DOUBT", "{view}");
    assert_eq!(view["steps"][1]["status"], "IN_DOUBT", "{view}");
    stack.clear_faults().await.unwrap();
    let ledger = stack.ledger(&id).await.unwrap();
    assert!(
        service(&ledger, "payments")["calls"]["refund"].is_null(),
        "nothing refunded blind: {ledger}"
    );
    assert_eq!(service(&ledger, "inventory")["outstanding"], 1, "{ledger}");
    // The last attempt's charge lands 6 s after it was sent; by then every attempt's has.
    let landed = tokio::time::Instant::now() + Duration::from_secs(10);
    while service(&stack.ledger(&id).await.unwrap(), "payments")["outstanding"] != 1 {
        assert!(
            tokio::time::Instant::now() < landed,
            "the late charge never landed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if stack.pattern == Pattern::Sqs {
        a_saga_needing_a_human_ends_in_the_dead_letter_queue(stack, &id, "IN_DOUBT").await;
        // Settled by `saga retry` below: its parked message is of no more use. (SQS allows
        // one purge a minute, so the later scenarios' messages are left where they are.)
        aws_sdk_sqs::Client::new(stack.sdk())
            .purge_queue()
            .queue_url(stack.output(outputs::DEAD_LETTER_QUEUE_URL).unwrap())
            .send()
            .await
            .unwrap();
    }

    let deployed = stack.deployed().await.unwrap();
    let options = sagaform_ops::ShowOptions::default();
    let report = sagaform_ops::retry::retry(&deployed, &id, &options)
        .await
        .unwrap_or_else(|e| panic!("saga retry: {e}"));
    assert_eq!(report.step, "payment");
    let again = sagaform_ops::retry::retry(&deployed, &id, &options)
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("only a saga IN_DOUBT"),
        "{again}"
    );
    let view = finish(stack, &id).await;
    assert_eq!(view["status"], "COMPLETED", "{view}");
    let ledger = stack.ledger(&id).await.unwrap();
    assert_each_effect_once(&ledger);
    assert!(
        service(&ledger, "payments")["replays"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "the retry was answered with the charge that landed: {ledger}"
    );
}

async fn a_lost_response_does_not_double_the_effect(stack: &LocalDeployment) {
    let lost = fault("payments", "charge", "response_lost", json!({"times": 1}));
    let (_, ledger) = purchase_under_faults(stack, 4, &[lost], "COMPLETED").await;
    assert_each_effect_once(&ledger);
    let payments = service(&ledger, "payments");
    assert!(
        payments["calls"]["charge"].as_u64().unwrap_or(0) >= 2,
        "the charge was not retried: {ledger}"
    );
    assert!(payments["replays"].as_u64().unwrap_or(0) >= 1, "{ledger}");
}

async fn a_compensation_failing_for_good_needs_a_human(stack: &LocalDeployment) -> String {
    let faults = [
        fault("entitlements", "grant", "reject", json!({"times": 1})),
        fault("payments", "refund", "reject", json!({})),
    ];
    let (id, ledger) = purchase_under_faults(stack, 5, &faults, "COMPENSATION_FAILED").await;
    // The charge could not be refunded, so it stands; the stock was still released.
    assert_eq!(service(&ledger, "payments")["outstanding"], 1, "{ledger}");
    assert_eq!(service(&ledger, "inventory")["outstanding"], 0, "{ledger}");
    assert_eq!(
        strings(&service(&ledger, "inventory")["compensations_applied"]),
        ["release"],
        "{ledger}"
    );
    assert!(strings(&service(&ledger, "entitlements")["actions_applied"]).is_empty());
    id
}

async fn duplicate_submissions_get_one_saga_and_the_same_answer(stack: &LocalDeployment) {
    let key = format!("e2e-duplicate-{}", stack.pattern);
    let first = stack.submit(&purchase(6), Some(&key)).await.unwrap();
    let id = first.transaction_id().unwrap().to_owned();
    let view = finish(stack, &id).await;
    assert_eq!(view["status"], "COMPLETED", "{view}");
    let again = stack.submit(&purchase(6), Some(&key)).await.unwrap();
    assert_eq!(again.transaction_id(), Some(id.as_str()), "{}", again.body);
    assert_eq!(again.status, first.status, "{}", again.body);
    assert_each_effect_once(&stack.ledger(&id).await.unwrap());

    let other = stack.submit(&purchase(7), Some(&key)).await.unwrap();
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(
        other.body["error"], "idempotency_key_reused",
        "{}",
        other.body
    );
}

/// Plays every scenario; returns the transaction that ended COMPENSATION_FAILED.
async fn every_scenario(stack: &LocalDeployment) -> String {
    happy_path(stack).await;
    permanent_failure_at_the_last_step_compensates(stack).await;
    transient_faults_and_rate_limits_still_complete(stack).await;
    each_step_gets_its_own_retries(stack).await;
    a_saas_throttling_past_a_steps_retries_compensates(stack).await;
    a_charge_in_doubt_parks_and_saga_retry_completes_it_charging_once(stack).await;
    a_lost_response_does_not_double_the_effect(stack).await;
    let needs_human = a_compensation_failing_for_good_needs_a_human(stack).await;
    duplicate_submissions_get_one_saga_and_the_same_answer(stack).await;
    needs_human
}

fn dead_letter_queue(stack: &LocalDeployment) -> Dlq {
    stack.dead_letter_queue().unwrap()
}

/// sqs: the message of a saga needing a human (`status`: COMPENSATION_FAILED or IN_DOUBT) fails
/// on every delivery and so ends in the DLQ after maxReceiveCount receives, where operations
/// find it.
async fn a_saga_needing_a_human_ends_in_the_dead_letter_queue(
    stack: &LocalDeployment,
    id: &str,
    status: &str,
) {
    let dlq = dead_letter_queue(stack);
    let started = std::time::Instant::now();
    loop {
        let listing = dlq.list(None).await.unwrap();
        if listing
            .messages
            .iter()
            .any(|m| m.transaction_id.as_deref() == Some(id))
        {
            break;
        }
        assert!(
            started.elapsed() < SAGA_LIMIT,
            "the message of {id} never reached the DLQ: {listing:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(stack.status(id).await.unwrap().saga_status(), Some(status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_on_aurora_runs_every_scenario() {
    let stack = start("orch-aurora", Pattern::Orchestrator, StoreKind::Aurora).await;
    every_scenario(&stack).await;
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_on_dynamodb_runs_every_scenario() {
    let stack = start("orch-dynamodb", Pattern::Orchestrator, StoreKind::DynamoDb).await;
    every_scenario(&stack).await;
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_on_dynamodb_runs_every_scenario() {
    let stack = start("sqs-dynamodb", Pattern::Sqs, StoreKind::DynamoDb).await;
    let needs_human = every_scenario(&stack).await;
    a_saga_needing_a_human_ends_in_the_dead_letter_queue(
        &stack,
        &needs_human,
        "COMPENSATION_FAILED",
    )
    .await;
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepfunctions_on_dynamodb_runs_every_scenario() {
    let stack = start("sfn-dynamodb", Pattern::StepFunctions, StoreKind::DynamoDb).await;
    every_scenario(&stack).await;
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_on_aurora_runs_every_scenario() {
    let stack = start("sqs-aurora", Pattern::Sqs, StoreKind::Aurora).await;
    let needs_human = every_scenario(&stack).await;
    a_saga_needing_a_human_ends_in_the_dead_letter_queue(
        &stack,
        &needs_human,
        "COMPENSATION_FAILED",
    )
    .await;
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepfunctions_on_aurora_runs_every_scenario() {
    let stack = start("sfn-aurora", Pattern::StepFunctions, StoreKind::Aurora).await;
    every_scenario(&stack).await;
    stack.shutdown().await.unwrap();
}
