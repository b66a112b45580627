//! A store wrapper that counts writes, so tests and benchmarks can prove what a saga costs
//! (a successful N-step saga must take at most N + 2 state writes) against a real store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::errors::{IdempotencyError, StoreError};
use crate::model::{SagaRecord, SagaStatus};
use crate::store::dynamodb::open_index_writes;
use crate::store::{
    ClaimOutcome, IdempotencyClaim, IdempotencyCompletion, IdempotencyRecord, IdempotencyStore,
    SagaStore,
};

/// Wraps a store and counts the operations that reach it (attempted, whether they succeed or
/// not: a conditional write that loses still costs a request).
#[derive(Debug, Default)]
pub struct CountingStore<S> {
    inner: S,
    state_writes: AtomicU64,
    state_reads: AtomicU64,
    idempotency_writes: AtomicU64,
    open_index_writes: AtomicU64,
    /// The last state written per saga, to count what each write costs the DynamoDB index.
    last_written: Mutex<HashMap<String, SagaRecord>>,
}

impl<S> CountingStore<S> {
    /// Counts from zero.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            state_writes: AtomicU64::new(0),
            state_reads: AtomicU64::new(0),
            idempotency_writes: AtomicU64::new(0),
            open_index_writes: AtomicU64::new(0),
            last_written: Mutex::new(HashMap::new()),
        }
    }

    /// Writes the DynamoDB store's index of open sagas takes for the saga writes so far that
    /// succeeded ([`open_index_writes`] applied to each one), whatever the wrapped store.
    pub fn open_index_writes(&self) -> u64 {
        self.open_index_writes.load(Ordering::SeqCst)
    }

    /// Counts what the successful write of `record` costs the index.
    fn written(&self, record: &SagaRecord) {
        let mut last = self.last_written.lock().expect("counting lock");
        let writes = open_index_writes(last.get(&record.transaction_id), record);
        self.open_index_writes.fetch_add(writes, Ordering::SeqCst);
        last.insert(record.transaction_id.clone(), record.clone());
    }

    /// Saga state writes so far (create, create with idempotency, transition).
    pub fn state_writes(&self) -> u64 {
        self.state_writes.load(Ordering::SeqCst)
    }

    /// Saga state reads so far (get, lists).
    pub fn state_reads(&self) -> u64 {
        self.state_reads.load(Ordering::SeqCst)
    }

    /// Idempotency record writes so far (claim, complete, release).
    pub fn idempotency_writes(&self) -> u64 {
        self.idempotency_writes.load(Ordering::SeqCst)
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        self.state_writes.store(0, Ordering::SeqCst);
        self.state_reads.store(0, Ordering::SeqCst);
        self.idempotency_writes.store(0, Ordering::SeqCst);
        self.open_index_writes.store(0, Ordering::SeqCst);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

impl<S: SagaStore> SagaStore for CountingStore<S> {
    async fn create(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        Self::count(&self.state_writes);
        let version = self.inner.create(record).await?;
        self.written(record);
        Ok(version)
    }

    async fn create_completing_idempotency(
        &self,
        record: &SagaRecord,
        completion: &IdempotencyCompletion<'_>,
    ) -> Result<u64, StoreError> {
        Self::count(&self.state_writes);
        let version = self
            .inner
            .create_completing_idempotency(record, completion)
            .await?;
        self.written(record);
        Ok(version)
    }

    async fn get(&self, transaction_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        Self::count(&self.state_reads);
        self.inner.get(transaction_id).await
    }

    async fn transition(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        Self::count(&self.state_writes);
        let version = self.inner.transition(record).await?;
        self.written(record);
        Ok(version)
    }

    async fn list_by_status(
        &self,
        status: SagaStatus,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        Self::count(&self.state_reads);
        self.inner.list_by_status(status, limit).await
    }

    async fn list_stuck(
        &self,
        idle_for: Duration,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        Self::count(&self.state_reads);
        self.inner.list_stuck(idle_for, limit).await
    }
}

impl<S: IdempotencyStore> IdempotencyStore for CountingStore<S> {
    async fn claim(&self, claim: &IdempotencyClaim<'_>) -> Result<ClaimOutcome, IdempotencyError> {
        Self::count(&self.idempotency_writes);
        self.inner.claim(claim).await
    }

    async fn complete(&self, completion: &IdempotencyCompletion<'_>) -> Result<(), StoreError> {
        Self::count(&self.idempotency_writes);
        self.inner.complete(completion).await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        Self::count(&self.idempotency_writes);
        self.inner.release(key).await
    }

    async fn forget(&self, key: &str, response: &serde_json::Value) -> Result<(), StoreError> {
        Self::count(&self.idempotency_writes);
        self.inner.forget(key, response).await
    }

    async fn get_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.get_idempotency(key).await
    }
}
