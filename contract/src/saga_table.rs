//! The saga table's index of open sagas: the template defines it (stacks), the DynamoDB store
//! writes and queries it (runtime), and the runbooks' commands query it (stacks).
//!
//! Only sagas that are not finished for good are in the index (PENDING, RUNNING, COMPENSATING,
//! and IN_DOUBT or COMPENSATION_FAILED until a human settles them): a finished saga drops its
//! key attribute, so the index stays as small as the set an operator looks at. The partition key
//! is the status with a shard number taken from the transaction id (`RUNNING#7`), so the sagas
//! in one status spread over [`STATUS_SHARDS`] partitions instead of all writing to one; the sort
//! key is the creation time, which never changes, and only the keys are projected. An item's
//! index entry is therefore written when the saga enters the index, when its status changes, and
//! when it leaves: not on every step.

/// Name of the index.
pub const OPEN_STATUS_INDEX: &str = "open-by-status";

/// The partition key attribute of the index: `<STATUS>#<shard>`, present only on open sagas.
pub const OPEN_STATUS_ATTRIBUTE: &str = "open_status";

/// The sort key attribute of the index: the saga's creation time (RFC 3339, UTC).
pub const CREATED_AT_ATTRIBUTE: &str = "created_at";

/// How many partitions the sagas of one status spread over. A listing queries every one.
pub const STATUS_SHARDS: u32 = 16;

/// The shard of a saga: FNV-1a (32 bits) of its transaction id, modulo [`STATUS_SHARDS`]. Stable
/// across releases and languages, since a stored key must be found again by the same rule.
pub fn status_shard(transaction_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in transaction_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % STATUS_SHARDS
}

/// The index partition key of a saga in `status` (`RUNNING`) on `shard`.
pub fn open_status_key(status: &str, shard: u32) -> String {
    format!("{status}#{shard}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_is_fnv1a_of_the_transaction_id_and_stays_in_range() {
        // FNV-1a 32 of "" is 0x811c9dc5, of "a" 0xe40c292c (published test vectors).
        assert_eq!(status_shard(""), 0x811c_9dc5 % STATUS_SHARDS);
        assert_eq!(status_shard("a"), 0xe40c_292c % STATUS_SHARDS);
        let shards: std::collections::BTreeSet<u32> = (0..1000)
            .map(|i| status_shard(&format!("tx-{i}")))
            .collect();
        assert_eq!(shards.len(), STATUS_SHARDS as usize, "every shard is used");
    }

    #[test]
    fn the_key_names_the_status_and_the_shard() {
        assert_eq!(open_status_key("RUNNING", 7), "RUNNING#7");
    }
}
