//! The providers' idempotency window and `dlq redrive`: a SaaS remembers an idempotency key for a
//! limited time (`[saas.<service>] idempotency_window_hours`), so a saga resent after that may
//! have a call it made before run a second time (a second charge) instead of being answered
//! from the provider's record. A redrive therefore lists the sagas on the DLQ older than the
//! window, warns, and asks before resending them.
//!
//! The window is the smallest of all the env's services, not only of the steps a saga has left:
//! a resent saga may also compensate, which calls the services of its earlier steps, and which
//! steps remain is in the state store, which the DLQ commands do not read.
//!
//! A saga's age comes from its `transaction_id`, a UUIDv7 whose first 48 bits are its creation
//! time in milliseconds; when the id is not one, from the message's `SentTimestamp`, which for a
//! dead-lettered work message is when the saga was accepted.

use std::time::Duration;

use sagaform_deploy::confirm::{Confirm, Expect};
use sagaform_stacks::config::EnvConfig;
use serde::Serialize;

use super::Dlq;
use super::listing::DlqMessage;
use crate::time::now_millis;
use crate::{OpsError, OpsRefusal};

/// The smallest idempotency window of the env's services, the one every resent saga must be
/// within (`None` for an env without services, which no example has).
pub fn smallest_window(env: &EnvConfig) -> Option<Duration> {
    env.saas.values().map(|s| s.idempotency_window).min()
}

/// A saga on the DLQ older than the idempotency window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleSaga {
    /// SQS message id.
    pub message_id: String,
    /// The saga, when the message names one.
    pub transaction_id: Option<String>,
    /// Seconds since the saga was created.
    pub age_seconds: i64,
}

/// Who approves resending sagas past the window, and how long it is.
pub struct WindowGuard<'a> {
    /// The env's name (for messages).
    pub env_name: &'a str,
    /// The smallest idempotency window of the env's services.
    pub window: Duration,
    /// Asks the operator (or approves everything with `--yes`).
    pub confirm: &'a dyn Confirm,
}

impl Dlq {
    /// The sagas on the DLQ older than `window` (the DLQ is listed, nothing consumed).
    pub async fn sagas_older_than(&self, window: Duration) -> Result<Vec<StaleSaga>, OpsError> {
        let listing = self.list(None).await?;
        let now = now_millis();
        let window_seconds = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        Ok(listing
            .messages
            .iter()
            .filter_map(|message| {
                let age_seconds = saga_age_seconds(message, now)?;
                (age_seconds > window_seconds).then(|| StaleSaga {
                    message_id: message.message_id.clone(),
                    transaction_id: message.transaction_id.clone(),
                    age_seconds,
                })
            })
            .collect())
    }

    /// Before a redrive: warns about the sagas older than the window (one line each through
    /// `progress`) and asks before resending them; `Ok` with the list when there are none or
    /// the operator agreed, a refusal otherwise (declined, or no terminal without `--yes`).
    pub async fn confirm_idempotency_window(
        &self,
        guard: &WindowGuard<'_>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Vec<StaleSaga>, OpsError> {
        let stale = self.sagas_older_than(guard.window).await?;
        if stale.is_empty() {
            return Ok(stale);
        }
        let window = hours(guard.window.as_secs());
        progress(&format!(
            "warning: {} saga(s) on queue {} are older than the providers' idempotency window ({window}): a call they made before may run again instead of being answered from the provider's record (a second charge, a second grant)",
            stale.len(),
            self.queue.name()
        ));
        for saga in &stale {
            progress(&format!(
                "- {}  message {}  {} old",
                saga.transaction_id.as_deref().unwrap_or("-"),
                saga.message_id,
                hours(u64::try_from(saga.age_seconds).unwrap_or(0))
            ));
        }
        let question = format!(
            "Resend them anyway, with the rest of queue {} in env {}? Check each with the provider first.",
            self.queue.name(),
            guard.env_name
        );
        guard
            .confirm
            .ask(&question, &Expect::YesNo)
            .require(format!(
                "redriving {} saga(s) older than the idempotency window ({window}) in env {}",
                stale.len(),
                guard.env_name
            ))
            .map_err(OpsRefusal::from)?;
        Ok(stale)
    }
}

/// Seconds as whole hours, rounded down (`30 h`).
fn hours(seconds: u64) -> String {
    format!("{} h", seconds / 3600)
}

/// How old the saga of a listed message is: from its UUIDv7 `transaction_id`, else the
/// message's age; the older of the two when both are known.
fn saga_age_seconds(message: &DlqMessage, now: i64) -> Option<i64> {
    let from_id = message
        .transaction_id
        .as_deref()
        .and_then(uuid_v7_millis)
        .map(|created| (now - created) / 1000);
    match (from_id, message.age_seconds) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The creation time of a UUIDv7 in epoch milliseconds (its first 48 bits); `None` for any
/// other text.
fn uuid_v7_millis(id: &str) -> Option<i64> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || &hex[12..13] != "7" {
        return None;
    }
    i64::from_str_radix(&hex[..12], 16).ok()
}
