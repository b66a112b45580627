//! Test set-up shared by the integration tests: the stores, moto, PostgreSQL and the fake SaaS
//! of `sagaform-testkit` (one set-up for every crate's tests: a private PostgreSQL database or
//! private DynamoDB tables on a moto server started for the test binary), plus a deadline for
//! the engine and doubles that simulate a crash at a chosen point.

pub mod crash;
pub mod store_contract;

use std::time::{Duration, Instant};

/// A deadline far enough for every test scenario, retries included.
pub fn generous_deadline() -> Instant {
    Instant::now() + Duration::from_secs(120)
}
