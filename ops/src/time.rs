//! Timestamps as the reports show them: the contract's RFC 3339 UTC form, from the epoch
//! milliseconds SQS and the SDK's `DateTime` give.

pub use sagaform_contract::time::{millis_from_rfc3339, now_millis, rfc3339_from_millis};
