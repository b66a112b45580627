//! The saga state every pattern stores and the API reports: a saga's status, its steps' statuses,
//! the request that started it, and when each changed.
//!
//! The record is the same for both stores, so a handler never needs to know where it lives.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sagaform_saga::Saga;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a saga is in its life.
///
/// `PENDING -> RUNNING -> COMPLETED`, or after a failure `-> COMPENSATING -> COMPENSATED`, or
/// `COMPENSATION_FAILED` when a compensation failed for good and a human has to step in. A step
/// whose action never got a definite answer parks the saga `IN_DOUBT` instead of compensating
/// it blind; `cargo xtask saga retry` asks the call again, which takes it back to `RUNNING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaStatus {
    /// Recorded, no step run yet.
    Pending,
    /// At least one step ran; steps are still going forward.
    Running,
    /// Every step succeeded.
    Completed,
    /// A step failed for good; the steps that ran are being undone in reverse order.
    Compensating,
    /// Every step that ran has been undone.
    Compensated,
    /// A compensation failed for good: the saga needs a human.
    CompensationFailed,
    /// A step's action ended its retries without a definite answer (timeouts, lost connections,
    /// 5xx): it may have taken effect, or may still. Nothing runs the saga until an operator
    /// asks the call again (`saga retry`), which settles it either way.
    InDoubt,
}

impl SagaStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [SagaStatus; 7] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Compensating,
        Self::Compensated,
        Self::CompensationFailed,
        Self::InDoubt,
    ];

    /// The statuses a saga is still moving out of; a saga that stays in one too long is stuck.
    pub const ACTIVE: [SagaStatus; 3] = [Self::Pending, Self::Running, Self::Compensating];

    /// The name stored and shown (`COMPENSATION_FAILED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Compensating => "COMPENSATING",
            Self::Compensated => "COMPENSATED",
            Self::CompensationFailed => "COMPENSATION_FAILED",
            Self::InDoubt => "IN_DOUBT",
        }
    }

    /// Whether nothing will change this saga any more (without a human).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Compensated | Self::CompensationFailed | Self::InDoubt
        )
    }

    /// Whether the saga is open: still running, or waiting for a human. What an operator looks
    /// at, and what the DynamoDB store keeps in its index of open sagas.
    pub fn is_open(self) -> bool {
        !self.is_terminal() || self.needs_a_human()
    }

    /// Whether the saga waits for a human: it must stay visible (no expiry) and alarmed.
    pub fn needs_a_human(self) -> bool {
        matches!(self, Self::CompensationFailed | Self::InDoubt)
    }
}

/// Where one step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    /// Not run yet (or run without its result being recorded: its idempotency key makes running
    /// it again harmless).
    Pending,
    /// The action succeeded.
    Succeeded,
    /// The action failed for good (it may have partly succeeded, so it is compensated too).
    Failed,
    /// The compensation succeeded.
    Compensated,
    /// The compensation failed for good.
    CompensationFailed,
    /// Every attempt of the action ended without a definite answer: it may have taken effect.
    /// Neither compensated nor run forward until asked again.
    InDoubt,
}

impl StepStatus {
    /// Every status.
    pub const ALL: [StepStatus; 6] = [
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::Compensated,
        Self::CompensationFailed,
        Self::InDoubt,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Compensated => "COMPENSATED",
            Self::CompensationFailed => "COMPENSATION_FAILED",
            Self::InDoubt => "IN_DOUBT",
        }
    }

    /// Whether the step's action ran (or may have run) and has not been undone yet.
    pub fn needs_compensation(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// A status name that is not one of the known ones (a corrupt or newer record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}`")]
pub struct UnknownStatus(pub String);

/// Both status enums are stored and shown by their names ([`SagaStatus::as_str`],
/// [`StepStatus::as_str`]) and parsed back from them; the macro writes that pair of impls once.
macro_rules! named_statuses {
    ($($status:ty),+) => {$(
        impl FromStr for $status {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|status| status.as_str() == s)
                    .ok_or_else(|| UnknownStatus(s.to_owned()))
            }
        }

        impl fmt::Display for $status {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

named_statuses!(SagaStatus, StepStatus);

/// The recorded state of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name in the saga definition.
    pub name: String,
    /// Where it is.
    pub status: StepStatus,
    /// Calls of the action recorded so far, over every invocation: the sqs pattern stores each
    /// failed attempt it leaves to a redelivery, so the step's retries are counted per step and
    /// not per message. An invocation that ended before recording its call (a crash) is not
    /// counted; the queue's receive limit bounds those.
    pub attempts: u32,
    /// Calls of the compensation recorded so far, counted as `attempts` is; zero until the step
    /// is compensated. Records written before it existed read as zero.
    #[serde(default)]
    pub compensation_attempts: u32,
    /// Whether an attempt of the action ended without a definite answer (a timeout, a lost
    /// connection, a 5xx) and no later attempt got one: the effect may have landed. Stored with
    /// each failed attempt where invocations retry (sqs, Step Functions), so that a retry which
    /// only meets a refused connection or a 429 does not make the step look cleanly failed.
    /// Records written before it existed read as `false`.
    #[serde(default)]
    pub in_doubt: bool,
    /// Why the action or the compensation failed, when it did.
    pub error: Option<String>,
    /// When the status last changed (RFC 3339, UTC); `None` while never changed.
    pub updated_at: Option<String>,
}

/// The recorded state of one saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// UUIDv7 issued by the API; the correlation id of every log line, message and call.
    pub transaction_id: String,
    /// Where the saga is.
    pub status: SagaStatus,
    /// Incremented by every stored transition; a writer must name the version it read, so a
    /// stale writer changes nothing.
    pub version: u64,
    /// The request that started the saga, as the API accepted it.
    pub request: Value,
    /// One entry per step of the saga definition, in execution order.
    pub steps: Vec<StepRecord>,
    /// When the saga was recorded (RFC 3339, UTC).
    pub created_at: String,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: String,
    /// Why it is compensating or failed, when it is.
    pub error: Option<String>,
}

impl SagaRecord {
    /// A new PENDING saga with every step PENDING, at version 0.
    pub fn new(saga: &Saga, transaction_id: impl Into<String>, request: Value) -> SagaRecord {
        let now = now_rfc3339();
        SagaRecord {
            transaction_id: transaction_id.into(),
            status: SagaStatus::Pending,
            version: 0,
            request,
            steps: saga
                .steps
                .iter()
                .map(|step| StepRecord {
                    name: step.name.to_owned(),
                    status: StepStatus::Pending,
                    attempts: 0,
                    compensation_attempts: 0,
                    in_doubt: false,
                    error: None,
                    updated_at: None,
                })
                .collect(),
            created_at: now.clone(),
            updated_at: now,
            error: None,
        }
    }

    /// The record of the step with this name.
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Index of the step with this name.
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }
}

/// A new `transaction_id`: a UUIDv7, so ids sort by creation time in indexes and logs.
pub fn new_transaction_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The current time as RFC 3339 UTC with milliseconds (`2025-01-31T09:08:07.123Z`).
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// A time as RFC 3339 UTC with milliseconds.
///
/// The fixed width (always milliseconds, always `Z`) makes the strings sort like the times they
/// stand for, which the DynamoDB status index relies on (`updated_at` is its sort key).
pub fn rfc3339(time: SystemTime) -> String {
    // Times before 1970 do not occur in saga records; they are clamped rather than panicking.
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since_epoch.as_secs();
    let millis = since_epoch.subsec_millis();
    let (year, month, day) = sagaform_contract::time::civil_from_days((secs / 86_400) as i64);
    let seconds_of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60,
        seconds_of_day % 60
    )
}

/// Seconds since the Unix epoch, the unit of DynamoDB TTL attributes.
pub fn epoch_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Milliseconds since the Unix epoch, the unit of in-progress expiries (as in Powertools).
pub fn epoch_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_millis(951_782_400_007);
        assert_eq!(rfc3339(leap_day), "2000-02-29T00:00:00.007Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_599) + Duration::from_millis(999);
        assert_eq!(rfc3339(later), "2025-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_strings_sort_like_times() {
        let early = UNIX_EPOCH + Duration::from_secs(9);
        let late = UNIX_EPOCH + Duration::from_secs(10);
        assert!(rfc3339(early) < rfc3339(late));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in SagaStatus::ALL {
            assert_eq!(status.as_str().parse::<SagaStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for status in StepStatus::ALL {
            assert_eq!(status.as_str().parse::<StepStatus>().unwrap(), status);
        }
        assert!("DONE".parse::<SagaStatus>().is_err());
    }

    #[test]
    fn transaction_ids_are_uuid_v7() {
        let id = new_transaction_id();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    }

    #[test]
    fn a_new_record_is_pending_with_every_step_pending() {
        let record = SagaRecord::new(&sagaform_saga::PURCHASE, "tx", serde_json::json!({}));
        assert_eq!(record.status, SagaStatus::Pending);
        assert_eq!(record.version, 0);
        let names: Vec<_> = record.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["stock", "payment", "entitlement"]);
        assert!(record.steps.iter().all(|s| s.status == StepStatus::Pending));
    }
}
