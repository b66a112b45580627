//! What a deploy checks before it creates a change set, for changes CloudFormation would accept
//! and then fail on minutes into the stack operation, or that would go live pointing nowhere:
//!
//! - a production env whose JWT issuer, alarm emails or SaaS URLs are still the shipped
//!   example-domain placeholders (`EnvConfig::placeholders`, found by config validation with
//!   file and key) is refused;
//! - the reserved concurrency the stack's functions add must leave the account the 100
//!   unreserved concurrent executions AWS keeps ([`check_concurrency`], a pure function over
//!   what [`account_concurrency`] and [`reservations`] fetch).
//!
//! Reservations already held by this stack's functions are part of the account's reserved
//! total, so GetAccountSettings' `UnreservedConcurrentExecutions` has already subtracted them:
//! only what a function reserves beyond what it holds is drawn from the unreserved pool, and an
//! update that keeps a reservation draws nothing. A function whose reservation shrinks is not
//! credited to the others: CloudFormation updates the functions in no set order, and the one that
//! grows may go first.

use sagaform_contract::FunctionRole;
use sagaform_contract::template::function_of_code_key_parameter;
use sagaform_stacks::config::EnvConfig;

use crate::error::aws_error;
use crate::template::Template;
use crate::{DeployError, Progress, Refusal, Session};

/// The unreserved concurrency AWS keeps in every account and region: a reservation that would
/// leave less is refused (`PutFunctionConcurrency` fails, and with it the stack operation).
pub const UNRESERVED_MINIMUM: i64 = 100;

/// The account's Lambda concurrency in the region (GetAccountSettings' `AccountLimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountConcurrency {
    /// `ConcurrentExecutions`: the account's limit.
    pub limit: i64,
    /// `UnreservedConcurrentExecutions`: the limit less every function's reservation.
    pub unreserved: i64,
}

/// One function of the stack: the reservation the env asks for and the one it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The function's role (`api`, `worker`, `step`).
    pub role: String,
    /// `functions.<role>.reserved_concurrency` of the env (0: none).
    pub wanted: i64,
    /// What the deployed function reserves now (0: none, or not deployed yet).
    pub held: i64,
}

impl Reservation {
    /// What this function draws from the unreserved pool when the deploy runs.
    fn added(&self) -> i64 {
        (self.wanted - self.held).max(0)
    }
}

/// Refuses a production env that still has shipped placeholder values, naming each file and key.
pub fn check_placeholders(env: &EnvConfig) -> Result<(), Refusal> {
    if !env.production || env.placeholders.is_empty() {
        return Ok(());
    }
    Err(Refusal::Placeholders {
        env: env.name.clone(),
        values: env
            .placeholders
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Refuses reservations that would leave the account fewer than [`UNRESERVED_MINIMUM`]
/// unreserved concurrent executions.
pub fn check_concurrency(
    env: &EnvConfig,
    stack: &str,
    account: AccountConcurrency,
    reservations: &[Reservation],
) -> Result<(), Refusal> {
    let added: i64 = reservations.iter().map(Reservation::added).sum();
    if added == 0 || account.unreserved - added >= UNRESERVED_MINIMUM {
        return Ok(());
    }
    let functions = reservations
        .iter()
        .filter(|r| r.added() > 0)
        .map(|r| format!("{} {} (holds {})", r.role, r.wanted, r.held))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Refusal::ConcurrencyShortfall {
        stack: stack.to_owned(),
        added,
        functions,
        limit: account.limit,
        unreserved: account.unreserved,
        file: env.source.display().to_string(),
    })
}

/// The account's concurrency; `None` on an emulator that does not implement GetAccountSettings
/// (moto 5.2.5 does not), where nothing real is at stake.
pub async fn account_concurrency(
    session: &Session,
) -> Result<Option<AccountConcurrency>, DeployError> {
    let lambda = aws_sdk_lambda::Client::new(&session.aws);
    let settings = match lambda.get_account_settings().send().await {
        Ok(settings) => settings,
        Err(_) if session.emulator => return Ok(None),
        Err(error) => return Err(aws_error("Lambda.GetAccountSettings")(error)),
    };
    let limit = i64::from(
        settings
            .account_limit()
            .map_or(0, |l| l.concurrent_executions()),
    );
    let unreserved = settings
        .account_limit()
        .and_then(|l| l.unreserved_concurrent_executions())
        .map_or(limit, i64::from);
    Ok(Some(AccountConcurrency { limit, unreserved }))
}

/// The reservation of each function of the template: wanted from the env, held read from the
/// deployed function (`<stack>-<role>`) when the stack exists.
pub async fn reservations(
    session: &Session,
    env: &EnvConfig,
    stack: &str,
    template: &Template,
    stack_exists: bool,
) -> Result<Vec<Reservation>, DeployError> {
    let lambda = aws_sdk_lambda::Client::new(&session.aws);
    let mut found = Vec::new();
    for name in template
        .parameter_names()
        .iter()
        .filter_map(|p| function_of_code_key_parameter(p))
    {
        let Some(role) = FunctionRole::ALL.into_iter().find(|r| r.name() == name) else {
            continue;
        };
        let wanted = env.functions.by_role[&role]
            .reserved_concurrency
            .map_or(0, i64::from);
        let held = if stack_exists {
            held_reservation(&lambda, &format!("{stack}-{name}")).await?
        } else {
            0
        };
        found.push(Reservation {
            role: name.to_owned(),
            wanted,
            held,
        });
    }
    Ok(found)
}

/// A function's reserved concurrency now; 0 when it has none or does not exist.
async fn held_reservation(
    lambda: &aws_sdk_lambda::Client,
    function_name: &str,
) -> Result<i64, DeployError> {
    match lambda
        .get_function_concurrency()
        .function_name(function_name)
        .send()
        .await
    {
        Ok(answer) => Ok(answer.reserved_concurrent_executions().map_or(0, i64::from)),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(0)
        }
        Err(error) => Err(aws_error("Lambda.GetFunctionConcurrency")(error)),
    }
}

/// Both checks, in the order a person fixes them: placeholders (the env file), then the
/// account's concurrency (read only when the stack reserves more than it holds).
pub async fn check_before_change_set(
    session: &Session,
    env: &EnvConfig,
    stack: &str,
    template: &Template,
    progress: &Progress,
) -> Result<(), DeployError> {
    check_placeholders(env)?;
    let exists = crate::stack::describe(session, stack).await?.is_some();
    let reservations = reservations(session, env, stack, template, exists).await?;
    if reservations.iter().all(|r| r.added() == 0) {
        return Ok(());
    }
    match account_concurrency(session).await? {
        Some(account) => check_concurrency(env, stack, account, &reservations)?,
        None => progress.line(format!(
            "stack {stack}: the emulator does not implement Lambda GetAccountSettings, so the account's concurrency was not checked"
        )),
    }
    Ok(())
}
