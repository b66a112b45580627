//! `cargo xtask bench soak`: many sagas through each pattern's local environment, with faults,
//! printing throughput, time to a terminal status (p50/p99), counts per terminal status and
//! ledger mismatches (must be 0: a COMPLETED saga has each effect exactly once, a COMPENSATED
//! one has none left standing).
//!
//! Each pattern runs on its own emulator, fake SaaS and supervisor (the end-to-end harness,
//! `sagaform-e2e`) with the real function binaries, so the figures include the functions' cold
//! starts, the emulated AWS calls and the fake's latency, and never touch a running local
//! environment. The fake SaaS draws its faults with a fixed seed: 10% of stock reservations
//! answer 503 and 10% of charges 429 (about 20% of sagas meet a transient fault, retried), 5% of
//! entitlement grants are refused for good (the saga compensates), and half of the charges get no
//! answer while their effect lands after the client gave up ([`LATE_CHARGE`]: most are cured by a
//! retry with the same key, a few sagas see every attempt time out); 10% of submissions are sent
//! twice with the same `Idempotency-Key`, and must get the same transaction back. The ledgers
//! are checked once the last late effect can have landed.
//!
//! A saga whose every charge attempt timed out is never compensated blind: it parks IN_DOUBT.
//! Once the late charges have landed, the soak does what the in-doubt runbook says: clears the
//! faults and asks each such saga again with `saga retry` (the same idempotency key, so the
//! charge that landed is answered, not repeated), then checks its ledger like the others.
//!
//! With sqs, each step is retried on its own budget whatever its message's receive count, so a
//! saga only parks in the dead-letter queue when its message fails `max_receive_count` (3
//! locally) deliveries beyond that budget, for reasons the faults here do not cause (a crashed
//! worker, the state store down): the soak expects none. It still watches the DLQ, counts such
//! sagas apart, and once every saga is settled or parked it does what an operator would: clears
//! the faults, redrives the DLQ and follows the parked sagas to their end, whose ledgers are
//! checked like the others.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sagaform_deploy::Progress;
use sagaform_e2e::{LocalDeployment, Reply, TERMINAL, purchase};
use sagaform_ops::dlq::{RedriveMethod, RedriveOptions};
use sagaform_stacks::Pattern;
use sagaform_stacks::config::StoreKind;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::deploy::runtime;

/// Arguments of `cargo xtask bench soak`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sagas per pattern.
    #[arg(long, default_value_t = 500)]
    sagas: u64,
    /// Only this pattern; default: all three.
    #[arg(long)]
    pattern: Option<Pattern>,
    /// Sagas submitted and followed at the same time.
    #[arg(long, default_value_t = 20)]
    concurrency: usize,
}

/// How long one saga may take before the soak gives up on it.
const SAGA_LIMIT: Duration = Duration::from_secs(300);

/// How long a saga parked in the DLQ may take to finish once redriven.
const REDRIVEN_LIMIT: Duration = Duration::from_secs(120);

/// When a charge's late effect lands, after the call arrived: past the payments service's
/// request timeout (5 s) and past the charge's whole retry sequence (four attempts, about 25 s),
/// so a saga whose every attempt timed out has already been given up when it lands.
const LATE_CHARGE: Duration = Duration::from_millis(30_000);

/// The status of a saga parked for an operator because a call's outcome is unknown.
const IN_DOUBT: &str = "IN_DOUBT";

/// The status given to a saga found parked in the dead-letter queue.
const PARKED: &str = "parked in the DLQ";

/// The sagas whose message is in the dead-letter queue.
type Parked = Arc<Mutex<HashSet<String>>>;

/// What happened to one submitted saga.
#[derive(Debug)]
struct Outcome {
    transaction_id: String,
    status: String,
    /// For a saga parked in the DLQ or IN_DOUBT: its status once settled as an operator would
    /// (the DLQ redriven, or `saga retry`).
    after_operator: Option<String>,
    seconds: f64,
    duplicate_mismatch: bool,
    /// Submissions answered 503 and sent again.
    retries: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let patterns: Vec<Pattern> = args.pattern.map_or(Pattern::ALL.to_vec(), |p| vec![p]);
    let progress = Progress::stderr();
    progress.line("soak: building the functions (host build, dev profile)");
    let packages = sagaform_e2e::build_functions(&progress)?;
    let runtime = runtime()?;
    for pattern in patterns {
        runtime.block_on(soak_pattern(pattern, &args, &packages, &progress))?;
    }
    Ok(())
}

async fn soak_pattern(
    pattern: Pattern,
    args: &Args,
    packages: &[sagaform_deploy::Artifact],
    progress: &Progress,
) -> anyhow::Result<()> {
    let stack = Arc::new(start_with_faults(pattern, packages, progress).await?);
    let parked: Parked = Arc::default();
    let (stop_watching, stop) = tokio::sync::watch::channel(false);
    let watcher = (pattern == Pattern::Sqs).then(|| {
        tokio::spawn(watch_dead_letter_queue(
            Arc::clone(&stack),
            Arc::clone(&parked),
            stop,
        ))
    });
    let started = Instant::now();
    let (mut outcomes, errors) = run_sagas(&stack, &parked, args).await?;
    let wall = started.elapsed();
    // Stopped between listings, never during one: a listing holds the messages it received
    // until it releases them, and a held message would be missed by the redrive below.
    let _ = stop_watching.send(true);
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    let stack = Arc::into_inner(stack).context("soak tasks still hold the stack")?;
    let redriven = settle_parked(&stack, &mut outcomes).await?;
    // A charge that timed out at the end of the run lands up to LATE_CHARGE later; the sagas in
    // doubt are asked again, and the ledgers read, once it has.
    tokio::time::sleep(LATE_CHARGE + Duration::from_secs(1)).await;
    let retried = settle_in_doubt(&stack, &mut outcomes).await?;
    let (mismatches, faults_injected) = check_ledgers(&stack, &outcomes).await?;
    let store = match stack.store {
        StoreKind::Aurora => "aurora",
        StoreKind::DynamoDb => "dynamodb",
    };
    stack.shutdown().await?;
    let report = SoakReport {
        pattern,
        store,
        args,
        wall,
        outcomes,
        errors,
        redriven,
        retried,
        mismatches,
        faults_injected,
    };
    report.print_timing();
    report.print_verdict();
    Ok(())
}

/// Deploys `pattern` to a fresh emulator with the soak's faults in the fake SaaS.
async fn start_with_faults(
    pattern: Pattern,
    packages: &[sagaform_deploy::Artifact],
    progress: &Progress,
) -> anyhow::Result<LocalDeployment> {
    progress.line(format!("soak {pattern}: deploying to a fresh emulator"));
    let stack = LocalDeployment::start(&format!("soak-{pattern}"), pattern, None, packages)
        .await
        .with_context(|| format!("starting the {pattern} stack"))?;
    for rule in [
        json!({"service": "inventory", "action": "reserve", "fault": "unavailable", "rate": 0.10}),
        json!({"service": "payments", "action": "charge", "fault": "rate_limited", "retry_after_secs": 1, "rate": 0.10}),
        json!({"service": "entitlements", "action": "grant", "fault": "reject", "rate": 0.05}),
        json!({"service": "payments", "action": "charge", "fault": "late_effect",
               "effect_after_ms": LATE_CHARGE.as_millis() as u64, "rate": 0.5}),
    ] {
        stack.add_fault(rule).await?;
    }
    Ok(stack)
}

/// Runs every saga, `--concurrency` at a time: the outcomes, and the errors of the sagas that
/// could not be followed.
async fn run_sagas(
    stack: &Arc<LocalDeployment>,
    parked: &Parked,
    args: &Args,
) -> anyhow::Result<(Vec<Outcome>, Vec<String>)> {
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.sagas {
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let stack = Arc::clone(stack);
        let parked = Arc::clone(parked);
        tasks.spawn(async move {
            let result = one_saga(&stack, n, &parked).await;
            drop(permit);
            result
        });
    }
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => errors.push(error),
        }
    }
    Ok((outcomes, errors))
}

/// The ledger verdict, from the fake SaaS's own records: the mismatches found and the number of
/// faults the fake injected.
async fn check_ledgers(
    stack: &LocalDeployment,
    outcomes: &[Outcome],
) -> anyhow::Result<(Vec<String>, u64)> {
    let mut mismatches = Vec::new();
    let mut faults_injected = 0;
    for outcome in outcomes {
        let ledger = stack.ledger(&outcome.transaction_id).await?;
        faults_injected += ["inventory", "payments", "entitlements"]
            .iter()
            .map(|s| {
                ledger["services"][s]["faults_injected"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum::<u64>();
        let status = outcome.after_operator.as_ref().unwrap_or(&outcome.status);
        if let Some(problem) = ledger_problem(status, &ledger) {
            mismatches.push(format!("{} {status}: {problem}", outcome.transaction_id));
        }
    }
    Ok((mismatches, faults_injected))
}

/// What one pattern's soak measured and found.
struct SoakReport<'a> {
    pattern: Pattern,
    store: &'static str,
    args: &'a Args,
    wall: Duration,
    outcomes: Vec<Outcome>,
    errors: Vec<String>,
    /// Messages redriven from the DLQ, when sagas were parked there.
    redriven: Option<u64>,
    /// Sagas in doubt asked again with `saga retry`, when there were any.
    retried: Option<u64>,
    mismatches: Vec<String>,
    faults_injected: u64,
}

impl SoakReport<'_> {
    /// How many sagas first ended in `status`, and what settling them as an operator ended in.
    fn settled(&self, status: &str) -> (usize, String) {
        let mut after: BTreeMap<&str, u64> = BTreeMap::new();
        for outcome in self.outcomes.iter().filter(|o| o.status == status) {
            let settled = outcome.after_operator.as_deref().unwrap_or("not settled");
            *after.entry(settled).or_default() += 1;
        }
        let counts: Vec<String> = after.iter().map(|(s, n)| format!("{s} {n}")).collect();
        (after.values().sum::<u64>() as usize, counts.join(", "))
    }

    /// The size of the run, throughput, time to a terminal status and the statuses reached.
    fn print_timing(&self) {
        let outcomes = &self.outcomes;
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        for outcome in outcomes {
            *by_status.entry(outcome.status.as_str()).or_default() += 1;
        }
        let mut seconds: Vec<f64> = outcomes
            .iter()
            .filter(|o| TERMINAL.contains(&o.status.as_str()))
            .map(|o| o.seconds)
            .collect();
        seconds.sort_by(f64::total_cmp);
        let duplicates = self.args.sagas.div_ceil(10);
        println!(
            "soak {} ({} store): {} sagas, {duplicates} submitted twice, concurrency {}",
            self.pattern, self.store, self.args.sagas, self.args.concurrency
        );
        println!(
            "  wall {:.1} s, throughput {:.1} sagas/s",
            self.wall.as_secs_f64(),
            outcomes.len() as f64 / self.wall.as_secs_f64()
        );
        println!(
            "  time to terminal status: p50 {:.2} s, p99 {:.2} s, max {:.2} s (status polled every 100 ms)",
            percentile(&seconds, 0.50),
            percentile(&seconds, 0.99),
            seconds.last().copied().unwrap_or_default()
        );
        let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!("  terminal status: {}", counts.join(", "));
    }

    /// The redrive of parked sagas, the faults met and the ledger mismatches (must be 0).
    fn print_verdict(&self) {
        let outcomes = &self.outcomes;
        if let Some(moved) = self.redriven {
            let (parked, counts) = self.settled(PARKED);
            println!(
                "  parked in the DLQ (failed deliveries beyond the saga's retries): {parked}; faults cleared, {moved} message(s) redriven: {counts}"
            );
        }
        if let Some(retried) = self.retried {
            let (in_doubt, counts) = self.settled(IN_DOUBT);
            println!(
                "  in doubt (every charge attempt timed out): {in_doubt}; once the late charges landed, faults cleared and {retried} asked again with saga retry: {counts}"
            );
        }
        println!(
            "  faults injected by the fake SaaS: {}",
            self.faults_injected
        );
        println!(
            "  submissions answered 503 and retried with the same key: {}",
            outcomes.iter().map(|o| u64::from(o.retries)).sum::<u64>()
        );
        let duplicate_mismatches = outcomes.iter().filter(|o| o.duplicate_mismatch).count();
        println!(
            "  ledger mismatches: {} (duplicates answered with another saga: {duplicate_mismatches}, errors: {})",
            self.mismatches.len(),
            self.errors.len()
        );
        for problem in self.mismatches.iter().take(10) {
            println!("    {problem}");
        }
        for error in self.errors.iter().take(10) {
            println!("    error: {error}");
        }
    }
}

/// Lists the dead-letter queue every second and records the sagas found there, until `stop`.
async fn watch_dead_letter_queue(
    stack: Arc<LocalDeployment>,
    parked: Parked,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(dlq) = stack.dead_letter_queue() else {
        return;
    };
    while !*stop.borrow() {
        if let Ok(listing) = dlq.list(None).await {
            let mut parked = parked.lock().unwrap_or_else(|e| e.into_inner());
            parked.extend(
                listing
                    .messages
                    .into_iter()
                    .filter_map(|m| m.transaction_id),
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Clears the faults, redrives the DLQ and follows each parked saga to its end; the number of
/// messages moved, or `None` when nothing was parked.
async fn settle_parked(
    stack: &LocalDeployment,
    outcomes: &mut [Outcome],
) -> anyhow::Result<Option<u64>> {
    if !outcomes.iter().any(|o| o.status == PARKED) {
        return Ok(None);
    }
    stack.clear_faults().await?;
    let parked = outcomes.iter().filter(|o| o.status == PARKED).count() as u64;
    let dlq = stack.dead_letter_queue()?;
    let options = RedriveOptions {
        method: RedriveMethod::ClientSide,
        ..RedriveOptions::default()
    };
    // A message can still be on its way into the DLQ, or held by a listing: try a few times.
    let mut moved = 0;
    for _ in 0..10 {
        moved += dlq.redrive(&options, &|_| {}).await?.moved;
        if moved >= parked {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    for outcome in outcomes.iter_mut().filter(|o| o.status == PARKED) {
        outcome.after_operator = Some(
            match stack
                .wait_terminal(&outcome.transaction_id, REDRIVEN_LIMIT)
                .await
            {
                Ok(view) => view["status"].as_str().unwrap_or_default().to_owned(),
                Err(_) => "not terminal".to_owned(),
            },
        );
    }
    Ok(Some(moved))
}

/// Does what the in-doubt runbook says, once the late charges have landed: clears the faults
/// (the provider answers again) and asks each saga IN_DOUBT again with `saga retry`, following
/// it to its end; the number of sagas asked again, or `None` when none was in doubt.
async fn settle_in_doubt(
    stack: &LocalDeployment,
    outcomes: &mut [Outcome],
) -> anyhow::Result<Option<u64>> {
    if !outcomes.iter().any(|o| o.status == IN_DOUBT) {
        return Ok(None);
    }
    stack.clear_faults().await?;
    let deployed = stack.deployed().await?;
    let options = sagaform_ops::ShowOptions::default();
    let mut retried = 0;
    for outcome in outcomes.iter_mut().filter(|o| o.status == IN_DOUBT) {
        let settled =
            match sagaform_ops::retry::retry(&deployed, &outcome.transaction_id, &options).await {
                Ok(_) => {
                    retried += 1;
                    match stack
                        .wait_terminal(&outcome.transaction_id, REDRIVEN_LIMIT)
                        .await
                    {
                        Ok(view) => view["status"].as_str().unwrap_or_default().to_owned(),
                        Err(_) => "not terminal".to_owned(),
                    }
                }
                Err(error) => format!("not retried ({error})"),
            };
        outcome.after_operator = Some(settled);
    }
    Ok(Some(retried))
}

/// Submits saga `n` (twice for one in ten, same key and body) and follows it to a terminal
/// status, or until its message is found parked in the DLQ.
async fn one_saga(stack: &LocalDeployment, n: u64, parked: &Parked) -> Result<Outcome, String> {
    let key = format!("soak-{}-{n}", std::process::id());
    let body = purchase(n);
    let started = Instant::now();
    let (first, retries) = submit_with_retries(stack, &body, &key, n).await?;
    let transaction_id = first
        .transaction_id()
        .ok_or_else(|| {
            format!(
                "saga {n}: no transaction id in {} {}",
                first.status, first.body
            )
        })?
        .to_owned();
    let mut duplicate_mismatch = false;
    if n.is_multiple_of(10) {
        let again = stack
            .submit(&body, Some(&key))
            .await
            .map_err(|e| format!("saga {n} (duplicate): {e}"))?;
        // 409 means the first is still being processed: same saga, answered later.
        duplicate_mismatch =
            again.status != 409 && again.transaction_id() != Some(transaction_id.as_str());
    }
    let status = follow(stack, &transaction_id, parked, started).await;
    Ok(Outcome {
        transaction_id,
        status,
        after_operator: None,
        seconds: started.elapsed().as_secs_f64(),
        duplicate_mismatch,
        retries,
    })
}

/// Submits a saga; a 503 (store or queue briefly unavailable) asks the client to retry with the
/// same key, as the API documents, and the soak does what a client would, up to five times.
/// The last reply and the number of retries.
async fn submit_with_retries(
    stack: &LocalDeployment,
    body: &Value,
    key: &str,
    n: u64,
) -> Result<(Reply, u32), String> {
    let mut retries = 0;
    loop {
        let reply = stack
            .submit(body, Some(key))
            .await
            .map_err(|e| format!("saga {n}: {e}"))?;
        if reply.status != 503 || retries == 5 {
            return Ok((reply, retries));
        }
        retries += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Follows a saga until it reaches a terminal status, is parked in the DLQ or exceeds
/// [`SAGA_LIMIT`] since `started`; the status it ended with.
async fn follow(
    stack: &LocalDeployment,
    transaction_id: &str,
    parked: &Parked,
    started: Instant,
) -> String {
    loop {
        match stack
            .wait_terminal(transaction_id, Duration::from_secs(1))
            .await
        {
            Ok(view) => return view["status"].as_str().unwrap_or_default().to_owned(),
            Err(_) if is_parked(parked, transaction_id) => return PARKED.to_owned(),
            Err(_) if started.elapsed() > SAGA_LIMIT => {
                let view = stack
                    .status(transaction_id)
                    .await
                    .map(|r| r.body)
                    .unwrap_or(Value::Null);
                return format!(
                    "not terminal ({})",
                    view["status"].as_str().unwrap_or("unknown")
                );
            }
            Err(_) => {}
        }
    }
}

fn is_parked(parked: &Parked, transaction_id: &str) -> bool {
    parked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(transaction_id)
}

/// What is wrong with a finished saga's ledger, if anything.
fn ledger_problem(status: &str, ledger: &Value) -> Option<String> {
    let services = [
        ("inventory", "reserve"),
        ("payments", "charge"),
        ("entitlements", "grant"),
    ];
    let service = |name: &str| &ledger["services"][name];
    match status {
        "COMPLETED" => services.iter().find_map(|(name, action)| {
            let applied = service(name)["actions_applied"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let outstanding = service(name)["outstanding"].as_i64().unwrap_or(0);
            (applied != [json!(action)] || outstanding != 1).then(|| {
                format!(
                    "{name}: applied {applied:?}, outstanding {outstanding} (want {action} once)"
                )
            })
        }),
        "COMPENSATED" => {
            let outstanding: i64 = services
                .iter()
                .map(|(name, _)| service(name)["outstanding"].as_i64().unwrap_or(0))
                .sum();
            (outstanding != 0).then(|| format!("{outstanding} effect(s) left standing"))
        }
        _ => None,
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
