//! Where saga state and idempotency records live: one pair of traits ([`SagaStore`],
//! [`IdempotencyStore`]) and two real implementations, DynamoDB ([`DynamoStore`]) and PostgreSQL
//! for Aurora ([`PostgresStore`]), chosen per environment through [`StoreConfig`].
//!
//! Every state change is a conditional write on the version the writer read, so of two writers
//! racing on one saga exactly one wins and the other changes nothing (and gets
//! [`StoreError::Conflict`]).

pub mod config;
pub mod counting;
pub mod dynamodb;
pub mod postgres;
pub mod schema;

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::errors::{IdempotencyError, StoreError};
use crate::model::{SagaRecord, SagaStatus};

pub use config::{ConfiguredStore, SecretSource, StoreConfig, store_from_env};
pub use counting::CountingStore;
pub use dynamodb::DynamoStore;
pub use postgres::{PostgresSettings, PostgresStore, PostgresTls};
pub use schema::{AppRole, MIGRATION_LOCK, migrate};

/// Saga state: create, read, and change it only from the version last read.
pub trait SagaStore: Send + Sync {
    /// Stores a new saga at version 1 and returns that version; [`StoreError::AlreadyExists`]
    /// when the id is taken (a retried create changes nothing).
    fn create(&self, record: &SagaRecord) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores a new saga (version 1) and completes the idempotency record as `completion` says,
    /// in one atomic write: either both happen or neither. Fails with
    /// [`StoreError::AlreadyExists`] or [`StoreError::IdempotencyNotInProgress`] (the record is
    /// not INPROGRESS any more), changing nothing.
    fn create_completing_idempotency(
        &self,
        record: &SagaRecord,
        completion: &IdempotencyCompletion<'_>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The saga with this id, read consistently.
    fn get(
        &self,
        transaction_id: &str,
    ) -> impl Future<Output = Result<Option<SagaRecord>, StoreError>> + Send;

    /// Replaces the stored saga with `record` if the stored version is still `record.version`;
    /// the stored copy gets `record.version + 1`, which is returned. A stale writer gets
    /// [`StoreError::Conflict`] and changes nothing; an unknown id gets
    /// [`StoreError::NotFound`].
    fn transition(
        &self,
        record: &SagaRecord,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `limit` sagas in `status`, least recently updated first.
    fn list_by_status(
        &self,
        status: SagaStatus,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SagaRecord>, StoreError>> + Send;

    /// Up to `limit` sagas in an active status ([`SagaStatus::ACTIVE`]) not updated for
    /// `idle_for`, least recently updated first: the sagas an operator has to look at.
    fn list_stuck(
        &self,
        idle_for: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SagaRecord>, StoreError>> + Send;
}

/// Whether an idempotent operation is running or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyStatus {
    /// Claimed by an invocation that has not finished (or died before its in-progress expiry).
    InProgress,
    /// Finished; the stored response is replayed to repeats.
    Completed,
}

impl IdempotencyStatus {
    /// The stored name (`INPROGRESS`, `COMPLETED`, as in Powertools).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "INPROGRESS",
            Self::Completed => "COMPLETED",
        }
    }

    pub(crate) fn parse(id: &str, s: &str) -> Result<Self, StoreError> {
        match s {
            "INPROGRESS" => Ok(Self::InProgress),
            "COMPLETED" => Ok(Self::Completed),
            other => Err(StoreError::corrupt(
                id,
                format!("unknown idempotency status `{other}`"),
            )),
        }
    }
}

/// A stored idempotency record.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    /// The idempotency key.
    pub id: String,
    /// Running or done.
    pub status: IdempotencyStatus,
    /// SHA-256 (hex) of the canonical JSON payload the key was first used with.
    pub payload_hash: String,
    /// When the record may be forgotten (epoch seconds; the DynamoDB TTL attribute).
    pub expiration: i64,
    /// When an INPROGRESS claim may be taken over (epoch milliseconds).
    pub in_progress_expiry: Option<i64>,
    /// The response to replay, once COMPLETED.
    pub response: Option<Value>,
    /// Who wrote the claim, where the store keeps it (DynamoDB): a claim whose answer was lost
    /// and which the SDK's retry then finds is recognised as the retrying caller's own.
    pub claim_token: Option<String>,
}

/// What a claim asks for.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyClaim<'a> {
    /// The idempotency key.
    pub key: &'a str,
    /// SHA-256 (hex) of the canonical JSON payload ([`crate::idempotency::payload_hash`]).
    pub payload_hash: &'a str,
    /// Until when the claim holds if its invocation dies: the invocation's deadline.
    pub in_progress_until: SystemTime,
    /// When the record may be forgotten.
    pub expiration: SystemTime,
}

/// What completing a claimed key writes.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyCompletion<'a> {
    /// The idempotency key, claimed by the caller.
    pub key: &'a str,
    /// The response to replay to repeats.
    pub response: &'a Value,
    /// When the record may be forgotten.
    pub expiration: SystemTime,
}

/// The result of a successful claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The caller holds the key and must do the work, then complete or release it.
    Claimed,
    /// The work was done before with the same payload: replay this response.
    Completed(Value),
}

/// Idempotency records with the semantics of Powertools for AWS Lambda.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` in one conditional write: succeeds when there is no record, the record
    /// expired, or it is INPROGRESS past its in-progress expiry (a timed-out attempt). Otherwise
    /// reports the existing record: another payload → [`IdempotencyError::PayloadMismatch`],
    /// COMPLETED → [`ClaimOutcome::Completed`], INPROGRESS → [`IdempotencyError::InProgress`].
    fn claim(
        &self,
        claim: &IdempotencyClaim<'_>,
    ) -> impl Future<Output = Result<ClaimOutcome, IdempotencyError>> + Send;

    /// Marks a claimed key COMPLETED with the response to replay;
    /// [`StoreError::IdempotencyNotInProgress`] when it is not INPROGRESS.
    fn complete(
        &self,
        completion: &IdempotencyCompletion<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets an INPROGRESS claim after the work failed, so a retry can run it; a COMPLETED
    /// record is kept.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the COMPLETED record of `key` whose response is exactly `response`, so the next
    /// request with the key starts afresh: for a saga abandoned before anything ran (it could
    /// not be handed over). A record with another response, or none, is left alone.
    fn forget(
        &self,
        key: &str,
        response: &Value,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The record of `key`, for inspection.
    fn get_idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send;
}

/// The outcome of a claim whose conditional write failed, decided from the record that made it
/// fail; shared by both stores so they answer alike.
pub(crate) fn existing_claim_outcome(
    existing: IdempotencyRecord,
    claim: &IdempotencyClaim<'_>,
) -> Result<ClaimOutcome, IdempotencyError> {
    if existing.payload_hash != claim.payload_hash {
        return Err(IdempotencyError::PayloadMismatch(claim.key.to_owned()));
    }
    match existing.status {
        IdempotencyStatus::InProgress => Err(IdempotencyError::InProgress(claim.key.to_owned())),
        IdempotencyStatus::Completed => Ok(ClaimOutcome::Completed(
            existing.response.unwrap_or(Value::Null),
        )),
    }
}

/// The response of a stored idempotency record from the JSON text its store keeps in `field`
/// (none before it is COMPLETED); shared by both stores so they report a corrupt one alike.
pub(crate) fn stored_response(
    key: &str,
    field: &str,
    text: Option<String>,
) -> Result<Option<Value>, StoreError> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| StoreError::corrupt(key, format!("{field}: {e}")))
    })
    .transpose()
}

/// How often a claim is retried when the record that blocked it vanished before it could be
/// read (released or expired in between).
pub(crate) const CLAIM_ATTEMPTS: usize = 3;

/// Forwards every call of a store trait to the store a smart pointer or reference points at, so
/// an engine can borrow or share its store.
macro_rules! forward_stores {
    ($($pointer:ty),*) => {$(
        impl<S: SagaStore> SagaStore for $pointer {
            fn create(&self, record: &SagaRecord) -> impl Future<Output = Result<u64, StoreError>> + Send {
                (**self).create(record)
            }
            fn create_completing_idempotency(
                &self,
                record: &SagaRecord,
                completion: &IdempotencyCompletion<'_>,
            ) -> impl Future<Output = Result<u64, StoreError>> + Send {
                (**self).create_completing_idempotency(record, completion)
            }
            fn get(&self, transaction_id: &str) -> impl Future<Output = Result<Option<SagaRecord>, StoreError>> + Send {
                (**self).get(transaction_id)
            }
            fn transition(&self, record: &SagaRecord) -> impl Future<Output = Result<u64, StoreError>> + Send {
                (**self).transition(record)
            }
            fn list_by_status(
                &self,
                status: SagaStatus,
                limit: usize,
            ) -> impl Future<Output = Result<Vec<SagaRecord>, StoreError>> + Send {
                (**self).list_by_status(status, limit)
            }
            fn list_stuck(
                &self,
                idle_for: Duration,
                limit: usize,
            ) -> impl Future<Output = Result<Vec<SagaRecord>, StoreError>> + Send {
                (**self).list_stuck(idle_for, limit)
            }
        }

        impl<S: IdempotencyStore> IdempotencyStore for $pointer {
            fn claim(
                &self,
                claim: &IdempotencyClaim<'_>,
            ) -> impl Future<Output = Result<ClaimOutcome, IdempotencyError>> + Send {
                (**self).claim(claim)
            }
            fn complete(
                &self,
                completion: &IdempotencyCompletion<'_>,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).complete(completion)
            }
            fn release(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).release(key)
            }
            fn forget(
                &self,
                key: &str,
                response: &Value,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).forget(key, response)
            }
            fn get_idempotency(
                &self,
                key: &str,
            ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send {
                (**self).get_idempotency(key)
            }
        }
    )*};
}

forward_stores!(&S, std::sync::Arc<S>);
