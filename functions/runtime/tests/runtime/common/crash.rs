//! Crash simulation: a caller and a store that stop the process at a chosen point — before or
//! after the n-th downstream call, before or after the n-th state write.
//!
//! "Stop" means the operation never completes: the wrapper signals and then waits forever, and the
//! test drops the engine's future, so nothing after that point runs, exactly as when a Lambda
//! instance dies there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sagaform_runtime::engine::StepCaller;
use sagaform_runtime::errors::StoreError;
use sagaform_runtime::model::{SagaRecord, SagaStatus};
use sagaform_runtime::store::{IdempotencyCompletion, SagaStore};
use sagaform_saas_client::{SaasError, StepCall};
use serde_json::Value;
use tokio::sync::Notify;

/// Where the process dies; the number is 1-based, counted from the wrapper's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    BeforeCall(usize),
    AfterCall(usize),
    BeforeWrite(usize),
    AfterWrite(usize),
}

/// Shared by the crashing caller and store of one run.
#[derive(Debug)]
pub struct Crash {
    point: CrashPoint,
    calls: AtomicUsize,
    writes: AtomicUsize,
    fired: Notify,
}

impl Crash {
    pub fn at(point: CrashPoint) -> Crash {
        Crash {
            point,
            calls: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            fired: Notify::new(),
        }
    }

    async fn die(&self) -> ! {
        self.fired.notify_one();
        std::future::pending::<()>().await;
        unreachable!("a pending future never completes")
    }

    /// Runs `operation` until it finishes or the crash point is reached; true when it crashed.
    pub async fn run<T>(&self, operation: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            result = operation => Some(result),
            () = self.fired.notified() => None,
        }
    }
}

/// A caller that dies at the crash point.
pub struct CrashingCaller<'a, C> {
    pub inner: &'a C,
    pub crash: &'a Crash,
}

impl<C: StepCaller> StepCaller for CrashingCaller<'_, C> {
    async fn call(&self, call: &StepCall<'_>, deadline: Instant) -> Result<Value, SaasError> {
        let n = self.crash.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash.point == CrashPoint::BeforeCall(n) {
            self.crash.die().await;
        }
        let result = self.inner.call(call, deadline).await;
        if self.crash.point == CrashPoint::AfterCall(n) {
            self.crash.die().await;
        }
        result
    }
}

/// A store that dies at the crash point (state writes only: create is not counted).
pub struct CrashingStore<'a, S> {
    pub inner: &'a S,
    pub crash: &'a Crash,
}

impl<S: SagaStore> SagaStore for CrashingStore<'_, S> {
    async fn create(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        self.inner.create(record).await
    }

    async fn create_completing_idempotency(
        &self,
        record: &SagaRecord,
        completion: &IdempotencyCompletion<'_>,
    ) -> Result<u64, StoreError> {
        self.inner
            .create_completing_idempotency(record, completion)
            .await
    }

    async fn get(&self, transaction_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        self.inner.get(transaction_id).await
    }

    async fn transition(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        let n = self.crash.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash.point == CrashPoint::BeforeWrite(n) {
            self.crash.die().await;
        }
        let result = self.inner.transition(record).await;
        if self.crash.point == CrashPoint::AfterWrite(n) {
            self.crash.die().await;
        }
        result
    }

    async fn list_by_status(
        &self,
        status: SagaStatus,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        self.inner.list_by_status(status, limit).await
    }

    async fn list_stuck(
        &self,
        idle_for: Duration,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        self.inner.list_stuck(idle_for, limit).await
    }
}
