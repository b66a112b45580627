//! The stepfunctions pattern assembled for tests: the real API (stepfunctions dispatch) on a test
//! store, a state machine on moto that records executions, the fake SaaS, the real `step`
//! handler, and a driver that runs an execution the way Step Functions runs the generated
//! definition.
//!
//! moto cannot invoke Lambda code here, so the driver interprets
//! [`Definition::for_saga`]'s states itself: it builds each Task's payload from its
//! `Parameters` (resolving the `.$` paths against the state), calls the handler, applies the
//! Task's `Retry` rules to the returned `errorType` (waits scaled from seconds to milliseconds),
//! puts a caught error at the Catch's `ResultPath` as `{"Error", "Cause"}` with the Lambda error
//! JSON as Cause, and ends at a Succeed or Fail state. The order of states, the retry counts and
//! the branches are the generated ones.

use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::Diagnostic;
use sagaform_api::{Api, Dispatch};
use sagaform_fake_saas::FakeSaas;
use sagaform_saga::PURCHASE;
use sagaform_stacks::asl::{Definition, State};
use sagaform_step::StepHandler;
use sagaform_testkit::acceptance::{Kill, until_called};
use sagaform_testkit::{
    Backend, Reply, TestStore, create_state_machine, event, fake_saas, sfn_client,
};
use serde_json::{Value, json};

/// Time left in an ordinary invocation, and the Task timeout of the generated definition.
pub const INVOCATION_TIME: Duration = Duration::from_secs(30);

pub struct StepFunctionsPattern {
    pub store: TestStore,
    pub fake: FakeSaas,
    pub state_machine_arn: String,
    pub api: Api,
    pub handler: StepHandler,
    /// The executions [`StepFunctionsPattern::run_execution`] ran, by name.
    executions_run: RefCell<HashSet<String>>,
}

impl StepFunctionsPattern {
    pub async fn new(backend: Backend) -> StepFunctionsPattern {
        let store = TestStore::new(backend).await;
        let (fake, client) = fake_saas().await;
        let state_machine_arn = create_state_machine().await;
        let api = Api::new(
            store.store().clone(),
            Dispatch::StateMachine {
                client: sfn_client(),
                state_machine_arn: state_machine_arn.clone(),
            },
        );
        let handler = StepHandler::new(store.store().clone(), client, Duration::from_millis(500));
        StepFunctionsPattern {
            store,
            fake,
            state_machine_arn,
            api,
            handler,
            executions_run: RefCell::default(),
        }
    }

    pub async fn another_api(&self) -> Api {
        Api::new(
            self.store.second_handle().await,
            Dispatch::StateMachine {
                client: sfn_client(),
                state_machine_arn: self.state_machine_arn.clone(),
            },
        )
    }

    pub async fn call_api(&self, request: ApiGatewayV2httpRequest) -> (i64, Value, Option<String>) {
        call(&self.api, request).await
    }

    /// The executions moto recorded: (name, input).
    pub async fn executions(&self) -> Vec<(String, Value)> {
        let sfn = sfn_client();
        let listed = sfn
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .send()
            .await
            .expect("list executions");
        let mut executions = Vec::new();
        for execution in listed.executions() {
            let described = sfn
                .describe_execution()
                .execution_arn(execution.execution_arn())
                .send()
                .await
                .expect("describe");
            let input = serde_json::from_str(described.input().unwrap_or("null"))
                .expect("the input is JSON");
            executions.push((execution.name().to_owned(), input));
        }
        executions
    }

    /// Runs the execution of `transaction_id` with the input moto recorded for it.
    pub async fn run_execution(&self, transaction_id: &str) -> Execution {
        self.run_killed_execution(transaction_id, None).await
    }

    /// Runs the execution of `transaction_id` as [`StepFunctionsPattern::run_execution`] does,
    /// with the first Task invocation that reaches `kill` killed there.
    pub async fn run_killed_execution(
        &self,
        transaction_id: &str,
        kill: Option<Kill>,
    ) -> Execution {
        let input = self
            .executions()
            .await
            .into_iter()
            .find(|(name, _)| name == transaction_id)
            .map(|(_, input)| input)
            .unwrap_or_else(|| panic!("no execution named {transaction_id}"));
        self.executions_run
            .borrow_mut()
            .insert(transaction_id.to_owned());
        run(&self.handler, &self.fake, input, kill).await
    }

    /// The executions moto recorded that [`StepFunctionsPattern::run_execution`] has not run.
    pub async fn executions_not_run(&self) -> usize {
        let executions = self.executions().await;
        let run = self.executions_run.borrow();
        executions
            .iter()
            .filter(|(name, _)| !run.contains(name))
            .count()
    }
}

pub async fn call(api: &Api, request: ApiGatewayV2httpRequest) -> (i64, Value, Option<String>) {
    Reply::new(api.handle(event(request, INVOCATION_TIME)).await).into_parts()
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Succeeded,
    Failed { error: String, cause: String },
}

/// A finished execution.
#[derive(Debug, Clone)]
pub struct Execution {
    pub ending: Ending,
    /// The Succeed or Fail state it ended in.
    pub end_state: String,
    /// Every Task attempt, by state name, in order.
    pub attempts: Vec<String>,
    /// The state data at the end.
    pub data: Value,
}

impl Execution {
    /// The Task states entered, without repeats of retried attempts.
    pub fn tasks(&self) -> Vec<&str> {
        let mut tasks: Vec<&str> = self.attempts.iter().map(String::as_str).collect();
        tasks.dedup();
        tasks
    }
}

/// One invocation of the `step` function for a Task attempt. When `kill` is pending, the
/// invocation that reaches it dies there (and takes the kill): Step Functions sees an instance
/// that died before answering as the Lambda error `Lambda.Unknown`.
async fn invoke(
    handler: &StepHandler,
    fake: &FakeSaas,
    payload: Value,
    time_left: Duration,
    kill: &mut Option<Kill>,
) -> Result<Value, Diagnostic> {
    let invocation = handler.handle(event(payload, time_left));
    match *kill {
        None => invocation.await,
        Some(Kill::AfterTheWork) => {
            *kill = None;
            let _lost = invocation.await;
            Err(instance_died())
        }
        Some(Kill::WhileChargeInFlight) => {
            tokio::select! {
                answer = invocation => answer,
                () = until_called(fake, "payments", "charge") => {
                    *kill = None;
                    Err(instance_died())
                }
            }
        }
    }
}

fn instance_died() -> Diagnostic {
    Diagnostic {
        error_type: "Lambda.Unknown".to_owned(),
        error_message: "the function's instance died before it answered".to_owned(),
    }
}

/// Runs one execution of the generated definition with `input`, killing the first invocation
/// that reaches `kill`.
pub async fn run(
    handler: &StepHandler,
    fake: &FakeSaas,
    input: Value,
    mut kill: Option<Kill>,
) -> Execution {
    let definition = Definition::for_saga(&PURCHASE, INVOCATION_TIME);
    let mut data = input;
    let mut attempts = Vec::new();
    let mut current = definition.start_at.clone();
    for _ in 0..100 {
        let task = match &definition.states[&current] {
            State::Succeed(_) => {
                return Execution {
                    ending: Ending::Succeeded,
                    end_state: current,
                    attempts,
                    data,
                };
            }
            State::Fail(fail) => {
                let ending = Ending::Failed {
                    error: fail.error.clone(),
                    cause: fail.cause.clone(),
                };
                return Execution {
                    ending,
                    end_state: current,
                    attempts,
                    data,
                };
            }
            State::Choice(choice) => {
                current = choice
                    .choices
                    .iter()
                    .find(|rule| rule.holds(get(&data, &rule.variable)))
                    .map_or_else(|| choice.default.clone(), |rule| rule.next.clone());
                continue;
            }
            State::Task(task) => task,
        };
        let parameters =
            serde_json::to_value(&task.parameters.payload).expect("the payload serializes");
        let payload = resolve(&parameters, &data);
        let mut retries_used = vec![0u32; task.retry.len()];
        let result = loop {
            attempts.push(current.clone());
            // The function's own timeout: the Task's adds the invoke's margin to it.
            let time_left = INVOCATION_TIME;
            match invoke(handler, fake, payload.clone(), time_left, &mut kill).await {
                Ok(output) => break Ok(output),
                Err(diagnostic) => {
                    let retrier = task
                        .retry
                        .iter()
                        .position(|r| matches(&r.error_equals, &diagnostic.error_type));
                    match retrier {
                        Some(index) if retries_used[index] < task.retry[index].max_attempts => {
                            retries_used[index] += 1;
                            let seconds = task.retry[index].interval_seconds as f64
                                * task.retry[index]
                                    .backoff_rate
                                    .powi(retries_used[index] as i32 - 1);
                            tokio::time::sleep(Duration::from_millis(
                                seconds.min(task.retry[index].max_delay_seconds as f64) as u64,
                            ))
                            .await;
                        }
                        _ => break Err(diagnostic),
                    }
                }
            }
        };
        match result {
            Ok(output) => {
                // ResultSelector {"Payload.$": "$.Payload"} keeps the function's answer.
                set(&mut data, &task.result_path, json!({"Payload": output}));
                current = task.next.clone();
            }
            Err(diagnostic) => {
                let caught = json!({
                    "Error": diagnostic.error_type,
                    "Cause": json!({"errorType": diagnostic.error_type, "errorMessage": diagnostic.error_message}).to_string(),
                });
                let Some(catcher) = task
                    .catch
                    .iter()
                    .find(|c| matches(&c.error_equals, &diagnostic.error_type))
                else {
                    let cause = caught["Cause"].as_str().unwrap_or_default().to_owned();
                    return Execution {
                        ending: Ending::Failed {
                            error: diagnostic.error_type,
                            cause,
                        },
                        end_state: current,
                        attempts,
                        data,
                    };
                };
                set(&mut data, &catcher.result_path, caught);
                current = catcher.next.clone();
            }
        }
    }
    panic!("the execution did not end in 100 states: {attempts:?}");
}

fn matches(error_equals: &[String], error_type: &str) -> bool {
    error_equals
        .iter()
        .any(|e| e == "States.ALL" || e == error_type)
}

/// Resolves every `"key.$": "$.path"` of `parameters` against `data`.
fn resolve(parameters: &Value, data: &Value) -> Value {
    let Value::Object(fields) = parameters else {
        return parameters.clone();
    };
    let mut resolved = serde_json::Map::new();
    for (key, value) in fields {
        match (key.strip_suffix(".$"), value.as_str()) {
            (Some(name), Some(path)) => {
                let found = get(data, path)
                    .unwrap_or_else(|| panic!("path {path} is not in the state {data:#}"));
                resolved.insert(name.to_owned(), found.clone());
            }
            _ => {
                resolved.insert(key.clone(), resolve(value, data));
            }
        }
    }
    Value::Object(resolved)
}

fn get<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = data;
    for part in path.strip_prefix("$.")?.split('.') {
        current = current.get(part)?;
    }
    Some(current)
}

fn set(data: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path
        .strip_prefix("$.")
        .expect("a ResultPath below $")
        .split('.')
        .collect();
    let mut current = data;
    for part in &parts[..parts.len() - 1] {
        let object = current.as_object_mut().expect("the state is an object");
        current = object.entry(part.to_string()).or_insert_with(|| json!({}));
    }
    current
        .as_object_mut()
        .expect("the state is an object")
        .insert(parts[parts.len() - 1].to_owned(), value);
}
