//! `dlq purge`: deleting every message of a DLQ, guarded by the production protection and an
//! operator's confirmation that types the queue name.

use sagaform_deploy::confirm::{Confirm, Expect};
use serde::Serialize;

use super::Dlq;
use crate::error::aws_error;
use crate::{OpsError, OpsRefusal};

/// Who may purge, and how to ask.
pub struct PurgeGuard<'a> {
    /// The env's name (for messages).
    pub env_name: &'a str,
    /// Whether the env is production.
    pub production: bool,
    /// `--force-prod` was given.
    pub force_prod: bool,
    /// Asks for the queue name (or approves everything with `--yes`).
    pub confirm: &'a dyn Confirm,
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Queue name.
    pub queue: String,
    /// Messages on the queue just before the purge (SQS's approximation, in flight included).
    pub approximate_purged: u64,
}

impl Dlq {
    /// Deletes every message of the DLQ, after the production and confirmation checks.
    pub async fn purge(&self, guard: &PurgeGuard<'_>) -> Result<PurgeReport, OpsError> {
        let queue = self.queue.name().to_owned();
        if guard.production && !guard.force_prod {
            return Err(OpsRefusal::ProductionProtected {
                env: guard.env_name.to_owned(),
                queue,
            }
            .into());
        }
        let (visible, in_flight) = self.counts().await?;
        let what = format!("purging queue {queue} in env {}", guard.env_name);
        let question = format!(
            "Purge {} message(s) from queue {queue} in env {}? They are deleted for good; their sagas stay as they are.",
            visible + in_flight,
            guard.env_name
        );
        guard
            .confirm
            .ask(&question, &Expect::Exactly(queue.clone()))
            .require(what)
            .map_err(OpsRefusal::from)?;
        self.sqs
            .purge_queue()
            .queue_url(&self.queue.url)
            .send()
            .await
            .map_err(aws_error("SQS.PurgeQueue"))?;
        Ok(PurgeReport {
            queue,
            approximate_purged: visible + in_flight,
        })
    }
}

/// The human-readable form of a purge.
pub fn render_purge(report: &PurgeReport) -> String {
    format!(
        "queue {}: purged (about {} message(s))\n",
        report.queue, report.approximate_purged
    )
}
