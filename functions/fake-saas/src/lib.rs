//! A fake of the saga's downstream SaaS services, for tests, benchmarks and the local
//! environment: one HTTP listener serving every service of the saga definition under its own
//! path prefix (`/inventory/reserve`, `/payments/refund`, ...), an idempotency ledger that
//! proves each effect happened once, and fault injection for the failures the saga must survive.
//!
//! Control endpoints: `GET /_ledger` ([`LedgerSnapshot`]), `GET /_ledger/{transaction_id}`
//! ([`TransactionLedger`], empty for a transaction never seen), `DELETE /_ledger`;
//! `GET /_faults` ([`FaultStatus`] list), `POST /_faults` (a [`FaultRule`] as JSON, for instance
//! `{"service": "payments", "action": "charge", "fault": "rate_limited", "retry_after_secs": 2,
//! "times": 1}`), `DELETE /_faults` (also restarts the random sequence from the seed).
//!
//! The server is axum on tokio: the functions already depend on hyper and tokio through reqwest
//! and lambda_runtime, so axum adds little, and its routing and extractors keep the fake short.
//! State is in memory behind mutexes held only for a few map operations, which serves a soak of
//! hundreds of concurrent sagas without contention worth measuring.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sagaform_fake_saas::{FakeSaas, Fault, FaultRule};
//!
//! let fake = FakeSaas::start("127.0.0.1:0").await?;
//! fake.faults().add(FaultRule::new("payments", "charge", Fault::Unavailable).times(2))?;
//! // ... point the client at fake.service_url("payments") and run a saga ...
//! assert_eq!(fake.ledger().transaction("tx-1").outstanding(), 0);
//! # Ok(()) }
//! ```

mod faults;
mod ledger;
mod server;

pub use faults::{DEFAULT_HANG_MS, Fault, FaultError, FaultRule, FaultStatus, Faults};
pub use ledger::{Effect, EffectRecord, Ledger, LedgerSnapshot, ServiceLedger, TransactionLedger};
pub use server::{CORRELATION_HEADER, FakeSaas, IDEMPOTENCY_HEADER, REPLAYED_HEADER, StartError};
